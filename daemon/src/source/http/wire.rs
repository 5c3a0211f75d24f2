//! HTTP/1.1 response parsing: status line, the few headers the client needs,
//! and body framing (Content-Length, chunked, until close), with hard limits
//! on line length and header count.

use std::io::{self, BufRead, BufReader, Read};
use std::net::TcpStream;

use super::HttpError;

const MAX_LINE: u64 = 8 * 1024;
const MAX_HEADERS: usize = 100;
/// Leftover body bytes we are willing to read to keep a connection reusable.
const MAX_DRAIN: u64 = 64 * 1024;

pub(super) fn proto_err(m: impl Into<String>) -> HttpError {
    HttpError::Protocol(m.into())
}

/// A `Content-Range` header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ContentRange {
    /// `bytes a-b/total` (total `None` for `*`).
    Bytes {
        start: u64,
        end: u64,
        total: Option<u64>,
    },
    /// `bytes */total` (with 416).
    Unsatisfied { total: u64 },
}

fn parse_content_range(v: &str) -> Option<ContentRange> {
    let v = v.trim().strip_prefix("bytes")?.trim_start();
    let (range, total) = v.split_once('/')?;
    let total = total.trim();
    if range.trim() == "*" {
        return Some(ContentRange::Unsatisfied {
            total: total.parse().ok()?,
        });
    }
    let (a, b) = range.trim().split_once('-')?;
    let start: u64 = a.trim().parse().ok()?;
    let end: u64 = b.trim().parse().ok()?;
    if end < start {
        return None;
    }
    let total = if total == "*" {
        None
    } else {
        Some(total.parse().ok()?)
    };
    if let Some(t) = total {
        if end >= t {
            return None;
        }
    }
    Some(ContentRange::Bytes { start, end, total })
}

/// Status line and the headers this client cares about.
#[derive(Debug, Default)]
pub(super) struct Head {
    pub(super) status: u16,
    pub(super) content_length: Option<u64>,
    pub(super) chunked: bool,
    pub(super) close: bool,
    pub(super) content_range: Option<ContentRange>,
}

/// A pooled connection.
/// Reads one CRLF- or LF-terminated line (without the terminator).
fn read_line(r: &mut BufReader<TcpStream>, buf: &mut Vec<u8>) -> Result<usize, HttpError> {
    buf.clear();
    let n = r.by_ref().take(MAX_LINE).read_until(b'\n', buf)?;
    if n == 0 {
        return Ok(0);
    }
    if buf.last() != Some(&b'\n') {
        return Err(if n as u64 >= MAX_LINE {
            proto_err("line too long")
        } else {
            HttpError::Io(io::ErrorKind::UnexpectedEof.into())
        });
    }
    buf.pop();
    if buf.last() == Some(&b'\r') {
        buf.pop();
    }
    Ok(n)
}

/// Why reading a response head failed: `Stale` means the connection closed
/// before a single byte arrived (an idle keep-alive connection the server
/// dropped), which is worth one immediate retry on a fresh connection.
pub(super) enum HeadError {
    Stale(io::Error),
    Other(HttpError),
}

pub(super) fn read_head(r: &mut BufReader<TcpStream>) -> Result<Head, HeadError> {
    let mut line = Vec::new();
    loop {
        let n = match read_line(r, &mut line) {
            Ok(n) => n,
            Err(HttpError::Io(e)) if is_reset(&e) => return Err(HeadError::Stale(e)),
            Err(e) => return Err(HeadError::Other(e)),
        };
        if n == 0 {
            return Err(HeadError::Stale(io::ErrorKind::UnexpectedEof.into()));
        }
        let head = parse_head(r, &line).map_err(HeadError::Other)?;
        // Skip interim 1xx responses (e.g. a stray 100 Continue).
        if (100..200).contains(&head.status) {
            continue;
        }
        return Ok(head);
    }
}

pub(super) fn is_reset(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
    )
}

