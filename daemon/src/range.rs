//! Range arithmetic for answering READ requests.
//!
//! Writes to an anonymous fd must start on a page boundary (else ENOBUFS) and
//! the kernel rounds their length up to a page for space allocation, so a
//! partial page in the middle of a blob would leave the rest of that page
//! looking cached but zero-filled. The daemon therefore always writes whole
//! pages, except for the final partial page of the blob, which it writes only
//! up to the blob's end. All arithmetic saturates: no overflow panics on any
//! (offset, length) the kernel may send.

/// A byte range `[start, end)` to copy from the blob into the cache file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    pub start: u64,
    pub end: u64,
}

impl Span {
    pub fn len(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }
}

/// Rounds `x` down to a multiple of `page` (a power of two).
pub fn align_down(x: u64, page: u64) -> u64 {
    x & !(page - 1)
}

/// Rounds `x` up to a multiple of `page` (a power of two), saturating.
pub fn align_up(x: u64, page: u64) -> u64 {
    match x.checked_add(page - 1) {
        Some(v) => align_down(v, page),
        None => align_down(u64::MAX, page),
    }
}

/// Computes what to write for a READ of `[off, off+len)` on a blob of `size`
/// bytes: the request widened to whole pages and clipped to the blob. `None`
/// when nothing is to be written (empty request, or entirely past the end).
pub fn plan_read(off: u64, len: u64, size: u64, page: u64) -> Option<Span> {
    debug_assert!(page.is_power_of_two());
    if len == 0 || off >= size {
        return None;
    }
    let start = align_down(off, page);
    // Past u64::MAX the blob size is the only limit that matters.
    let end = match off.saturating_add(len).checked_add(page - 1) {
        Some(v) => align_down(v, page),
        None => u64::MAX,
    }
    .min(size);
    (end > start).then_some(Span { start, end })
}

/// Widens `want` (a READ's page span from [`plan_read`]) to the aligned
/// extents of `extent` bytes that cover it, clipped to the blob's `size`: read
/// amplification, so that a sequential reader's next READs find their pages
/// cached. `extent` must be a power of two; 0 or anything up to a page leaves
/// `want` as it is. The result always contains `want` and never ends past
/// `size` (unless `want` does, which [`plan_read`] never makes it).
pub fn plan_extent(want: Span, size: u64, extent: u64, page: u64) -> Span {
    if extent <= page || !extent.is_power_of_two() {
        return want;
    }
    let start = align_down(want.start, extent);
    let end = align_up(want.end, extent).min(size).max(want.end);
    Span { start, end }
}

/// Splits `span` into pieces of at most `chunk` bytes whose starts stay page
/// aligned (`chunk` must be a multiple of the page size).
pub fn chunks(span: Span, chunk: u64) -> impl Iterator<Item = Span> {
    let chunk = chunk.max(1);
    let mut pos = span.start;
    std::iter::from_fn(move || {
        if pos >= span.end {
            return None;
        }
        let end = pos.saturating_add(chunk).min(span.end);
        let s = Span { start: pos, end };
        pos = end;
        Some(s)
    })
}

