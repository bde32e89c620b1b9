//! Damaged store files: finding them, reporting them, salvaging what is
//! readable.
//!
//! Three layers, from the outside in:
//!
//! - **At open.** sled 0.34 panics on some damaged files while it recovers
//!   (it cannot build a snapshot from a log cut short or a torn page), and
//!   recovers a log cut in the wrong place by silently dropping its tail.
//!   [`Store::open`](super::Store::open) catches the panic
//!   ([`catch_sled_panic`]) and refuses a file that had data but yields no
//!   schema record; both become [`StoreError::Unreadable`], which the
//!   binary turns into an exit code systemd does not restart on.
//! - **While serving.** A record that does not decode, or a page sled finds
//!   corrupt, fails the one read; [`Damage`] remembers which conversation
//!   it belonged to, for `/healthz` and `tidings_store_damaged_conversations`.
//!   The rest of the store keeps serving.
//! - **Offline.** [`check`] reads every record of every tree and decodes
//!   it; [`repair`] writes every record that reads and decodes into a new,
//!   empty store. Both work on a copy of the store files, because opening a
//!   sled store runs its recovery, which rewrites the tail of the log: the
//!   damaged original is never opened, let alone changed, so a failed or
//!   wrong repair can always be retried, or the original sent for analysis.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::tables::Tree;
use super::{
    BroadcastRecord, ConversationRecord, LogEntry, OutboxRecord, Result, SCHEMA_VERSION,
    SentRecord, Store, StoreError, keys,
};
use crate::protocol::ConvId;
use crate::wire::codec;

/// A sled file at most this big may lack the schema record (a first start
/// that stopped before its first flush); a bigger one without it lost data.
/// One sled segment.
pub(super) const FRESH_DB_MAX_BYTES: u64 = 512 * 1024;

/// At most this many damaged keys are listed in a report (all are counted).
const LISTED_KEYS: usize = 1000;

/// Runs `f`, turning a panic into its message. The default panic hook still
/// prints sled's own message to stderr, which is worth having in the log.
pub(super) fn catch_sled_panic<T>(f: impl FnOnce() -> T) -> std::result::Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|p| {
        p.downcast_ref::<&str>()
            .map(|s| (*s).to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".into())
    })
}

/// Whether a sled error means the bytes on disk are bad rather than that
/// an operation failed for now.
pub(super) fn sled_damage(e: &sled::Error) -> bool {
    match e {
        sled::Error::Corruption { .. } | sled::Error::ReportableBug(_) => true,
        sled::Error::Io(io) => io.kind() == std::io::ErrorKind::UnexpectedEof,
        _ => false,
    }
}

/// Conversations whose records failed to read while serving, with the
/// first error seen for each.
#[derive(Default)]
pub(super) struct Damage {
    convs: parking_lot::Mutex<BTreeMap<ConvId, String>>,
}

impl Store {
    /// Conversations found damaged since start, with the first error for each.
    pub fn damaged_conversations(&self) -> Vec<(ConvId, String)> {
        let convs = self.damage.convs.lock();
        convs.iter().map(|(c, e)| (*c, e.clone())).collect()
    }

    pub fn damaged_conversation_count(&self) -> u64 {
        self.damage.convs.lock().len() as u64
    }

    /// Runs a read of `conv`'s records, noting damage if it fails with some.
    pub(super) fn read_conv<T>(&self, conv: ConvId, f: impl FnOnce() -> Result<T>) -> Result<T> {
        f().map_err(|e| self.noted(conv, e))
    }

    /// Notes `conv` as damaged when `e` says its bytes are bad; returns `e`.
    pub(super) fn noted(&self, conv: ConvId, e: StoreError) -> StoreError {
        if e.is_damage() {
            let mut convs = self.damage.convs.lock();
            if let std::collections::btree_map::Entry::Vacant(v) = convs.entry(conv) {
                tracing::error!(
                    conversation = %conv,
                    error = %e,
                    "damaged store records: this conversation cannot be read in full; \
                     see `tidings store check`"
                );
                v.insert(e.to_string());
            }
        }
        e
    }

    /// A tree that cannot be read at all, named with the file it lives in.
    pub(super) fn unreadable(&self, tree: &str, e: StoreError) -> StoreError {
        if !e.is_damage() {
            return e;
        }
        let dir = self.blobs.parent().unwrap_or(Path::new("."));
        StoreError::Unreadable {
            path: dir.join("db"),
            detail: format!("tree {tree}: {e}"),
        }
    }

