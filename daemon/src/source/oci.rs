//! `oci://registry[:port]/repository`: blobs served by an OCI (Docker)
//! distribution registry, `GET /v2/<repository>/blobs/<digest>` with
//! `Range`, over https (`oci+http://` for a plain-http registry, e.g. on
//! loopback).
//!
//! Blob names (erofs cookie keys) map to digests:
//! * `sha256:<64 hex>`, `sha256-<64 hex>` or a bare `<64 hex>` name is the
//!   digest itself (nydus-style images name blobs by their sha256);
//! * any other name is looked up in the `--oci-map` file, one `NAME DIGEST`
//!   pair per line (`#` comments); a name in neither is not in this source.
//!
//! Authentication follows the registry's `WWW-Authenticate` challenge:
//! none, `Basic` (with `--credentials`), or `Bearer` (a token from the
//! challenge's realm for `repository:<repo>:pull`, fetched with the basic
//! credentials if given, anonymously otherwise, and fetched again when it
//! expires or is refused).

use std::collections::HashMap;
use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;

use super::http::{
    self, client::Headers, Authorizer, HttpClient, HttpConfig, HttpError, RemoteBlob,
};
use super::{Blob, Source};
use crate::keys;

/// Maps a blob name to a `sha256:<hex>` digest by its form alone.
pub fn digest_of_name(name: &str) -> Option<String> {
    let hex = name
        .strip_prefix("sha256:")
        .or_else(|| name.strip_prefix("sha256-"))
        .unwrap_or(name);
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| format!("sha256:{}", hex.to_ascii_lowercase()))
}

/// Reads a `NAME DIGEST` map file.
pub fn load_map(path: &Path) -> Result<HashMap<String, String>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut map = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut it = line.split_whitespace();
        let (Some(name), Some(d), None) = (it.next(), it.next(), it.next()) else {
            return Err(format!(
                "{}:{}: expected NAME DIGEST",
                path.display(),
                i + 1
            ));
        };
        let Some(d) = digest_of_name(d) else {
            return Err(format!(
                "{}:{}: {d:?} is not a sha256:<64 hex> digest",
                path.display(),
                i + 1
            ));
        };
        map.insert(name.to_owned(), d);
    }
    Ok(map)
}

/// A parsed `WWW-Authenticate` challenge.
#[derive(Debug, PartialEq, Eq)]
pub struct Challenge {
    pub scheme: String,
    pub params: HashMap<String, String>,
}

/// Parses `Scheme k="v", k2=v2` (quoted values may hold commas).
pub fn parse_challenge(v: &str) -> Option<Challenge> {
    let v = v.trim();
    let (scheme, mut rest) = match v.find(' ') {
        Some(i) => (&v[..i], &v[i + 1..]),
        None => (v, ""),
    };
    if scheme.is_empty() {
        return None;
    }
    let mut params = HashMap::new();
    loop {
        rest = rest.trim_start_matches([' ', ',']);
        if rest.is_empty() {
            break;
        }
        let eq = rest.find('=')?;
        let key = rest[..eq].trim().to_ascii_lowercase();
        rest = &rest[eq + 1..];
        let value;
        if let Some(q) = rest.strip_prefix('"') {
            let mut out = String::new();
            let mut chars = q.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, n)) = chars.next() {
                            out.push(n);
                        }
                    }
                    '"' => {
                        end = Some(i);
                        break;
                    }
                    c => out.push(c),
                }
            }
            rest = &q[end? + 1..];
            value = out;
        } else {
            let end = rest.find(',').unwrap_or(rest.len());
            value = rest[..end].trim().to_owned();
            rest = &rest[end..];
        }
        params.insert(key, value);
    }
    Some(Challenge {
        scheme: scheme.to_ascii_lowercase(),
        params,
    })
}

enum Mode {
    /// No credentials sent (yet).
    None,
    Basic,
    Bearer {
        token: String,
        expires: Instant,
        realm: String,
        service: Option<String>,
        scope: String,
    },
}

