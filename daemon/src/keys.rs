//! Mapping of OPEN keys to blob names.
//!
//! erofs uses the volume key `erofs,<domain_id or fsid>` and, for each blob
//! (the primary image and every extra device), a cookie key that is the blob
//! name as raw bytes: the `fsid=` value for the primary blob, and the device
//! tag or `device=` value for the others. The blob name is used as a file name
//! in a directory source and as the last URL path segment in an HTTP source,
//! so it is validated strictly here.

use std::fmt;

/// The longest blob name accepted (fscache cookie keys are at most 255 bytes).
pub const MAX_BLOB_NAME: usize = 255;

/// Why a cookie key cannot name a blob.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyError {
    Empty,
    TooLong(usize),
    NotUtf8,
    /// `.` or `..`.
    DotName,
    /// A `/`, NUL or control character.
    BadChar(char),
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::Empty => write!(f, "empty cookie key"),
            KeyError::TooLong(n) => write!(f, "cookie key of {n} bytes is too long"),
            KeyError::NotUtf8 => write!(f, "cookie key is not UTF-8"),
            KeyError::DotName => write!(f, "cookie key is '.' or '..'"),
            KeyError::BadChar(c) => write!(f, "cookie key contains {c:?}"),
        }
    }
}

impl std::error::Error for KeyError {}

/// The volume a blob belongs to, as decoded from the volume key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Volume {
    /// The whole key, lossily decoded, for logs.
    pub key: String,
    /// `<domain_id or fsid>` when the key has the erofs form.
    pub erofs_name: Option<String>,
}

/// Decodes a volume key (without its terminating NUL).
pub fn parse_volume(volume_key: &[u8]) -> Volume {
    let key = String::from_utf8_lossy(volume_key).into_owned();
    let erofs_name = key
        .strip_prefix("erofs,")
        .filter(|n| !n.is_empty())
        .map(str::to_owned);
    Volume { key, erofs_name }
}

/// Turns a cookie key into a blob name that is safe to use as a file name.
///
/// A single trailing NUL is tolerated (some producers count it), anything else
/// outside printable, slash-free UTF-8 is refused.
pub fn blob_name(cookie_key: &[u8]) -> Result<String, KeyError> {
    let key = cookie_key.strip_suffix(&[0]).unwrap_or(cookie_key);
    if key.is_empty() {
        return Err(KeyError::Empty);
    }
    if key.len() > MAX_BLOB_NAME {
        return Err(KeyError::TooLong(key.len()));
    }
    let name = std::str::from_utf8(key).map_err(|_| KeyError::NotUtf8)?;
    if name == "." || name == ".." {
        return Err(KeyError::DotName);
    }
    if let Some(c) = name.chars().find(|c| *c == '/' || c.is_control()) {
        return Err(KeyError::BadChar(c));
    }
    Ok(name.to_owned())
}

/// Percent-encodes a blob name for use as one URL path segment.
pub fn url_segment(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erofs_volume_keys() {
        assert_eq!(
            parse_volume(b"erofs,img.blob"),
            Volume {
                key: "erofs,img.blob".into(),
                erofs_name: Some("img.blob".into())
            }
        );
        assert_eq!(parse_volume(b"erofs,").erofs_name, None);
        assert_eq!(parse_volume(b"nfs,x").erofs_name, None);
        assert_eq!(parse_volume(b"\xff").key, "\u{fffd}");
    }

    #[test]
    fn blob_names() {
        assert_eq!(blob_name(b"img.blob").unwrap(), "img.blob");
        assert_eq!(blob_name(b"img.blob\0").unwrap(), "img.blob");
        assert_eq!(blob_name(b"sha256:abc-1_2").unwrap(), "sha256:abc-1_2");
        assert_eq!(blob_name(b""), Err(KeyError::Empty));
        assert_eq!(blob_name(b"\0"), Err(KeyError::Empty));
        assert_eq!(blob_name(b".."), Err(KeyError::DotName));
        assert_eq!(blob_name(b"."), Err(KeyError::DotName));
        assert_eq!(blob_name(b"../etc/passwd"), Err(KeyError::BadChar('/')));
        assert_eq!(blob_name(b"a\0b"), Err(KeyError::BadChar('\0')));
        assert_eq!(blob_name(b"a\nb"), Err(KeyError::BadChar('\n')));
        assert_eq!(blob_name(b"\xc3\x28"), Err(KeyError::NotUtf8));
        assert_eq!(blob_name(&[b'a'; 256]), Err(KeyError::TooLong(256)));
        assert!(blob_name(&[b'a'; 255]).is_ok());
    }

    #[test]
    fn url_segments() {
        assert_eq!(url_segment("img.blob"), "img.blob");
        assert_eq!(url_segment("a b/c%"), "a%20b%2Fc%25");
        assert_eq!(url_segment("sha256:ü"), "sha256%3A%C3%BC");
    }
}