    /// The seq in the newest message key of `conv`, without decoding its
    /// value: what start-up falls back on when that value is damaged, so
    /// the conversation's next seq is never one already used.
    pub fn last_message_seq(&self, conv: ConvId) -> Result<Option<u64>> {
        match self.trees[Tree::Log]
            .scan_prefix(keys::message_prefix(conv))
            .keys()
            .next_back()
        {
            None => Ok(None),
            Some(k) => {
                let k = k?;
                Ok(Some(keys::read_u64(&k[13..]).ok_or(
                    StoreError::Corrupt {
                        tree: Tree::Log.name(),
                    },
                )?))
            }
        }
    }
}

/// What [`check`] found.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The store checked (a copy of it was opened, never the store itself).
    pub store: PathBuf,
    /// Why sled could not open the store at all; nothing else was read then.
    pub unreadable: Option<String>,
    pub trees: Vec<TreeReport>,
    /// The first [`LISTED_KEYS`] damaged records.
    pub damaged_keys: Vec<DamagedKey>,
    /// Conversations with at least one damaged or unreadable record.
    pub damaged_conversations: Vec<String>,
}

impl Report {
    pub fn is_clean(&self) -> bool {
        self.unreadable.is_none()
            && self
                .trees
                .iter()
                .all(|t| t.damaged == 0 && t.unread.is_none())
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct TreeReport {
    pub name: String,
    /// Records that read and decoded.
    pub records: u64,
    /// Records that read but did not decode (or had a malformed key).
    pub damaged: u64,
    /// A stretch of the tree sled could not read: every record between
    /// these keys (hex; `None` is the tree's start or end) is lost.
    pub unread: Option<UnreadRange>,
}

#[derive(Debug, Clone, Serialize)]
pub struct UnreadRange {
    pub after: Option<String>,
    pub before: Option<String>,
    pub error: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct DamagedKey {
    pub tree: String,
    pub key: String,
    pub error: String,
}

/// What [`repair`] did.
#[derive(Debug, Clone, Serialize)]
pub struct RepairReport {
    /// The damage found, as [`check`] reports it.
    pub check: Report,
    /// The new store.
    pub into: PathBuf,
    /// Records copied into it.
    pub salvaged: u64,
}

/// Reads and decodes every record of the store in `dir`, through a copy
/// made in `scratch` (created, and removed afterwards). Refuses a store a
/// running server holds.
pub fn check(dir: &Path, scratch: &Path) -> Result<Report> {
    with_copy(dir, scratch, |db| Ok(scan_all(dir, db, None)))
}

/// Writes every record of the store in `dir` that reads and decodes into
/// a new store at `into` (which must not exist yet), through a copy made in
/// `scratch`. The damaged store is left exactly as it was.
pub fn repair(dir: &Path, into: &Path, scratch: &Path) -> Result<RepairReport> {
    if into.exists() {
        return Err(io_error(
            into,
            "already exists; repair writes a new store only",
        ));
    }
    with_copy(dir, scratch, |db| {
        let Some(db) = db else {
            return Ok(RepairReport {
                check: scan_all(dir, None, None),
                into: into.to_path_buf(),
                salvaged: 0,
            });
        };
        let target = sled::Config::new().path(into).open()?;
        let report = scan_all(dir, Some(db), Some(&target));
        let salvaged = report.trees.iter().map(|t| t.records).sum();
        // Without it the new store would look like one that lost its log
        // (`Store::open`); a lost record means the records are this build's.
        {
            let meta = Tree::Meta.open(&target)?;
            if meta.get(keys::SCHEMA)?.is_none() {
                meta.insert(keys::SCHEMA, &SCHEMA_VERSION.to_be_bytes())?;
            }
        }
        target.flush()?;
        drop(target);
        // Proves the new store opens the way the server opens it. sled
        // can hold its file lock a moment after the last handle is dropped
        // (spacejam/sled#1234): that one error is retried, bounded.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            match Store::open(into, 8 << 20, true) {
                Ok(_) => break,
                Err(StoreError::Sled(sled::Error::Io(e)))
                    if lock_busy(&e) && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(e) => return Err(e),
            }
        }
        Ok(RepairReport {
            check: report,
            into: into.to_path_buf(),
            salvaged,
        })
    })
    .inspect_err(|_| {
        // Half a new store is worse than none: the next run starts afresh.
        let _ = std::fs::remove_dir_all(into);
    })
}

/// sled's "the file lock is taken": it wraps the `WouldBlock` of its
/// `flock` in an `Other` error with this text (sled 0.34, `config.rs`), so
/// the kind alone never matches.
fn lock_busy(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::WouldBlock
        || e.to_string().starts_with("could not acquire lock")
}

fn io_error(path: &Path, what: &str) -> StoreError {
    StoreError::Io {
        path: path.to_path_buf(),
        source: std::io::Error::other(what.to_string()),
    }
}

/// Copies the store into `scratch`, opens the copy (or reports why sled
/// cannot) and runs `f` on it; the copy is removed afterwards.
fn with_copy<T>(
    dir: &Path,
    scratch: &Path,
    f: impl FnOnce(Option<&sled::Db>) -> Result<T>,
) -> Result<T> {
    let db_file = dir.join("db");
    if !db_file.is_file() {
        return Err(io_error(&db_file, "no sled store here"));
    }
    refuse_if_in_use(&db_file)?;
    if scratch.exists() {
        return Err(io_error(
            scratch,
            "already exists; pick another scratch dir",
        ));
    }
    let result = copy_dir(dir, scratch)
        .map_err(|source| StoreError::Io {
            path: scratch.to_path_buf(),
            source,
        })
        .and_then(
            |()| match catch_sled_panic(|| sled::Config::new().path(scratch).open()) {
                Ok(Ok(db)) => {
                    // The log's last moments may be only in the
                    // write-ahead log, as for the server's own open.
                    let log = Tree::Log.open(&db)?;
                    super::wal::replay(&scratch.join(super::wal::DIR), |ops| {
                        super::apply_ops(&log, ops)
                    })?;
                    f(Some(&db))
                }
                Ok(Err(e)) if sled_damage(&e) => f(None),
                Ok(Err(e)) => Err(e.into()),
                Err(_) => f(None),
            },
        );
    let _ = std::fs::remove_dir_all(scratch);
    result
}

/// sled holds an exclusive `flock` on its file while open; a copy taken
/// under a running server would be torn, so say so instead.
fn refuse_if_in_use(db_file: &Path) -> Result<()> {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(db_file).map_err(|source| StoreError::Io {
        path: db_file.to_path_buf(),
        source,
    })?;
    // SAFETY: flock on a descriptor we own; the lock goes with `f`.
    let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        return Err(io_error(
            db_file,
            "is locked: a server (or another check) has this store open; stop it first",
        ));
    }
    Ok(())
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let dest = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &dest)?;
        } else {
            std::fs::copy(entry.path(), dest)?;
        }
    }
    Ok(())
}