/// Where to continue after a write at the page-aligned `pos` wrote `written`
/// bytes: the next page boundary at or before `pos + written`, unless that is
/// the end of the data (`end`), which may be unaligned.
pub fn resume_after_write(pos: u64, written: u64, end: u64, page: u64) -> u64 {
    let next = pos.saturating_add(written);
    if next >= end {
        end
    } else {
        align_down(next, page)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: u64 = 4096;

    #[test]
    fn alignment() {
        assert_eq!(align_down(0, P), 0);
        assert_eq!(align_down(4097, P), 4096);
        assert_eq!(align_up(1, P), 4096);
        assert_eq!(align_up(4096, P), 4096);
        assert_eq!(align_up(u64::MAX, P), u64::MAX - 4095);
    }

    #[test]
    fn plans_whole_pages() {
        // Aligned request inside the blob.
        assert_eq!(
            plan_read(0, 8192, 1 << 20, P),
            Some(Span {
                start: 0,
                end: 8192
            })
        );
        // Unaligned start and end are widened to pages.
        assert_eq!(
            plan_read(100, 10, 1 << 20, P),
            Some(Span {
                start: 0,
                end: 4096
            })
        );
        assert_eq!(
            plan_read(4095, 2, 1 << 20, P),
            Some(Span {
                start: 0,
                end: 8192
            })
        );
        // Clipped to the blob size, ending on a partial final page.
        assert_eq!(
            plan_read(8192, 1 << 20, 10000, P),
            Some(Span {
                start: 8192,
                end: 10000
            })
        );
        assert_eq!(
            plan_read(9000, 10, 10000, P),
            Some(Span {
                start: 8192,
                end: 10000
            })
        );
        // Past the end, empty request, empty blob.
        assert_eq!(plan_read(12288, 4096, 10000, P), None);
        assert_eq!(plan_read(0, 0, 10000, P), None);
        assert_eq!(plan_read(0, 4096, 0, P), None);
    }

    #[test]
    fn plans_never_overflow() {
        assert_eq!(plan_read(u64::MAX, u64::MAX, u64::MAX, P), None);
        assert_eq!(
            plan_read(u64::MAX - 10, 100, u64::MAX, P),
            Some(Span {
                start: u64::MAX - 4095,
                end: u64::MAX
            })
        );
        assert_eq!(
            plan_read(0, u64::MAX, 5, P),
            Some(Span { start: 0, end: 5 })
        );
    }

    /// plan_read then plan_extent, as the handler does.
    fn ext(off: u64, len: u64, size: u64, extent: u64) -> Option<(u64, u64)> {
        plan_read(off, len, size, P).map(|w| {
            let s = plan_extent(w, size, extent, P);
            assert!(
                s.start <= w.start && s.end >= w.end,
                "{s:?} must cover {w:?}"
            );
            (s.start, s.end)
        })
    }

    #[test]
    fn extents_are_aligned_and_clamped() {
        const M: u64 = 1 << 20;
        let size = 10 * M + 1234; // not page aligned
                                  // READ at 0: the first extent.
        assert_eq!(ext(0, 4096, size, M), Some((0, M)));
        // Inside an extent: the whole extent around it.
        assert_eq!(ext(3 * M + 8192, 4096, size, M), Some((3 * M, 4 * M)));
        assert_eq!(ext(3 * M + 100, 1, size, M), Some((3 * M, 4 * M)));
        // Straddling an extent boundary: both extents.
        assert_eq!(ext(2 * M - 4096, 8192, size, M), Some((M, 3 * M)));
        assert_eq!(ext(M - 1, 2, size, M), Some((0, 2 * M)));
        // The last byte: the last extent, ending at the blob's end.
        assert_eq!(ext(size - 1, 1, size, M), Some((10 * M, size)));
        assert_eq!(ext(10 * M, 4096, size, M), Some((10 * M, size)));
        // A READ reaching past the end is clipped too.
        assert_eq!(ext(9 * M + 4096, 4 * M, size, M), Some((9 * M, size)));
        // A blob smaller than an extent: the whole blob, never more.
        assert_eq!(ext(8192, 4096, 50_000, M), Some((0, 50_000)));
        assert_eq!(ext(0, 4096, 4096, M), Some((0, 4096)));
        // A blob of exactly one extent.
        assert_eq!(ext(M - 4096, 4096, M, M), Some((0, M)));
        // Past the end: nothing, as without amplification.
        assert_eq!(ext(size + 4096, 4096, size, M), None);
        // Another power of two.
        assert_eq!(ext(200_000, 4096, size, 64 << 10), Some((196_608, 262_144)));
    }

    #[test]
    fn extent_off_leaves_the_request() {
        let size = 1 << 30;
        for extent in [0, 1, 512, P] {
            assert_eq!(ext(8192 + 5, 100, size, extent), Some((8192, 12288)));
        }
        // Never overflows near the top of the range.
        assert_eq!(
            ext(u64::MAX - 10, 5, u64::MAX, 1 << 20),
            Some((u64::MAX - ((1 << 20) - 1), u64::MAX))
        );
    }

    #[test]
    fn chunking() {
        let v: Vec<_> = chunks(
            Span {
                start: 4096,
                end: 4096 * 5 + 7,
            },
            8192,
        )
        .collect();
        assert_eq!(
            v,
            vec![
                Span {
                    start: 4096,
                    end: 12288
                },
                Span {
                    start: 12288,
                    end: 20480
                },
                Span {
                    start: 20480,
                    end: 20487
                },
            ]
        );
        assert!(v.iter().all(|s| s.start % P == 0));
        assert_eq!(chunks(Span { start: 0, end: 0 }, 8192).count(), 0);
        assert_eq!(v.iter().map(Span::len).sum::<u64>(), 4096 * 4 + 7);
    }

    #[test]
    fn resumes_on_page_boundaries() {
        assert_eq!(resume_after_write(0, 4096, 8192, P), 4096);
        // A short write that ends mid-page restarts at that page.
        assert_eq!(resume_after_write(0, 5000, 8192, P), 4096);
        assert_eq!(resume_after_write(4096, 100, 8192, P), 4096);
        // Reaching the (unaligned) end finishes.
        assert_eq!(resume_after_write(8192, 1808, 10000, P), 10000);
    }
}
