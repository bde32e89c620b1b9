//! Whether the store may be written, and what happens when it may not.
//!
//! Two conditions stop writes:
//!
//! - **Low disk space** (`store.min_free_mb`): checked before sled is asked
//!   to write, so a full disk refuses new data cleanly (4200) instead of
//!   failing inside sled, and writes resume by themselves once space is
//!   back. sled 0.34 keeps its first I/O error for good (its "global
//!   error"), so the reserve is what lets a server ride out a full disk
//!   without a restart.
//! - **A failed write or flush**: once sled has been handed a batch, a
//!   failure leaves that batch in an unknown state: applied in memory,
//!   maybe partly in the log file, maybe recovered at the next start. The
//!   process can neither acknowledge it nor promise it is gone, and sled will
//!   not write again anyway. So the store is marked *failed* for good: every
//!   later write is refused, the server stops, and the next start (systemd's
//!   `Restart=on-failure`) recovers from what is really on disk. This is
//!   PostgreSQL's answer to a failed fsync, for the same reason: the state
//!   after the error cannot be trusted, the state after recovery can.
//!
//! [`Faults`] injects errors at each step of a commit and a fake free-space
//! figure, for tests of exactly these paths. Unarmed, it costs one relaxed
//! atomic load per step.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::StoreError;

/// How long a free-space figure is trusted. A writer filling the disk at
/// 100 MB/s uses 10 MB of the reserve in that time.
const SPACE_CHECK_EVERY: Duration = Duration::from_millis(100);

/// What the store can do now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    Ok,
    /// Free space under the reserve: writes are refused until it is back.
    LowSpace {
        free: u64,
        reserve: u64,
    },
    /// A write or flush failed: nothing more is written by this process.
    Failed {
        reason: String,
    },
}

impl Health {
    pub fn is_ok(&self) -> bool {
        matches!(self, Health::Ok)
    }
}

/// A step of a commit where [`Faults`] can inject an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Step {
    /// Looking up an idempotency token (before anything is written).
    TokenRead,
    /// Reading a stored message to patch it (before anything is written).
    MessageRead,
    /// Handing the batch to sled.
    Write,
    /// Making the batch durable.
    Flush,
    /// A checkpoint's sled flush (`wal`), off the commit path.
    Checkpoint,
}

/// Injected faults, for tests. Each armed step fails exactly once, on its
/// `n`th call from the moment it was armed.
#[derive(Default)]
pub struct Faults {
    armed: AtomicBool,
    plan: Mutex<Vec<(Step, u32)>>,
    /// Free bytes to report instead of the file system's figure.
    free_bytes: Mutex<Option<u64>>,
}

impl Faults {
    /// The `n`th call (1-based) of `step` from now fails.
    pub fn fail_nth(&self, step: Step, n: u32) {
        self.plan.lock().push((step, n.max(1)));
        self.armed.store(true, Ordering::Release);
    }

    /// Reports `bytes` free instead of asking the file system (`None`: ask it).
    pub fn set_free_bytes(&self, bytes: Option<u64>) {
        *self.free_bytes.lock() = bytes;
    }

    /// Err when an armed fault fires at this call of `step`.
    pub(super) fn check(&self, step: Step) -> Result<(), StoreError> {
        if !self.armed.load(Ordering::Acquire) {
            return Ok(());
        }
        let mut plan = self.plan.lock();
        let mut fire = false;
        plan.retain_mut(|(s, n)| {
            if *s != step {
                return true;
            }
            *n -= 1;
            if *n == 0 {
                fire = true;
                return false;
            }
            true
        });
        if plan.is_empty() {
            self.armed.store(false, Ordering::Release);
        }
        if fire {
            return Err(StoreError::Injected(step));
        }
        Ok(())
    }
}

/// The store's health: the free-space reserve and the sticky failure.
pub(super) struct Guard {
    dir: PathBuf,
    reserve: AtomicU64,
    low: AtomicBool,
    free: AtomicU64,
    checked: Mutex<Option<Instant>>,
    failed: Mutex<Option<String>>,
    /// Wakes whoever waits for a failure (the server, to stop).
    on_fail: tokio::sync::watch::Sender<bool>,
    pub(super) faults: Faults,
}

impl Guard {
    pub(super) fn new(dir: &Path, reserve: u64) -> Self {
        Guard {
            dir: dir.to_path_buf(),
            reserve: AtomicU64::new(reserve),
            low: AtomicBool::new(false),
            free: AtomicU64::new(u64::MAX),
            checked: Mutex::new(None),
            failed: Mutex::new(None),
            on_fail: tokio::sync::watch::Sender::new(false),
            faults: Faults::default(),
        }
    }

    /// Err when a write now would be refused.
    /// Only the sticky failure, not the reserve: for the writes that finish
    /// work already admitted (a batch the pipeline took, the memberships of
    /// a conversation just stored, receipts, outbox records, nonces). The
    /// reserve is there so that these still fit; refusing them halfway would
    /// leave half an operation on disk.
    pub(super) fn not_failed(&self) -> Result<(), StoreError> {
        match &*self.failed.lock() {
            Some(reason) => Err(StoreError::Failed(reason.clone())),
            None => Ok(()),
        }
    }

    /// Whether new work may start: not failed, and the reserve is free.
    pub(super) fn writable(&self) -> Result<(), StoreError> {
        self.not_failed()?;
        self.refresh_space();
        if self.low.load(Ordering::Relaxed) {
            return Err(StoreError::DiskLow {
                free: self.free.load(Ordering::Relaxed),
                reserve: self.reserve(),
            });
        }
        Ok(())
    }