/// Registry authentication, shared by the blobs of one source.
pub struct RegistryAuth {
    client: Arc<HttpClient>,
    /// `user:password`.
    creds: Option<String>,
    repo: String,
    mode: Mutex<Mode>,
}

/// Tokens are renewed this long before they expire.
const TOKEN_MARGIN: Duration = Duration::from_secs(5);

impl RegistryAuth {
    fn basic(&self) -> Option<String> {
        self.creds.as_ref().map(|c| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(c.as_bytes())
            )
        })
    }

    fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        scope: &str,
        deadline: Instant,
    ) -> Result<(String, Instant), HttpError> {
        let mut url = format!("{realm}?scope={}", keys::url_segment(scope));
        if let Some(s) = service {
            url.push_str(&format!("&service={}", keys::url_segment(s)));
        }
        let mut h: Headers = Vec::new();
        if let Some(b) = self.basic() {
            h.push(("Authorization", b));
        }
        let mut resp = self.client.get(&url, &h, deadline)?;
        match resp.status().as_u16() {
            200 => {}
            401 | 403 => {
                return Err(HttpError::Unauthorized(Some(format!(
                    "token request to {realm} refused with {}",
                    resp.status()
                ))))
            }
            _ => return Err(HttpError::from_resp(&resp)),
        }
        let body = resp
            .body_mut()
            .with_config()
            .limit(1 << 20)
            .read_to_string()
            .map_err(HttpError::from_ureq)?;
        let v: serde_json::Value = serde_json::from_str(&body)
            .map_err(|e| HttpError::Protocol(format!("token response from {realm}: {e}")))?;
        let token = v
            .get("token")
            .or_else(|| v.get("access_token"))
            .and_then(|t| t.as_str())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| HttpError::Protocol(format!("no token in the answer of {realm}")))?;
        // The distribution spec's default lifetime is 60 s.
        let secs = v.get("expires_in").and_then(|e| e.as_u64()).unwrap_or(60);
        let life = Duration::from_secs(secs.max(1));
        debug!("got a registry token from {realm}, valid {life:?}");
        Ok((token.to_owned(), Instant::now() + life))
    }
}

impl Authorizer for RegistryAuth {
    fn headers(&self, deadline: Instant) -> Result<Headers, HttpError> {
        let mut mode = self.mode.lock().unwrap_or_else(|e| e.into_inner());
        match &mut *mode {
            Mode::None => Ok(Vec::new()),
            Mode::Basic => Ok(self
                .basic()
                .map(|b| vec![("Authorization", b)])
                .unwrap_or_default()),
            Mode::Bearer {
                token,
                expires,
                realm,
                service,
                scope,
            } => {
                if Instant::now() + TOKEN_MARGIN >= *expires {
                    let (t, e) = self.fetch_token(realm, service.as_deref(), scope, deadline)?;
                    *token = t;
                    *expires = e;
                }
                Ok(vec![("Authorization", format!("Bearer {token}"))])
            }
        }
    }

