//! Blobs stored as regular files in a local directory.

use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::PathBuf;
use std::sync::Arc;

use super::{Blob, Source};

/// `dir:/path`: blob `NAME` is the file `/path/NAME`.
pub struct DirSource {
    root: PathBuf,
}

impl DirSource {
    pub fn new(root: PathBuf) -> DirSource {
        DirSource { root }
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
struct FileBlob {
    file: File,
    size: u64,
    path: PathBuf,
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
        let s = DirSource::new(d.clone());
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
        let s = Arc::new(DirSource::new(d.clone()));
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
        assert_eq!(DirSource::new(d.clone()).startup_problem(), None);
        let gone = d.join("nope");
        let p = DirSource::new(gone.clone()).startup_problem().unwrap();
        assert!(p.contains("No such file"), "{p}");
        std::fs::write(d.join("f"), b"x").unwrap();
        assert!(DirSource::new(d.join("f")).startup_problem().is_some());
        std::fs::remove_dir_all(&d).unwrap();
    }
}