/// Scans every tree of `db` (when sled could open it), copying each good
/// record into `into` when given.
fn scan_all(dir: &Path, db: Option<&sled::Db>, into: Option<&sled::Db>) -> Report {
    let mut report = Report {
        store: dir.to_path_buf(),
        unreadable: None,
        trees: Vec::new(),
        damaged_keys: Vec::new(),
        damaged_conversations: Vec::new(),
    };
    let Some(db) = db else {
        report.unreadable = Some("sled cannot open it: it panics or reports corruption while recovering the log, so no record can be read through it; restore from a backup".into());
        return report;
    };
    let mut names: Vec<String> = db
        .tree_names()
        .iter()
        .map(|n| String::from_utf8_lossy(n).into_owned())
        .collect();
    names.sort();
    let mut convs: BTreeSet<ConvId> = BTreeSet::new();
    let mut known_convs: BTreeSet<ConvId> = BTreeSet::new();
    let mut log_gap: Option<(Key, Key)> = None;
    for name in &names {
        let scanned = catch_sled_panic(|| -> std::result::Result<_, sled::Error> {
            let tree = db.open_tree(name)?;
            let out = into.map(|t| t.open_tree(name)).transpose()?;
            let mut tr = TreeReport {
                name: name.clone(),
                records: 0,
                damaged: 0,
                unread: None,
            };
            let mut bad = Vec::new();
            let mut good_convs = Vec::new();
            let gap = scan_tree(&tree, |k, v| match validate(name, k, v) {
                Ok(conv) => {
                    tr.records += 1;
                    good_convs.extend(conv);
                    if let Some(out) = &out {
                        out.insert(k, v)?;
                    }
                    Ok(())
                }
                Err((conv, error)) => {
                    tr.damaged += 1;
                    bad.push((conv, hex::encode(k), error));
                    Ok(())
                }
            })?;
            Ok((tr, bad, good_convs, gap))
        });
        match scanned {
            Ok(Ok((mut tr, bad, good_convs, gap))) => {
                if Tree::named(name.as_bytes()) == Some(Tree::Conversations) {
                    known_convs.extend(good_convs);
                }
                for (conv, key, error) in bad {
                    convs.extend(conv);
                    if report.damaged_keys.len() < LISTED_KEYS {
                        report.damaged_keys.push(DamagedKey {
                            tree: name.clone(),
                            key,
                            error,
                        });
                    }
                }
                if let Some((after, before, error)) = gap {
                    if Tree::named(name.as_bytes()) == Some(Tree::Log) {
                        log_gap = Some((after.clone(), before.clone()));
                    }
                    tr.unread = Some(UnreadRange {
                        after: after.as_deref().map(hex::encode),
                        before: before.as_deref().map(hex::encode),
                        error,
                    });
                }
                report.trees.push(tr);
            }
            Ok(Err(e)) => report.trees.push(whole_tree_unread(name, e.to_string())),
            Err(panic) => {
                report
                    .trees
                    .push(whole_tree_unread(name, format!("sled panicked: {panic}")));
            }
        }
        if Tree::named(name.as_bytes()) == Some(Tree::Log)
            && report
                .trees
                .last()
                .is_some_and(|t| t.records == 0 && t.unread.is_some())
        {
            log_gap = Some((None, None));
        }
    }
    // Conversations whose messages fall in a stretch of the log sled could
    // not read.
    if let Some((after, before)) = log_gap {
        for c in &known_convs {
            let first = keys::message(*c, 0);
            let last = keys::message(*c, u64::MAX);
            let after_ok = after
                .as_ref()
                .is_none_or(|a| last.as_slice() > a.as_slice());
            let before_ok = before
                .as_ref()
                .is_none_or(|b| first.as_slice() < b.as_slice());
            if after_ok && before_ok {
                convs.insert(*c);
            }
        }
    }
    report.damaged_conversations = convs.iter().map(ConvId::to_string).collect();
    report
}