    fn unauthorized(&self, challenge: Option<&str>, deadline: Instant) -> Result<bool, HttpError> {
        let Some(c) = challenge.and_then(parse_challenge) else {
            return Ok(false);
        };
        let mut mode = self.mode.lock().unwrap_or_else(|e| e.into_inner());
        match c.scheme.as_str() {
            "basic" => {
                if self.creds.is_none() || matches!(*mode, Mode::Basic) {
                    // No credentials, or these were refused.
                    return Ok(false);
                }
                *mode = Mode::Basic;
                Ok(true)
            }
            "bearer" => {
                let Some(realm) = c.params.get("realm").cloned() else {
                    return Err(HttpError::Protocol(
                        "Bearer challenge without a realm".into(),
                    ));
                };
                if !realm.starts_with("https://") && !realm.starts_with("http://") {
                    return Err(HttpError::Protocol(format!("token realm {realm:?}")));
                }
                let service = c.params.get("service").cloned();
                let scope = c
                    .params
                    .get("scope")
                    .cloned()
                    .unwrap_or_else(|| format!("repository:{}:pull", self.repo));
                let (token, expires) =
                    self.fetch_token(&realm, service.as_deref(), &scope, deadline)?;
                *mode = Mode::Bearer {
                    token,
                    expires,
                    realm,
                    service,
                    scope,
                };
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}

/// The `oci://` source.
pub struct OciSource {
    /// `https://host[:port]/v2/<repo>/blobs/`
    blobs_url: String,
    spec: String,
    client: Arc<HttpClient>,
    auth: Arc<RegistryAuth>,
    map: HashMap<String, String>,
}

impl OciSource {
    pub fn new(spec: &str, cfg: HttpConfig) -> Result<OciSource, String> {
        let (scheme, rest) = if let Some(r) = spec.strip_prefix("oci://") {
            ("https", r)
        } else if let Some(r) = spec.strip_prefix("oci+https://") {
            ("https", r)
        } else if let Some(r) = spec.strip_prefix("oci+http://") {
            ("http", r)
        } else {
            return Err(format!("{spec}: not an oci:// source"));
        };
        let (host, repo) = rest
            .split_once('/')
            .ok_or_else(|| format!("{spec}: no repository (oci://registry/repository)"))?;
        let repo = repo.trim_end_matches('/');
        let repo_ok = !repo.is_empty()
            && repo.split('/').all(|c| {
                !c.is_empty()
                    && c.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b)
                    })
            });
        if !repo_ok {
            return Err(format!(
                "{spec}: {repo:?} is not a repository name (lower case, digits, . _ - and /)"
            ));
        }
        let base = http::check_base_url(&format!("{scheme}://{host}"), &["http://", "https://"])?;
        let creds = match &cfg.credentials {
            Some(p) => {
                let c = std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
                let c = c.trim().to_owned();
                if !c.contains(':') {
                    return Err(format!("{}: expected user:password", p.display()));
                }
                Some(c)
            }
            None => None,
        };
        let map = match &cfg.oci_map {
            Some(p) => load_map(p)?,
            None => HashMap::new(),
        };
        let client = Arc::new(HttpClient::new(cfg)?);
        Ok(OciSource {
            blobs_url: format!("{base}/v2/{repo}/blobs/"),
            spec: spec.to_owned(),
            auth: Arc::new(RegistryAuth {
                client: client.clone(),
                creds,
                repo: repo.to_owned(),
                mode: Mutex::new(Mode::None),
            }),
            client,
            map,
        })
    }

    /// The digest blob `name` is stored under, if this source knows it.
    pub fn digest_for(&self, name: &str) -> Option<String> {
        self.map.get(name).cloned().or_else(|| digest_of_name(name))
    }
}

impl Source for OciSource {
    fn open(&self, name: &str) -> io::Result<Option<Arc<dyn Blob>>> {
        let Some(digest) = self.digest_for(name) else {
            trace!("{}: no digest for blob {name:?}", self.spec);
            return Ok(None);
        };
        let url = format!("{}{digest}", self.blobs_url);
        let auth: Arc<dyn Authorizer> = self.auth.clone();
        match http::probe(&self.client, &*auth, &url)? {
            Some(p) => Ok(Some(Arc::new(RemoteBlob::new(
                self.client.clone(),
                auth,
                url,
                p,
                Some(digest),
            )?))),
            None => Ok(None),
        }
    }

    fn describe(&self) -> String {
        self.spec.clone()
    }

