//! A small tmpfs, for tests that fill a real disk.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A tmpfs of `mb` MiB mounted on a fresh directory, unmounted on drop.
/// Needs root (CI runs as root); anyone else gets a clear failure.
pub struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    pub fn mount(mb: u32) -> Tmpfs {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mb}m"), "tmpfs"])
            .arg(dir.path())
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "this test mounts a small tmpfs to fill a real disk and needs root: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a filler file until at most `leave` bytes are free.
    pub fn fill(&self, leave: u64) -> PathBuf {
        use std::io::Write;
        let path = self.path().join("filler");
        let mut f = std::fs::File::create(&path).expect("filler");
        let chunk = vec![0xA5u8; 64 * 1024];
        // Bounded: the tmpfs is small, and each round writes 64 KiB.
        for _ in 0..100_000 {
            if free_bytes(self.path()) <= leave {
                break;
            }
            match f.write_all(&chunk) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
                Err(e) => panic!("filler: {e}"),
            }
        }
        f.sync_all().ok();
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Bytes free for an unprivileged writer on `p`'s filesystem (statvfs, as
/// the store's own reserve check reads it).
pub fn free_bytes(p: &Path) -> u64 {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(p.as_os_str().as_bytes()).expect("a path without NUL");
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c` is a valid C string and `st` is written by statvfs on success.
    let rc = unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) };
    assert_eq!(rc, 0, "statvfs {}", p.display());
    // SAFETY: statvfs returned 0, so it filled `st`.
    let st = unsafe { st.assume_init() };
    st.f_bavail.saturating_mul(st.f_frsize)
}