/// A key bounding a stretch not read; `None` is the tree's start or end.
type Key = Option<Vec<u8>>;

fn whole_tree_unread(name: &str, error: String) -> TreeReport {
    TreeReport {
        name: name.to_string(),
        records: 0,
        damaged: 0,
        unread: Some(UnreadRange {
            after: None,
            before: None,
            error,
        }),
    }
}

/// Reads every record of `tree` in key order, calling `each`. When sled
/// fails on a page, reading resumes from the tree's end backwards, so both
/// sides of one damaged stretch are read; returns the stretch not read.
fn scan_tree(
    tree: &sled::Tree,
    mut each: impl FnMut(&[u8], &[u8]) -> sled::Result<()>,
) -> sled::Result<Option<(Key, Key, String)>> {
    let mut last: Option<Vec<u8>> = None;
    let mut failed = None;
    for kv in tree.iter() {
        match kv {
            Ok((k, v)) => {
                each(&k, &v)?;
                last = Some(k.to_vec());
            }
            Err(e) => {
                failed = Some(e.to_string());
                break;
            }
        }
    }
    let Some(error) = failed else {
        return Ok(None);
    };
    let mut first_after: Option<Vec<u8>> = None;
    for kv in tree.iter().rev() {
        match kv {
            Ok((k, v)) => {
                if last.as_deref().is_some_and(|l| k.as_ref() <= l) {
                    break;
                }
                each(&k, &v)?;
                first_after = Some(k.to_vec());
            }
            Err(_) => break,
        }
    }
    Ok(Some((last, first_after, error)))
}