    pub(super) fn health(&self) -> Health {
        if let Some(reason) = &*self.failed.lock() {
            return Health::Failed {
                reason: reason.clone(),
            };
        }
        self.refresh_space();
        if self.low.load(Ordering::Relaxed) {
            return Health::LowSpace {
                free: self.free.load(Ordering::Relaxed),
                reserve: self.reserve(),
            };
        }
        Health::Ok
    }

    fn reserve(&self) -> u64 {
        self.reserve.load(Ordering::Relaxed)
    }

    /// Takes effect at the next check (a config reload may change it).
    pub(super) fn set_reserve(&self, bytes: u64) {
        self.reserve.store(bytes, Ordering::Relaxed);
        *self.checked.lock() = None;
        if bytes == 0 {
            self.low.store(false, Ordering::Relaxed);
        }
    }

    /// Marks the store failed for good; the first reason is kept.
    pub(super) fn fail(&self, reason: String) {
        let mut failed = self.failed.lock();
        if failed.is_none() {
            tracing::error!(
                reason = %reason,
                "the store failed: no more writes; the server stops so that a restart \
                 recovers from what is on disk"
            );
            *failed = Some(reason);
            self.on_fail.send_replace(true);
        }
    }

    pub(super) fn is_failed(&self) -> bool {
        self.failed.lock().is_some()
    }

    pub(super) fn watch_failure(&self) -> tokio::sync::watch::Receiver<bool> {
        self.on_fail.subscribe()
    }

    fn refresh_space(&self) {
        let reserve = self.reserve();
        if reserve == 0 {
            return;
        }
        {
            let mut checked = self.checked.lock();
            if checked.is_some_and(|t| t.elapsed() < SPACE_CHECK_EVERY)
                && self.faults.free_bytes.lock().is_none()
            {
                return;
            }
            *checked = Some(Instant::now());
        }
        let injected = *self.faults.free_bytes.lock();
        let free = match injected.map_or_else(|| available_space(&self.dir), Ok) {
            Ok(free) => free,
            Err(e) => {
                // Not knowing is no reason to refuse writes: sled's own
                // error, if the disk is really full, still stops them.
                tracing::debug!(error = %e, "cannot read free disk space");
                return;
            }
        };
        self.free.store(free, Ordering::Relaxed);
        let low = free < reserve;
        let was = self.low.swap(low, Ordering::Relaxed);
        if low && !was {
            tracing::error!(
                free_bytes = free,
                reserve_bytes = reserve,
                dir = %self.dir.display(),
                "disk space below store.min_free_mb: writes are refused until space is freed"
            );
        } else if was && !low {
            tracing::warn!(free_bytes = free, "disk space is back: writes resume");
        }
    }
}

/// Bytes available to this (unprivileged) process on the file system of `dir`.
fn available_space(dir: &Path) -> std::io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `path` is NUL-terminated and `st` is written by the call
    // before it is read, which happens only when the call succeeded.
    let rc = unsafe { libc::statvfs(path.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: statvfs returned 0, so it filled `st`.
    let st = unsafe { st.assume_init() };
    #[allow(clippy::unnecessary_cast)] // the field types differ between targets
    Ok(st.f_bavail as u64 * st.f_frsize as u64)
}

/// Logs a store error at most once a second, with how many were left out:
/// a full disk must not turn every refused send into a log line.
pub fn log_error(e: &StoreError) {
    static LAST: Mutex<Option<Instant>> = Mutex::new(None);
    static SKIPPED: AtomicU64 = AtomicU64::new(0);
    let mut last = LAST.lock();
    if last.is_some_and(|t| t.elapsed() < Duration::from_secs(1)) {
        SKIPPED.fetch_add(1, Ordering::Relaxed);
        return;
    }
    *last = Some(Instant::now());
    let skipped = SKIPPED.swap(0, Ordering::Relaxed);
    tracing::error!(error = %e, like_it_since_last = skipped, "store failure");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fault_fires_once_on_its_nth_call() {
        let f = Faults::default();
        f.fail_nth(Step::Flush, 2);
        assert!(f.check(Step::Write).is_ok());
        assert!(f.check(Step::Flush).is_ok());
        assert!(matches!(
            f.check(Step::Flush),
            Err(StoreError::Injected(Step::Flush))
        ));
        assert!(f.check(Step::Flush).is_ok());
        assert!(!f.armed.load(Ordering::Relaxed));
    }

    #[test]
    fn low_space_refuses_writes_and_recovers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let g = Guard::new(dir.path(), 1000);
        assert!(g.writable().is_ok());
        g.faults.set_free_bytes(Some(999));
        assert!(matches!(
            g.writable(),
            Err(StoreError::DiskLow {
                free: 999,
                reserve: 1000
            })
        ));
        assert_eq!(
            g.health(),
            Health::LowSpace {
                free: 999,
                reserve: 1000
            }
        );
        g.faults.set_free_bytes(Some(1000));
        assert!(g.writable().is_ok());
        assert_eq!(g.health(), Health::Ok);
    }

    #[test]
    fn a_failure_is_sticky_and_wakes_watchers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let g = Guard::new(dir.path(), 0);
        let rx = g.watch_failure();
        assert!(!*rx.borrow());
        g.fail("first".into());
        g.fail("second".into());
        assert!(*rx.borrow());
        assert!(matches!(g.writable(), Err(StoreError::Failed(r)) if r == "first"));
        assert!(g.is_failed());
    }

    #[test]
    fn the_file_system_reports_free_space() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(available_space(dir.path()).expect("statvfs") > 0);
    }
}
