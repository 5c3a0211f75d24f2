//! Copying blob data into a cache file through its anonymous fd.

use std::fmt;
use std::io;
use std::sync::atomic::AtomicU64;

use crate::devnode::CacheFile;
use crate::range::{self, Span};
use crate::source::{read_full, Blob};
use crate::stats;
use crate::sys::Mapped;

/// Why a copy stopped early. `written` bytes (from the span's start) made it.
#[derive(Debug)]
pub enum CopyError {
    /// The source failed to read.
    Source { at: u64, err: io::Error },
    /// The source had less data than its size promised.
    ShortSource { at: u64 },
    /// Writing to the anonymous fd failed (ENOBUFS: object withdrawn).
    Write { at: u64, err: io::Error },
}

impl fmt::Display for CopyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CopyError::Source { at, err } => write!(f, "source read at {at} failed: {err}"),
            CopyError::ShortSource { at } => write!(f, "source data ends early, at {at}"),
            CopyError::Write { at, err } => write!(f, "cache write at {at} failed: {err}"),
        }
    }
}

/// Writes `data` at the page-aligned `off`, looping over short writes. A
/// short write that ends inside a page resumes at that page's start, since
/// the kernel refuses unaligned positions.
pub fn write_all_at(file: &dyn CacheFile, data: &[u8], off: u64, page: u64) -> io::Result<()> {
    let end = off.saturating_add(data.len() as u64);
    write_loop(off, end, page, |pos| {
        let rel = usize::try_from(pos - off).unwrap_or(usize::MAX);
        file.write_at(data.get(rel..).unwrap_or_default(), pos)
    })
    .map_err(|(_, e)| e)
}

/// Writes `map`'s bytes `[span.start, span.end)` to the same place in
/// `file`, looping over short writes as [`write_all_at`]. On failure,
/// returns where the data in the cache file stops (page aligned).
fn write_all_mapped(
    file: &dyn CacheFile,
    map: &Mapped,
    span: Span,
    page: u64,
) -> Result<(), (u64, io::Error)> {
    write_loop(span.start, span.end, page, |pos| {
        let len = usize::try_from(span.end - pos).unwrap_or(usize::MAX);
        file.write_mapped(map, pos, len)
    })
}

/// Calls `write(pos)` for the data from `pos` to `end`, starting at `off`
/// (page aligned), until it has all been written. On failure, returns the
/// position the data had reached.
fn write_loop(
    off: u64,
    end: u64,
    page: u64,
    mut write: impl FnMut(u64) -> io::Result<usize>,
) -> Result<(), (u64, io::Error)> {
    let mut pos = off;
    let mut stalls = 0;
    while pos < end {
        match write(pos) {
            Ok(0) => {
                return Err((
                    pos,
                    io::Error::new(io::ErrorKind::WriteZero, "cache file took no data"),
                ))
            }
            Ok(n) => {
                let next = range::resume_after_write(pos, n as u64, end, page);
                if next <= pos {
                    stalls += 1;
                    if stalls > 8 {
                        return Err((
                            pos,
                            io::Error::new(
                                io::ErrorKind::WriteZero,
                                "cache file keeps taking less than a page",
                            ),
                        ));
                    }
                } else {
                    stalls = 0;
                }
                pos = next;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err((pos, e)),
        }
    }
    Ok(())
}

/// Copies `span` (page-aligned start) from `blob` into `file`, `buf.len()`
/// bytes at a time (`buf.len()` should be a multiple of the page size).
/// Returns the bytes written. If the source comes up short, only whole pages
/// are written (a partial page would look cached with zeros in its tail),
/// except at the end of the span.
///
/// With `mapped` given, a mapped blob ([`Blob::mapped`]) is written from
/// its mapping, chunk by chunk while its file still holds the whole chunk
/// ([`Blob::size_now`]), and the bytes so written are added to `mapped`;
/// `buf` is not used for them (a caller that reads `buf` afterwards passes
/// `None`). Once the file is shorter, or if it shrinks during a write
/// (`EFAULT`), the rest of the span is read into `buf` as for any blob,
/// which finds where the data now ends: a page of the mapping past the
/// file's end would be written as zeros.
pub fn copy_span(
    blob: &dyn Blob,
    file: &dyn CacheFile,
    span: Span,
    buf: &mut [u8],
    page: u64,
    mapped: Option<&AtomicU64>,
) -> Result<u64, (u64, CopyError)> {
    let chunk = range::align_down(buf.len() as u64, page).max(page);
    let mut written = 0u64;
    let mut span = span;
    if let Some((map, count)) = mapped.and_then(|c| Some((blob.mapped()?, c))) {
        let end = span.end.min(map.len());
        for c in range::chunks(Span { end, ..span }, chunk) {
            if !blob.size_now().is_ok_and(|now| now >= c.end) {
                break;
            }
            let r = write_all_mapped(file, map, c, page);
            let done = r
                .as_ref()
                .map_or_else(|(pos, _)| pos - c.start, |()| c.len());
            written += done;
            stats::add(count, done);
            match r {
                Ok(()) => {}
                Err((_, err)) if err.raw_os_error() == Some(libc::EFAULT) => break,
                Err((pos, err)) => return Err((written, CopyError::Write { at: pos, err })),
            }
        }
        if written == span.len() {
            return Ok(written);
        }
        span.start += written;
    }
    for c in range::chunks(span, chunk) {
        let want = usize::try_from(c.len())
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let got = match read_full(blob, &mut buf[..want], c.start) {
            Ok(g) => g,
            Err(err) => return Err((written, CopyError::Source { at: c.start, err })),
        };
        let short = got < want;
        let usable = if short {
            range::align_down(got as u64, page) as usize
        } else {
            got
        };
        if usable > 0 {
            if let Err(err) = write_all_at(file, &buf[..usable], c.start, page) {
                return Err((written, CopyError::Write { at: c.start, err }));
            }
            written += usable as u64;
        }
        if short {
            return Err((
                written,
                CopyError::ShortSource {
                    at: c.start + got as u64,
                },
            ));
        }
    }
    Ok(written)
}

/// Alignment of the staging buffers: cache files are written with direct
/// I/O, which needs the user buffer aligned to the logical block size.
pub const BUF_ALIGN: usize = 4096;

/// Returns `len` bytes of `storage`, starting at a [`BUF_ALIGN`]-aligned
/// address, growing `storage` as needed.
pub fn aligned(storage: &mut Vec<u8>, len: usize) -> &mut [u8] {
    if storage.len() < len + BUF_ALIGN {
        storage.resize(len + BUF_ALIGN, 0);
    }
    let off = storage.as_ptr().align_offset(BUF_ALIGN).min(BUF_ALIGN);
    &mut storage[off..off + len]
}

#[cfg(test)]
mod aligned_tests {
    use super::*;

    #[test]
    fn aligned_slices() {
        let mut v = Vec::new();
        for len in [1, 4096, 8192, 100_000] {
            let b = aligned(&mut v, len);
            assert_eq!(b.len(), len);
            assert_eq!(b.as_ptr() as usize % BUF_ALIGN, 0);
        }
    }
}