fn parse_head(r: &mut BufReader<TcpStream>, status_line: &[u8]) -> Result<Head, HttpError> {
    let status_line =
        std::str::from_utf8(status_line).map_err(|_| proto_err("status line is not UTF-8"))?;
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    let http10 = match version {
        "HTTP/1.1" => false,
        "HTTP/1.0" => true,
        _ => return Err(proto_err(format!("bad status line {status_line:?}"))),
    };
    let status = parts
        .next()
        .and_then(|s| s.parse::<u16>().ok())
        .filter(|s| (100..600).contains(s))
        .ok_or_else(|| proto_err(format!("bad status line {status_line:?}")))?;
    let mut head = Head {
        status,
        close: http10,
        ..Head::default()
    };
    let mut line = Vec::new();
    for _ in 0..=MAX_HEADERS {
        if read_line(r, &mut line)? == 0 {
            return Err(HttpError::Io(io::ErrorKind::UnexpectedEof.into()));
        }
        if line.is_empty() {
            return Ok(head);
        }
        let text = String::from_utf8_lossy(&line);
        let Some((name, value)) = text.split_once(':') else {
            return Err(proto_err(format!("bad header line {text:?}")));
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => {
                let n = value
                    .parse::<u64>()
                    .map_err(|_| proto_err(format!("bad Content-Length {value:?}")))?;
                if head.content_length.is_some_and(|old| old != n) {
                    return Err(proto_err("conflicting Content-Length headers"));
                }
                head.content_length = Some(n);
            }
            "transfer-encoding" => {
                let v = value.to_ascii_lowercase();
                if v.split(',').map(str::trim).any(|t| t == "chunked") {
                    head.chunked = true;
                } else if v != "identity" {
                    return Err(proto_err(format!(
                        "unsupported Transfer-Encoding {value:?}"
                    )));
                }
            }
            "connection" => {
                let v = value.to_ascii_lowercase();
                if v.split(',').any(|t| t.trim() == "close") {
                    head.close = true;
                } else if v.split(',').any(|t| t.trim() == "keep-alive") {
                    head.close = false;
                }
            }
            "content-range" => {
                head.content_range = Some(
                    parse_content_range(value)
                        .ok_or_else(|| proto_err(format!("bad Content-Range {value:?}")))?,
                );
            }
            _ => {}
        }
    }
    Err(proto_err("too many header lines"))
}

/// How the body of a response ends.
enum Framing {
    Length(u64),
    Chunked { left_in_chunk: u64, done: bool },
    UntilClose,
}

/// Reads a response body according to its framing.
pub(super) struct Body<'a> {
    r: &'a mut BufReader<TcpStream>,
    framing: Framing,
    finished: bool,
}