/// Checks one record against its tree's layout (see the table in
/// `store/mod.rs`); Ok names the conversation it belongs to, if any, and
/// Err says what is wrong (with the conversation, when the key says).
fn validate(
    tree: &str,
    k: &[u8],
    v: &[u8],
) -> std::result::Result<Option<ConvId>, (Option<ConvId>, String)> {
    let conv_at = |at: usize| k.get(at..at + 12).and_then(keys::read_conv);
    let fixed = |want: usize| -> std::result::Result<(), String> {
        if v.len() == want {
            Ok(())
        } else {
            Err(format!("value of {} bytes, want {want}", v.len()))
        }
    };
    let decode_err = |e: codec::CodecError| e.to_string();
    let r: std::result::Result<Option<ConvId>, String> = match Tree::named(tree.as_bytes()) {
        Some(Tree::Conversations) => match keys::read_conv(k) {
            None => Err("key is not a conversation id".into()),
            Some(c) => codec::decode::<ConversationRecord>(v)
                .map_err(decode_err)
                .and_then(|r| {
                    if r.id == c {
                        Ok(Some(c))
                    } else {
                        Err(format!("record of {} under key {c}", r.id))
                    }
                }),
        },
        Some(Tree::Log) => match k.first() {
            Some(b'm') if k.len() == 21 => {
                let (c, seq) = (conv_at(1), keys::read_u64(&k[13..]));
                return match codec::decode::<LogEntry>(v) {
                    Ok(e) if Some(e.msg.conv) == c && Some(e.msg.seq) == seq => Ok(c),
                    Ok(e) => Err((
                        c,
                        format!("message {}/{} under another key", e.msg.conv, e.msg.seq),
                    )),
                    Err(e) => Err((c, e.to_string())),
                };
            }
            Some(b'k') => codec::decode::<SentRecord>(v)
                .map(|s| Some(s.conv))
                .map_err(decode_err),
            Some(b'u') if k.len() == 29 => fixed(0).map(|()| conv_at(9)),
            Some(b'y') if k.len() == 21 => fixed(0).map(|()| conv_at(1)),
            _ => Err("malformed key".into()),
        },
        Some(Tree::Memberships) => {
            let ok = k.first().is_some_and(|&n| n as usize + 1 + 12 == k.len());
            if ok {
                fixed(0).map(|()| conv_at(k.len() - 12))
            } else {
                Err("malformed key".into())
            }
        }
        Some(Tree::Unique) if k.len() == 32 => fixed(12).map(|()| keys::read_conv(v)),
        Some(Tree::Unique) => Err("malformed key".into()),
        Some(Tree::Cursors) => match k.first() {
            Some(b'd' | b'r' | b'p') => fixed(8).map(|()| None),
            _ => Err("malformed key".into()),
        },
        Some(Tree::Receipts) => match k.first() {
            Some(b's') if k.len() > 13 => fixed(16).map(|()| conv_at(1)),
            Some(b'q') => fixed(0).map(|()| None),
            _ => Err("malformed key".into()),
        },
        Some(Tree::Outbox) if k.len() == 8 => codec::decode::<OutboxRecord>(v)
            .map(|_| None)
            .map_err(decode_err),
        Some(Tree::Outbox) => Err("malformed key".into()),
        Some(Tree::Meta) if k == keys::SCHEMA => match keys::read_u32(v) {
            Some(n) if n == SCHEMA_VERSION || n == 1 => Ok(None),
            Some(n) => Err(format!("schema {n}")),
            None => Err(format!("value of {} bytes, want 4", v.len())),
        },
        Some(Tree::Broadcasts) if k.first() == Some(&b'b') => codec::decode::<BroadcastRecord>(v)
            .map(|b| Some(b.conv))
            .map_err(decode_err),
        Some(Tree::Installations) if k.first() == Some(&keys::INST_RECORD) => {
            codec::decode::<super::installations::Installation>(v)
                .map(|_| None)
                .map_err(decode_err)
        }
        // sled's default tree, `sys`, the rest of `broadcasts` and the
        // installations' indexes (object ids as text): read,
        // not decoded further (fixed-size keys and values the server
        // checks as it reads them).
        _ => Ok(None),
    };
    r.map_err(|e| {
        let conv = match Tree::named(tree.as_bytes()) {
            Some(Tree::Conversations) => keys::read_conv(k),
            Some(Tree::Log) if k.len() == 21 => conv_at(1),
            _ => None,
        };
        (conv, e)
    })
}

#[cfg(test)]
mod lock_tests {
    #[test]
    fn a_second_open_of_a_sled_dir_is_recognised_as_a_busy_lock() {
        let dir = tempfile::tempdir().unwrap();
        let _held = sled::Config::new().path(dir.path()).open().unwrap();
        match sled::Config::new().path(dir.path()).open() {
            Err(sled::Error::Io(e)) => assert!(super::lock_busy(&e), "{e}"),
            other => panic!("expected sled's lock error, got {other:?}"),
        }
        let not_lock = std::io::Error::other("disk on fire");
        assert!(!super::lock_busy(&not_lock));
    }
}
