//! Blobs stored as regular files in a local directory.

use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use std::collections::HashMap;
use std::sync::Mutex;

use super::{Blob, Source};
use crate::sys::{self, Mapped};

/// `dir:/path`: blob `NAME` is the file `/path/NAME`.
pub struct DirSource {
    root: PathBuf,
    /// Which blob files are mapped for copies; `None` with `--no-map`.
    mounts: Option<Arc<MountPolicy>>,
}

impl DirSource {
    /// A source over the files in `root`, mapped for copies if `map` and
    /// their filesystem allows ([`maps_well`]).
    pub fn new(root: PathBuf, map: bool) -> DirSource {
        DirSource {
            root,
            mounts: map.then(Arc::default),
        }
    }
}

/// Whether the blob files on each mount are mapped ([`maps_well`]),
/// decided at the first file of the mount that a copy asks for.
#[derive(Default)]
struct MountPolicy {
    /// By mount id: whether its files are mapped.
    known: Mutex<HashMap<u64, bool>>,
}

impl MountPolicy {
    fn maps(&self, file: &File, path: &std::path::Path) -> bool {
        let id = match sys::mount_id(file.as_fd()) {
            Ok(id) => id,
            Err(e) => {
                debug!("{}: no mount id ({e}); not mapped", path.display());
                return false;
            }
        };
        let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        *known.entry(id).or_insert_with(|| {
            let fs = sys::mount_fs_type(id);
            let yes = matches!(&fs, Ok(Some(t)) if maps_well(t));
            debug!(
                "{}: mount {id} is {fs:?}; its blob files are {}mapped",
                path.display(),
                if yes { "" } else { "not " }
            );
            yes
        })
    }
}

impl Source for DirSource {
    fn open(&self, name: &str) -> io::Result<Option<Arc<dyn Blob>>> {
        // `name` was validated by keys::blob_name: no '/', not '.' or '..'.
        let path = self.root.join(name);
        // O_NONBLOCK: opening a FIFO without a writer (or some device nodes)
        // would otherwise block this worker for ever. The file type is
        // checked on the open fd before anything is read from it.
        let file = match std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
            .open(&path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
        };
        let meta = file.metadata()?;
        if !meta.is_file() {
            warn!(
                "{} is not a regular file ({:?}); ignoring it",
                path.display(),
                meta.file_type()
            );
            return Ok(None);
        }
        Ok(Some(Arc::new(FileBlob {
            size: meta.len(),
            file,
            path,
            mounts: self.mounts.clone(),
            mapping: OnceLock::new(),
        })))
    }

    fn describe(&self) -> String {
        format!("dir:{}", self.root.display())
    }

    fn is_local(&self) -> bool {
        true
    }

    fn startup_problem(&self) -> Option<String> {
        match std::fs::metadata(&self.root) {
            Ok(m) if m.is_dir() => None,
            Ok(_) => Some(format!("{} is not a directory", self.root.display())),
            Err(e) => Some(format!("{}: {e}", self.root.display())),
        }
    }
}

/// An open blob file. Its size is taken once, at OPEN time: if the file is
/// truncated later, reads past its new end come back short and the kernel
/// reports EIO for the missing part.
///
/// Unless mapping is off, the file's `size` bytes are mapped when a copy
/// first asks for them, and stay mapped until the blob is dropped (its
/// object closed), if its filesystem is a local one ([`maps_well`]).
/// A blob that is not mapped is read as without.
struct FileBlob {
    file: File,
    size: u64,
    path: PathBuf,
    mounts: Option<Arc<MountPolicy>>,
    mapping: OnceLock<Option<Mapped>>,
}

impl Blob for FileBlob {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_at(&self, buf: &mut [u8], off: u64) -> io::Result<usize> {
        if off >= self.size {
            return Ok(0);
        }
        let max = usize::try_from(self.size - off)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        self.file.read_at(&mut buf[..max], off)
    }

    fn describe(&self) -> String {
        self.path.display().to_string()
    }

    fn mapped(&self) -> Option<&Mapped> {
        let mounts = self.mounts.as_ref()?;
        if self.size == 0 {
            return None;
        }
        self.mapping
            .get_or_init(|| {
                if !mounts.maps(&self.file, &self.path) {
                    return None;
                }
                match Mapped::new(self.file.as_fd(), self.size) {
                    Ok(m) => Some(m),
                    Err(e) => {
                        debug!("{}: not mapped ({e}); copies read it", self.path.display());
                        None
                    }
                }
            })
            .as_ref()
    }

    fn size_now(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }
}