    fn worker_budget(&self) -> Option<usize> {
        Some(self.client.cfg.workers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::http::testserver::{Behaviour, TestServer};
    use crate::source::mem::pattern;
    use crate::source::read_full;

    fn creds_file(tag: &str, c: &str) -> std::path::PathBuf {
        let p = std::env::temp_dir().join(format!("odd-creds-{}-{tag}", std::process::id()));
        std::fs::write(&p, c).unwrap();
        p
    }

    fn serve(b: Behaviour) -> (TestServer, String, Vec<u8>) {
        let data = pattern(100_000, 4);
        let digest = format!("sha256:{}", "5e".repeat(32));
        let server = TestServer::start(b).with_blob(&format!("/v2/r/blobs/{digest}"), data.clone());
        (server, digest, data)
    }

    fn source(server: &TestServer, creds: Option<&str>, tag: &str) -> OciSource {
        let cfg = HttpConfig {
            timeout: Duration::from_secs(2),
            backoff: Duration::from_millis(10),
            credentials: creds.map(|c| creds_file(tag, c)),
            ..HttpConfig::default()
        };
        OciSource::new(&format!("oci+http://{}/r", server.addr), cfg).unwrap()
    }

    fn read_some(src: &OciSource, name: &str, data: &[u8]) {
        let blob = src.open(name).unwrap().expect("blob");
        assert_eq!(blob.size(), data.len() as u64);
        let mut buf = vec![0u8; 5000];
        assert_eq!(read_full(&*blob, &mut buf, 1000).unwrap(), 5000);
        assert_eq!(&buf[..], &data[1000..6000]);
        assert_eq!(
            blob.sha256_digest().unwrap(),
            format!("sha256:{}", "5e".repeat(32))
        );
    }

    #[test]
    fn anonymous_and_missing() {
        let (server, digest, data) = serve(Behaviour::default());
        let src = source(&server, None, "anon");
        read_some(&src, &digest, &data);
        assert!(src
            .open(&format!("sha256:{}", "00".repeat(32)))
            .unwrap()
            .is_none());
        // Not a digest and not mapped: never asked for.
        let n = server.requests();
        assert!(src.open("img.blob").unwrap().is_none());
        assert_eq!(server.requests(), n);
    }

    #[test]
    fn basic_auth_after_the_challenge() {
        let b = Behaviour {
            basic_auth: Some("u:pw".into()),
            ..Default::default()
        };
        let (server, digest, data) = serve(b.clone());
        read_some(&source(&server, Some("u:pw\n"), "basic"), &digest, &data);
        // Wrong password: EACCES, and only one retry with credentials.
        let (server, digest, _) = serve(b);
        let e = source(&server, Some("u:nope"), "basic2")
            .open(&digest)
            .err()
            .unwrap();
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied, "{e}");
        assert_eq!(server.requests(), 2);
        let (server2, digest2, _) = serve(Behaviour {
            basic_auth: Some("u:pw".into()),
            ..Default::default()
        });
        let e = source(&server2, None, "none").open(&digest2).err().unwrap();
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied, "{e}");
    }

    #[test]
    fn bearer_token_flow_and_renewal() {
        let (server, digest, data) = serve(Behaviour {
            bearer: true,
            basic_auth: Some("u:pw".into()),
            token_life: 6,
            ..Default::default()
        });
        let src = source(&server, Some("u:pw"), "bearer");
        read_some(&src, &digest, &data);
        let seen = server.seen();
        // Challenge, token (with the basic credentials), then the bearer.
        assert_eq!(seen[1].path, "/token");
        assert!(seen[1]
            .authorization
            .as_deref()
            .unwrap()
            .starts_with("Basic "));
        assert!(seen[2]
            .authorization
            .as_deref()
            .unwrap()
            .starts_with("Bearer tok"));
        let tokens = |s: &TestServer| s.seen().iter().filter(|x| x.path == "/token").count();
        assert_eq!(tokens(&server), 1);
        // Within 5 s of expiry the token is renewed before use.
        std::thread::sleep(Duration::from_millis(1200));
        read_some(&src, &digest, &data);
        assert_eq!(tokens(&server), 2);
    }