impl<'a> Body<'a> {
    pub(super) fn new(r: &'a mut BufReader<TcpStream>, head: &Head) -> Body<'a> {
        let framing = if head.status == 204 || head.status == 304 {
            Framing::Length(0)
        } else if head.chunked {
            Framing::Chunked {
                left_in_chunk: 0,
                done: false,
            }
        } else if let Some(n) = head.content_length {
            Framing::Length(n)
        } else {
            Framing::UntilClose
        };
        let finished = matches!(framing, Framing::Length(0));
        Body {
            r,
            framing,
            finished,
        }
    }

    /// Reads body bytes; `Ok(0)` at the end of the body.
    pub(super) fn read(&mut self, buf: &mut [u8]) -> Result<usize, HttpError> {
        if self.finished || buf.is_empty() {
            return Ok(0);
        }
        match &mut self.framing {
            Framing::Length(left) => {
                let want = usize::try_from(*left).unwrap_or(usize::MAX).min(buf.len());
                let n = self.r.read(&mut buf[..want])?;
                if n == 0 {
                    return Err(proto_err(format!("body ended {left} bytes early")));
                }
                *left -= n as u64;
                if *left == 0 {
                    self.finished = true;
                }
                Ok(n)
            }
            Framing::UntilClose => {
                let n = self.r.read(buf)?;
                if n == 0 {
                    self.finished = true;
                }
                Ok(n)
            }
            Framing::Chunked { .. } => self.read_chunked(buf),
        }
    }

    fn read_chunked(&mut self, buf: &mut [u8]) -> Result<usize, HttpError> {
        let Framing::Chunked {
            left_in_chunk,
            done,
        } = &mut self.framing
        else {
            return Ok(0);
        };
        let mut line = Vec::new();
        if *done {
            return Ok(0);
        }
        if *left_in_chunk == 0 {
            if read_line(self.r, &mut line)? == 0 {
                return Err(proto_err("chunked body ended early"));
            }
            let text = String::from_utf8_lossy(&line);
            let size_text = text.split(';').next().unwrap_or("").trim();
            let size = u64::from_str_radix(size_text, 16)
                .map_err(|_| proto_err(format!("bad chunk size {size_text:?}")))?;
            if size == 0 {
                // Trailers up to an empty line.
                for _ in 0..=MAX_HEADERS {
                    if read_line(self.r, &mut line)? == 0 || line.is_empty() {
                        *done = true;
                        self.finished = true;
                        return Ok(0);
                    }
                }
                return Err(proto_err("too many trailer lines"));
            }
            *left_in_chunk = size;
        }
        let want = usize::try_from(*left_in_chunk)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let n = self.r.read(&mut buf[..want])?;
        if n == 0 {
            return Err(proto_err("chunk ended early"));
        }
        *left_in_chunk -= n as u64;
        if *left_in_chunk == 0 {
            // CRLF after the chunk data.
            read_line(self.r, &mut line)?;
            if !line.is_empty() {
                return Err(proto_err("missing CRLF after chunk"));
            }
        }
        Ok(n)
    }

    /// Fills `buf` as far as the body goes; returns the bytes read.
    pub(super) fn read_full(&mut self, buf: &mut [u8]) -> Result<usize, HttpError> {
        let mut done = 0;
        while done < buf.len() {
            match self.read(&mut buf[done..])? {
                0 => break,
                n => done += n,
            }
        }
        Ok(done)
    }

    /// Discards up to `n` body bytes; returns how many were discarded.
    pub(super) fn skip(&mut self, mut n: u64) -> Result<u64, HttpError> {
        let mut scratch = [0u8; 8192];
        let mut skipped = 0;
        while n > 0 {
            let want = usize::try_from(n).unwrap_or(usize::MAX).min(scratch.len());
            match self.read(&mut scratch[..want])? {
                0 => break,
                k => {
                    n -= k as u64;
                    skipped += k as u64;
                }
            }
        }
        Ok(skipped)
    }

    /// Reads what is left of the body if it is small, so the connection can
    /// be reused; returns whether the body was consumed completely.
    pub(super) fn drain(&mut self) -> bool {
        if self.finished {
            return true;
        }
        if matches!(self.framing, Framing::UntilClose) {
            return false;
        }
        if let Framing::Length(left) = self.framing {
            if left > MAX_DRAIN {
                return false;
            }
        }
        match self.skip(MAX_DRAIN) {
            Ok(_) => self.finished,
            Err(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_content_range() {
        assert_eq!(
            parse_content_range("bytes 0-0/100"),
            Some(ContentRange::Bytes {
                start: 0,
                end: 0,
                total: Some(100)
            })
        );
        assert_eq!(
            parse_content_range("bytes 5-9/*"),
            Some(ContentRange::Bytes {
                start: 5,
                end: 9,
                total: None
            })
        );
        assert_eq!(
            parse_content_range("bytes */0"),
            Some(ContentRange::Unsatisfied { total: 0 })
        );
        assert_eq!(parse_content_range("bytes 9-5/100"), None);
        assert_eq!(parse_content_range("bytes 0-100/100"), None);
        assert_eq!(parse_content_range("items 0-1/2"), None);
        assert_eq!(parse_content_range("bytes x-1/2"), None);
    }
}