/// Whether blob files on a filesystem of type `fs` (as mountinfo names
/// it) are mapped: local disk and memory filesystems, whose page faults
/// read ahead from local storage or need no reading. On network and
/// virtual ones (NFS, SMB, FUSE, 9p) a fault may wait for a round trip per
/// page: with 9p's `cache=none`, the test guest's blobs took twice as long
/// to copy mapped as read. Their blobs are read as with `--no-map`. (9p's
/// `statfs` reports the host's filesystem, so the mount's type is used.)
fn maps_well(fs: &str) -> bool {
    matches!(
        fs,
        "ext4"
            | "ext3"
            | "ext2"
            | "xfs"
            | "btrfs"
            | "f2fs"
            | "bcachefs"
            | "zfs"
            | "tmpfs"
            | "ramfs"
            | "rootfs"
            | "overlay"
            | "erofs"
            | "squashfs"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::read_full;

    fn tempdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("odd-test-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn serves_files_and_misses() {
        let d = tempdir("dir");
        std::fs::write(d.join("a.blob"), b"hello world").unwrap();
        std::fs::create_dir(d.join("sub")).unwrap();
        let s = DirSource::new(d.clone(), true);
        let b = s.open("a.blob").unwrap().unwrap();
        assert_eq!(b.size(), 11);
        let mut buf = [0u8; 8];
        assert_eq!(read_full(&*b, &mut buf, 6).unwrap(), 5);
        assert_eq!(&buf[..5], b"world");
        assert!(s.open("missing").unwrap().is_none());
        assert!(s.open("sub").unwrap().is_none());
        // Truncated after open: reads come back short, not past the new end.
        std::fs::write(d.join("a.blob"), b"hel").unwrap();
        assert_eq!(read_full(&*b, &mut buf, 0).unwrap(), 3);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn fifo_and_device_nodes_are_not_blobs_and_do_not_block() {
        let d = tempdir("fifo");
        let fifo = d.join("pipe.blob");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: `c` is a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        std::os::unix::fs::symlink("/dev/null", d.join("null.blob")).unwrap();
        let s = Arc::new(DirSource::new(d.clone(), true));
        let (tx, rx) = std::sync::mpsc::channel();
        let s2 = s.clone();
        std::thread::spawn(move || {
            let fifo = s2.open("pipe.blob").map(|b| b.is_none());
            let null = s2.open("null.blob").map(|b| b.is_none());
            let _ = tx.send((fifo.ok(), null.ok()));
        });
        let got = rx
            .recv_timeout(std::time::Duration::from_secs(5))
            .expect("opening a FIFO blocked");
        assert_eq!(got, (Some(true), Some(true)));
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn missing_root_is_reported_at_start() {
        let d = tempdir("missing");
        assert_eq!(DirSource::new(d.clone(), true).startup_problem(), None);
        let gone = d.join("nope");
        let p = DirSource::new(gone.clone(), true)
            .startup_problem()
            .unwrap();
        assert!(p.contains("No such file"), "{p}");
        std::fs::write(d.join("f"), b"x").unwrap();
        assert!(DirSource::new(d.join("f"), true)
            .startup_problem()
            .is_some());
        std::fs::remove_dir_all(&d).unwrap();
    }

    /// A cache file that is a plain file: writes from a mapping really go
    /// through `pwrite(2)` (the mock's would read the mapping itself).
    struct PlainCache(File);

    impl crate::devnode::CacheFile for PlainCache {
        fn write_at(&self, buf: &[u8], off: u64) -> io::Result<usize> {
            self.0.write_at(buf, off)
        }
        fn write_mapped(&self, map: &Mapped, off: u64, len: usize) -> io::Result<usize> {
            map.write_to(self.0.as_fd(), off, len)
        }
        fn read_complete(&self, _: u32) -> io::Result<()> {
            Ok(())
        }
        fn seek_data(&self, off: u64) -> io::Result<Option<u64>> {
            Ok(Some(off))
        }
        fn seek_hole(&self, off: u64) -> io::Result<u64> {
            Ok(off)
        }
        fn describe(&self) -> String {
            "plain".into()
        }
    }

    /// Cuts the file at `path` to `len` bytes.
    fn shrink(path: &std::path::Path, len: u64) {
        let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
        f.set_len(len).unwrap();
    }

    /// Copies the first four pages of `blob` into a new plain file `c` in
    /// `d`, mapping allowed: the result, and the bytes from the mapping.
    fn copy_four_pages(
        blob: &dyn Blob,
        d: &std::path::Path,
    ) -> (Result<u64, (u64, crate::copy::CopyError)>, u64) {
        let _ = std::fs::remove_file(d.join("c"));
        let cache = PlainCache(File::create(d.join("c")).unwrap());
        let mut buf = vec![0u8; 4 * 4096];
        let span = crate::range::Span {
            start: 0,
            end: 4 * 4096,
        };
        let count = std::sync::atomic::AtomicU64::new(0);
        let r = crate::copy::copy_span(blob, &cache, span, &mut buf, 4096, Some(&count));
        (r, count.into_inner())
    }

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 13 % 251) as u8).collect()
    }

    /// A mapped blob is written from its mapping, in the copy's chunks, and
    /// the cache gets the same bytes as with `--no-map` or a caller that
    /// wants the data in its buffer, whose copies read.
    #[test]
    fn copies_write_from_the_mapping_unless_mapping_is_off() {
        use crate::copy::copy_span;
        use crate::devnode::Devnode;
        use crate::range::Span;
        use std::sync::atomic::{AtomicU64, Ordering};
        let d = tempdir("map");
        let data = pattern(5 * 4096 + 123);
        std::fs::write(d.join("b"), &data).unwrap();
        for (map, counted) in [(true, true), (false, true), (true, false)] {
            let blob = DirSource::new(d.clone(), map).open("b").unwrap().unwrap();
            assert_eq!(blob.mapped().is_some(), map);
            let count = AtomicU64::new(0);
            let dev = crate::mock::MockDev::new();
            let f = dev.add_file(3);
            let cache = dev.adopt_anon_fd(3).unwrap();
            let mut buf = vec![0u8; 2 * 4096];
            let span = Span {
                start: 4096,
                end: data.len() as u64,
            };
            let counter = counted.then_some(&count);
            let n = copy_span(&*blob, &*cache, span, &mut buf, 4096, counter).unwrap();
            assert_eq!(n, span.len());
            assert_eq!(f.bytes(4096, data.len()), &data[4096..]);
            let mapped = map && counted;
            // 4 pages and the tail in chunks of 2 pages: 3 writes.
            let writes = f.mapped_writes.load(Ordering::SeqCst);
            assert_eq!(writes, if mapped { 3 } else { 0 }, "{map} {counted}");
            assert_eq!(f.writes.lock().unwrap().len(), 3);
            let bytes = count.load(Ordering::SeqCst);
            assert_eq!(bytes, if mapped { n } else { 0 }, "{map} {counted}");
            if !mapped {
                // The last chunk read, the 123-byte tail, is in the buffer.
                assert!(buf[..123] == data[5 * 4096..]);
            }
        }
        std::fs::remove_dir_all(&d).unwrap();
    }

    /// A blob file cut short after it was mapped: the copy writes the pages
    /// it still has and reports where the data ends, as a copy that reads.
    #[test]
    fn a_blob_shrunk_under_its_mapping_is_copied_as_far_as_it_goes() {
        use crate::copy::CopyError;
        let d = tempdir("shrink");
        let data = pattern(4 * 4096);
        for map in [true, false] {
            std::fs::write(d.join("b"), &data).unwrap();
            let blob = DirSource::new(d.clone(), map).open("b").unwrap().unwrap();
            assert_eq!(blob.mapped().is_some(), map);
            shrink(&d.join("b"), 4096 + 2000);
            let (r, mapped) = copy_four_pages(&*blob, &d);
            let (n, e) = r.unwrap_err();
            assert_eq!(n, 4096, "map {map}");
            // The file no longer holds the chunk: nothing from the mapping.
            assert_eq!(mapped, 0);
            assert!(
                matches!(e, CopyError::ShortSource { at: 6096 }),
                "map {map}: {e}"
            );
            assert_eq!(std::fs::read(d.join("c")).unwrap(), &data[..4096]);
        }
        std::fs::remove_dir_all(&d).unwrap();
    }

    /// A blob whose file shrinks after the copy last looked at its size.
    struct ShrinksUnseen(Arc<dyn Blob>);

    impl Blob for ShrinksUnseen {
        fn size(&self) -> u64 {
            self.0.size()
        }
        fn read_at(&self, buf: &mut [u8], off: u64) -> io::Result<usize> {
            self.0.read_at(buf, off)
        }
        fn describe(&self) -> String {
            self.0.describe()
        }
        fn mapped(&self) -> Option<&Mapped> {
            self.0.mapped()
        }
        fn size_now(&self) -> io::Result<u64> {
            Ok(self.size())
        }
    }

    /// The file shrinks to a page boundary while the mapping is written:
    /// the write fails with EFAULT at the first lost page, and the copy
    /// goes on by reading, which finds the end.
    #[test]
    fn a_mapped_write_past_the_new_end_falls_back_to_reading() {
        use crate::copy::CopyError;
        let d = tempdir("efault");
        let data = pattern(4 * 4096);
        std::fs::write(d.join("b"), &data).unwrap();
        let blob = DirSource::new(d.clone(), true).open("b").unwrap().unwrap();
        let blob = ShrinksUnseen(blob);
        assert!(blob.mapped().is_some());
        shrink(&d.join("b"), 2 * 4096);
        let (r, mapped) = copy_four_pages(&blob, &d);
        let (n, e) = r.unwrap_err();
        assert_eq!(n, 2 * 4096);
        assert_eq!(mapped, 2 * 4096);
        assert!(matches!(e, CopyError::ShortSource { at: 8192 }), "{e}");
        assert_eq!(std::fs::read(d.join("c")).unwrap(), &data[..2 * 4096]);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn local_filesystems_are_mapped_network_ones_are_not() {
        for fs in ["ext4", "xfs", "btrfs", "tmpfs", "overlay", "erofs"] {
            assert!(maps_well(fs), "{fs}");
        }
        for fs in [
            "9p",
            "nfs",
            "nfs4",
            "cifs",
            "smb3",
            "fuse",
            "fuse.sshfs",
            "virtiofs",
            "",
        ] {
            assert!(!maps_well(fs), "{fs}");
        }
    }
}