    #[test]
    fn names_to_digests() {
        let hex = "ab".repeat(32);
        let want = Some(format!("sha256:{hex}"));
        assert_eq!(digest_of_name(&format!("sha256:{hex}")), want);
        assert_eq!(digest_of_name(&format!("sha256-{hex}")), want);
        assert_eq!(digest_of_name(&hex), want);
        assert_eq!(digest_of_name(&hex.to_uppercase()), want);
        assert_eq!(digest_of_name("img.blob"), None);
        assert_eq!(digest_of_name(&hex[1..]), None);
        assert_eq!(digest_of_name(&format!("sha512:{hex}")), None);
    }

    #[test]
    fn challenges() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.example/token",service="reg",scope="repository:a/b:pull,push""#,
        )
        .unwrap();
        assert_eq!(c.scheme, "bearer");
        assert_eq!(c.params["realm"], "https://auth.example/token");
        assert_eq!(c.params["service"], "reg");
        assert_eq!(c.params["scope"], "repository:a/b:pull,push");
        let c = parse_challenge(r#"Basic realm="basic-realm""#).unwrap();
        assert_eq!(c.scheme, "basic");
        assert_eq!(c.params["realm"], "basic-realm");
        assert!(parse_challenge(r#"Bearer realm="unterminated"#).is_none());
        assert!(parse_challenge("").is_none());
    }

    #[test]
    fn specs_and_maps() {
        let cfg = HttpConfig::default();
        let s = OciSource::new("oci://reg.example:5000/lib/img", cfg.clone()).unwrap();
        assert_eq!(s.blobs_url, "https://reg.example:5000/v2/lib/img/blobs/");
        let s = OciSource::new("oci+http://127.0.0.1:5000/x/", cfg.clone()).unwrap();
        assert_eq!(s.blobs_url, "http://127.0.0.1:5000/v2/x/blobs/");
        for bad in [
            "oci://reg",
            "oci://reg/",
            "oci://reg/Upper",
            "oci://u@reg/x",
            "oci://reg/a//b",
        ] {
            assert!(OciSource::new(bad, cfg.clone()).is_err(), "{bad}");
        }
        let dir = std::env::temp_dir().join(format!("odd-ocimap-{}", std::process::id()));
        std::fs::write(
            &dir,
            format!("# comment\nimg.blob sha256:{}\n\n", "cd".repeat(32)),
        )
        .unwrap();
        let m = load_map(&dir).unwrap();
        assert_eq!(m["img.blob"], format!("sha256:{}", "cd".repeat(32)));
        std::fs::write(&dir, "img.blob md5:abc\n").unwrap();
        assert!(load_map(&dir).unwrap_err().contains(":1:"));
        std::fs::remove_file(&dir).unwrap();
    }

    /// Against a real registry (`tests/odd_oci.sh`'s set-up on the host):
    /// ODD_TEST_OCI=oci://127.0.0.1:5000/odd/test ODD_TEST_CA=... \
    /// ODD_TEST_CREDS=... ODD_TEST_MAP=... ODD_TEST_BLOB=path/to/simple.img
    /// cargo test live_registry -- --ignored
    #[test]
    #[ignore]
    fn live_registry() {
        let env = |k: &str| std::env::var(k).ok();
        let cfg = HttpConfig {
            ca_file: env("ODD_TEST_CA").map(Into::into),
            credentials: env("ODD_TEST_CREDS").map(Into::into),
            oci_map: env("ODD_TEST_MAP").map(Into::into),
            ..HttpConfig::default()
        };
        let src = OciSource::new(&env("ODD_TEST_OCI").unwrap(), cfg).unwrap();
        let want = std::fs::read(env("ODD_TEST_BLOB").unwrap()).unwrap();
        let blob = src.open("simple.img").unwrap().expect("simple.img");
        let mut got = vec![0u8; want.len()];
        assert_eq!(read_full(&*blob, &mut got, 0).unwrap(), want.len());
        assert!(got == want);
        assert!(src.open("gone.img").unwrap().is_none());
    }
}
