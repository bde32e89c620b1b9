//! The write-ahead log in front of sled's `log` tree: what makes a group
//! commit durable and atomic with one `write` and one `fdatasync`. sled
//! alone needs a batch (which writes out its log buffer with `pwrite` and
//! `sync_file_range` on its I/O threads, for every batch) and a flush per
//! group; together they cost more CPU than the rest of a message's path
//! (docs/PERFORMANCE.md).
//!
//! Every write to the `log` tree is framed into this log, written and
//! fdatasync'd ([`Wal::commit`]), and only then applied to sled, key by
//! key, under one lock: the log holds the tree's writes in sled's order,
//! and sled never holds a write the log does not. A sender is answered
//! after that. A checkpoint ([`Wal::checkpoint`], about once a second)
//! starts a new segment, flushes sled, and deletes the segments the flush
//! made redundant. At open, the segments left are applied to sled again,
//! in order: a put or remove applied twice leaves the tree as applying it
//! once did, every key written since the last checkpoint ends with the
//! value of its last logged write, and a batch that sled kept only in part
//! (a crash in the middle of applying it) is made whole.
//!
//! # Files and frames
//!
//! `wal/<segment number, 20 digits>.wal`, written from its start, never
//! rewritten. A frame is `len: u32 LE | crc32(payload): u32 LE | payload`,
//! and the payload is one sled batch: ops `1 klen:u32 key vlen:u32 value`
//! (insert) and `2 klen:u32 key` (remove); no batch is empty. A frame cut
//! short or failing its CRC at the end of the newest segment is a write
//! that never completed (never answered) and is dropped; anywhere else it
//! is damage, and the store refuses to open (exit 3, as for sled's own
//! damage).
//!
//! A segment is made zero-filled and fdatasync'd before it takes writes
//! ([`Wal::checkpoint`], off the commit path), about twice as long as the
//! last one needed. A commit then overwrites blocks the file already has,
//! so its fdatasync writes the data and flushes the disk, and no longer
//! writes the inode for a file that grew: 42% less CPU and 31% less time
//! per `write` + `fdatasync` on this kind of disk (docs/PERFORMANCE.md). A
//! zero header (`len` 0) is the end of the segment's frames; a segment that
//! outgrows its zeros grows as before.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::{Result, StoreError};

/// The log's directory inside the data dir.
pub const DIR: &str = "wal";

/// How often the server checks whether a checkpoint is due.
pub const CHECKPOINT_TICK: Duration = Duration::from_millis(250);

/// A checkpoint is due this long after the last one, if anything was
/// logged since: what bounds replay at start to about a second of writes.
const CHECKPOINT_AGE: Duration = Duration::from_secs(1);

/// ... or once this much was logged since the last one.
const CHECKPOINT_BYTES: u64 = 4 << 20;

/// Beyond this, `Store::sync_log` checkpoints itself: the bound on
/// the log when nobody drives checkpoints (a store used without a server).
pub(super) const INLINE_CHECKPOINT_BYTES: u64 = 64 << 20;

/// No batch comes near this; a larger length is damage, not a frame.
const MAX_FRAME: usize = 1 << 30;

/// The zeros a new segment starts with: twice what the last segment took,
/// within these bounds. The floor keeps a nearly idle server from writing
/// much more zeros than frames; the ceiling is four checkpoints' worth.
const MIN_SEGMENT: u64 = 64 << 10;
const MAX_SEGMENT: u64 = 16 << 20;

const PUT: u8 = 1;
const DEL: u8 = 2;
const HEADER: usize = 8;

/// One sled batch of the `log` tree, built in its frame: the header's
/// room comes first, so the frame is written as it was built.
pub struct Record {
    buf: Vec<u8>,
    ops: u64,
}

impl Default for Record {
    fn default() -> Self {
        Record {
            buf: vec![0; HEADER],
            ops: 0,
        }
    }
}

impl Record {
    pub fn put(&mut self, key: &[u8], value: &[u8]) {
        self.buf.push(PUT);
        push_bytes(&mut self.buf, key);
        push_bytes(&mut self.buf, value);
        self.ops += 1;
    }

    pub fn del(&mut self, key: &[u8]) {
        self.buf.push(DEL);
        push_bytes(&mut self.buf, key);
        self.ops += 1;
    }

    /// How many puts and removes it holds.
    pub fn len(&self) -> u64 {
        self.ops
    }

    pub fn is_empty(&self) -> bool {
        self.ops == 0
    }

    /// Its writes, for applying them to sled.
    pub fn ops(&self) -> Vec<Op<'_>> {
        // Built by `put` and `del` alone, so it always parses.
        ops(&self.buf[HEADER..]).unwrap_or_default()
    }

    /// Fills in the header (length and CRC of the payload): the frame.
    fn seal(&mut self) -> &[u8] {
        let (head, payload) = self.buf.split_at_mut(HEADER);
        head[..4].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        head[4..].copy_from_slice(&crc32fast::hash(payload).to_le_bytes());
        &self.buf
    }
}

fn push_bytes(buf: &mut Vec<u8>, b: &[u8]) {
    // Keys and values are far below 4 GiB (frames are capped at MAX_FRAME).
    buf.extend_from_slice(&(b.len() as u32).to_le_bytes());
    buf.extend_from_slice(b);
}

/// A logged write, as replay hands it back.
#[derive(Debug, PartialEq, Eq)]
pub enum Op<'a> {
    Put(&'a [u8], &'a [u8]),
    Del(&'a [u8]),
}

/// The ops of one payload; `None` when it does not parse (damage).
pub fn ops(mut p: &[u8]) -> Option<Vec<Op<'_>>> {
    fn take<'a>(p: &mut &'a [u8]) -> Option<&'a [u8]> {
        let len = u32::from_le_bytes(p.get(..4)?.try_into().ok()?) as usize;
        let b = p.get(4..4 + len)?;
        *p = &p[4 + len..];
        Some(b)
    }
    let mut out = Vec::new();
    while let Some((&tag, rest)) = p.split_first() {
        p = rest;
        out.push(match tag {
            PUT => {
                let k = take(&mut p)?;
                Op::Put(k, take(&mut p)?)
            }
            DEL => Op::Del(take(&mut p)?),
            _ => return None,
        });
    }
    Some(out)
}

/// How a segment's bytes parse: the payloads of its whole frames, and
/// where the first bad frame starts, if any.
pub fn frames(bytes: &[u8]) -> (Vec<&[u8]>, Option<usize>) {
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let Some(h) = bytes.get(at..at + HEADER) else {
            return (out, (!is_zeros(&bytes[at..])).then_some(at));
        };
        if is_zeros(h) {
            // The zeros a segment was made with end its frames; anything
            // after them that is not zeros is damage (or, in the newest
            // segment, a write whose first block never reached the disk).
            return (out, (!is_zeros(&bytes[at..])).then_some(at));
        }
        let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize;
        let crc = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
        let payload = match bytes.get(at + HEADER..at + HEADER + len) {
            Some(p) if len <= MAX_FRAME && crc32fast::hash(p) == crc => p,
            _ => return (out, Some(at)),
        };
        out.push(payload);
        at += HEADER + len;
    }
    (out, None)
}

fn is_zeros(b: &[u8]) -> bool {
    b.iter().all(|&x| x == 0)
}

/// Whether a segment holds a frame: its first header is there and not
/// zeros (a segment is made empty or zero-filled).
fn holds_frames(path: &Path) -> bool {
    let mut head = [0u8; HEADER];
    File::open(path)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head))
        .is_ok_and(|()| !is_zeros(&head))
}

/// Creates segment `n`, `size` bytes of zeros (fdatasync'd with `fsync`),
/// ready to be written from its start.
fn make_segment(dir: &Path, n: u64, size: u64, fsync: bool) -> Result<File> {
    let path = segment_path(dir, n);
    let io = |e| io_err(&path)(e);
    let mut file = File::create(&path).map_err(io)?;
    let zeros = vec![0u8; 64 << 10];
    let mut left = size;
    while left > 0 {
        let n = left.min(zeros.len() as u64) as usize;
        file.write_all(&zeros[..n]).map_err(io)?;
        left -= n as u64;
    }
    if fsync {
        file.sync_data().map_err(io)?;
    }
    std::io::Seek::rewind(&mut file).map_err(io)?;
    Ok(file)
}

/// The zeros for the segment after one that took `logged` bytes.
fn next_segment_size(logged: u64) -> u64 {
    logged
        .saturating_mul(2)
        .checked_next_power_of_two()
        .unwrap_or(MAX_SEGMENT)
        .clamp(MIN_SEGMENT, MAX_SEGMENT)
}

fn segment_path(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("{n:020}.wal"))
}

/// The segment numbers in `dir`, oldest first.
fn segments(dir: &Path) -> std::io::Result<Vec<u64>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        if let Some(n) = name
            .to_str()
            .and_then(|n| n.strip_suffix(".wal"))
            .and_then(|n| n.parse::<u64>().ok())
        {
            out.push(n);
        }
    }
    out.sort_unstable();
    Ok(out)
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What [`replay`] found.
pub struct Replayed {
    pub segments: Vec<u64>,
    pub records: u64,
}

/// Hands every whole frame of the segments in `dir` to `apply`, oldest
/// first. A bad frame ends the newest segment (a write cut short); in an
/// older one it is damage.
pub fn replay(dir: &Path, mut apply: impl FnMut(Vec<Op<'_>>) -> Result<()>) -> Result<Replayed> {
    let segs = match segments(dir) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(io_err(dir)(e)),
    };
    let mut records = 0;
    for (i, &n) in segs.iter().enumerate() {
        let path = segment_path(dir, n);
        let bytes = std::fs::read(&path).map_err(io_err(&path))?;
        let (payloads, bad) = frames(&bytes);
        // A start that failed after opening its new segment leaves it
        // empty behind the one that was cut short.
        let newest = segs[i + 1..]
            .iter()
            .all(|&m| !holds_frames(&segment_path(dir, m)));
        if let Some(at) = bad {
            if !newest {
                return Err(StoreError::Unreadable {
                    path,
                    detail: format!(
                        "a damaged write-ahead log frame at byte {at} of a segment that is \
                         not the newest"
                    ),
                });
            }
            tracing::warn!(segment = %path.display(), at, dropped = bytes.len() - at,
                "the write-ahead log ends in a write cut short (never answered): dropped");
        }
        for p in payloads {
            let ops = ops(p).ok_or_else(|| StoreError::Unreadable {
                path: path.clone(),
                detail: "a write-ahead log frame whose checksum holds does not parse".into(),
            })?;
            apply(ops)?;
            records += 1;
        }
    }
    Ok(Replayed {
        segments: segs,
        records,
    })
}

struct Io {
    file: File,
    segment: u64,
}

pub(super) struct Wal {
    dir: PathBuf,
    fsync: bool,
    /// Held through a commit's write, fdatasync and apply.
    io: Mutex<Io>,
    /// Bytes logged since the last checkpoint, and when that was: read
    /// by the checkpointer's tick without waiting on a commit's fdatasync.
    since_checkpoint: AtomicU64,
    last_checkpoint: Mutex<Instant>,
    /// Held through a checkpoint: one at a time.
    checkpointing: Mutex<()>,
}

impl Wal {
    /// Starts a new segment after the ones `replayed` found, which stay
    /// until the caller has flushed their records into sled and
    /// [`Wal::retire`]s them.
    pub(super) fn start(dir: PathBuf, fsync: bool, replayed: &Replayed) -> Result<Wal> {
        std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let next = replayed.segments.last().map_or(1, |n| n + 1);
        let file = make_segment(&dir, next, MIN_SEGMENT, fsync)?;
        if fsync {
            sync_dir(&dir).map_err(io_err(&dir))?;
        }
        Ok(Wal {
            dir,
            fsync,
            io: Mutex::new(Io {
                file,
                segment: next,
            }),
            since_checkpoint: AtomicU64::new(0),
            last_checkpoint: Mutex::new(Instant::now()),
            checkpointing: Mutex::new(()),
        })
    }

    /// Deletes segments whose records sled has flushed.
    pub(super) fn retire(&self, segs: &[u64]) -> Result<()> {
        for &n in segs {
            let path = segment_path(&self.dir, n);
            std::fs::remove_file(&path).map_err(io_err(&path))?;
        }
        if self.fsync && !segs.is_empty() {
            sync_dir(&self.dir).map_err(io_err(&self.dir))?;
        }
        Ok(())
    }

    /// Logs `rec` (one `write`, then `fdatasync` with `store.fsync`), then
    /// applies its batch to sled with `apply`, under one lock: the log's
    /// order is sled's, and sled never holds a write the log does not, so a
    /// batch sled kept only in part is made whole at the next start. An
    /// error from the log means `apply` did not run, but the frame may be
    /// on disk: the caller must fail the store (the outcome is unknown).
    pub(super) fn commit<T>(
        &self,
        rec: &mut Record,
        apply: impl FnOnce(&Record) -> Result<T>,
    ) -> Result<T> {
        if rec.is_empty() {
            // Nothing to log; an empty frame would read as the zeros' end.
            return apply(rec);
        }
        let mut io = self.io.lock();
        let io = &mut *io;
        let frame = rec.seal();
        let path = || segment_path(&self.dir, io.segment);
        io.file.write_all(frame).map_err(|e| io_err(&path())(e))?;
        if self.fsync {
            io.file.sync_data().map_err(|e| io_err(&path())(e))?;
        }
        self.since_checkpoint
            .fetch_add(frame.len() as u64, Ordering::Relaxed);
        apply(rec)
    }

    /// Whether a checkpoint is due: something was logged since the last,
    /// and it is a second old or 4 MiB large.
    pub(super) fn checkpoint_due(&self) -> bool {
        let logged = self.logged_since_checkpoint();
        logged > 0
            && (logged >= CHECKPOINT_BYTES
                || self.last_checkpoint.lock().elapsed() >= CHECKPOINT_AGE)
    }

    pub(super) fn logged_since_checkpoint(&self) -> u64 {
        self.since_checkpoint.load(Ordering::Relaxed)
    }

    /// Moves to a new segment, runs `flush` (sled's flush, which makes
    /// every write applied so far durable) and deletes the older segments.
    /// `wait` false gives up at once when another checkpoint is running.
    /// When `flush` fails the older segments stay, for the next start.
    pub(super) fn checkpoint(&self, wait: bool, flush: impl FnOnce() -> Result<()>) -> Result<()> {
        let _one = match wait {
            true => self.checkpointing.lock(),
            false => match self.checkpointing.try_lock() {
                Some(g) => g,
                None => return Ok(()),
            },
        };
        // Only a checkpoint moves the segment, so the next one is made
        // (its zeros written, its directory entry synced) before commits
        // are held up.
        let next = self.io.lock().segment + 1;
        let size = next_segment_size(self.logged_since_checkpoint());
        let file = make_segment(&self.dir, next, size, self.fsync)?;
        if self.fsync {
            sync_dir(&self.dir).map_err(io_err(&self.dir))?;
        }
        let old = {
            // Every frame in the old segments was applied to sled before
            // this lock was free, so the flush below covers them all.
            let mut io = self.io.lock();
            io.file = file;
            self.since_checkpoint.store(0, Ordering::Relaxed);
            *self.last_checkpoint.lock() = Instant::now();
            std::mem::replace(&mut io.segment, next)
        };
        flush()?;
        let mut segs = segments(&self.dir).map_err(io_err(&self.dir))?;
        segs.retain(|&n| n <= old);
        self.retire(&segs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A log started in a new temp dir (kept alive by the first value).
    fn fresh_wal() -> (tempfile::TempDir, PathBuf, Wal) {
        let dir = tempfile::tempdir().unwrap();
        let wal_dir = dir.path().join(DIR);
        let none = Replayed {
            segments: vec![],
            records: 0,
        };
        let wal = Wal::start(wal_dir.clone(), true, &none).unwrap();
        (dir, wal_dir, wal)
    }

    fn rec(ops: &[Op<'_>]) -> Record {
        let mut r = Record::default();
        for op in ops {
            match op {
                Op::Put(k, v) => r.put(k, v),
                Op::Del(k) => r.del(k),
            }
        }
        r
    }

    #[test]
    fn frames_round_trip_and_stop_at_a_cut() {
        let mut a = rec(&[Op::Put(b"k1", b"v1"), Op::Del(b"k2")]);
        let mut b = rec(&[Op::Put(b"k3", &[7; 300])]);
        let mut buf = a.seal().to_vec();
        buf.extend_from_slice(b.seal());
        // Byte-exact: length, CRC, then `1 klen key vlen value`, `2 klen key`.
        let payload = b"\x01\x02\0\0\0k1\x02\0\0\0v1\x02\x02\0\0\0k2";
        assert_eq!(&buf[..4], &(payload.len() as u32).to_le_bytes());
        assert_eq!(&buf[4..8], &crc32fast::hash(payload).to_le_bytes());
        assert_eq!(&buf[8..8 + payload.len()], payload);
        let first = 8 + payload.len();
        let (ps, bad) = frames(&buf);
        assert_eq!(bad, None);
        assert_eq!(
            ops(ps[0]).unwrap(),
            vec![Op::Put(b"k1", b"v1"), Op::Del(b"k2")]
        );
        assert_eq!(ops(ps[1]).unwrap(), vec![Op::Put(b"k3", &[7; 300])]);
        for cut in [buf.len() - 1, first + 12, first + 3] {
            let (ps, bad) = frames(&buf[..cut]);
            assert_eq!(ps.len(), 1, "cut at {cut}");
            assert_eq!(bad, Some(first));
        }
        let mut flipped = buf.clone();
        flipped[first + 8 + 5] ^= 1;
        assert_eq!(frames(&flipped), (vec![ps[0]], Some(first)));
    }

    #[test]
    fn replay_applies_in_order_and_checkpoint_retires_segments() {
        let (_dir, wal_dir, wal) = fresh_wal();
        wal.commit(&mut rec(&[Op::Put(b"a", b"1")]), |_| Ok(()))
            .unwrap();
        wal.checkpoint(true, || Ok(())).unwrap();
        wal.commit(&mut rec(&[Op::Put(b"a", b"2")]), |_| Ok(()))
            .unwrap();
        // Logged first: a failed apply leaves the frame for the replay.
        let failed: Result<()> = wal
            .commit(&mut rec(&[Op::Del(b"a"), Op::Put(b"b", b"3")]), |_| {
                Err(StoreError::Injected(super::super::health::Step::Write))
            });
        assert!(failed.is_err());
        assert_eq!(segments(&wal_dir).unwrap(), vec![2]);
        drop(wal);

        let mut seen = Vec::new();
        let r = replay(&wal_dir, |ops| {
            seen.push(format!("{ops:?}"));
            Ok(())
        })
        .unwrap();
        assert_eq!(r.segments, vec![2]);
        assert_eq!(r.records, 2);
        assert_eq!(
            seen,
            vec![
                r#"[Put([97], [50])]"#.to_string(),
                r#"[Del([97]), Put([98], [51])]"#.to_string()
            ]
        );
        // A failed flush keeps the segments for the next start.
        let wal = Wal::start(wal_dir.clone(), true, &r).unwrap();
        assert_eq!(segments(&wal_dir).unwrap(), vec![2, 3]);
        wal.retire(&r.segments).unwrap();
        wal.commit(&mut rec(&[Op::Put(b"d", b"5")]), |_| Ok(()))
            .unwrap();
        assert!(
            wal.checkpoint(true, || Err(StoreError::Injected(
                super::super::health::Step::Flush
            )))
            .is_err()
        );
        assert_eq!(segments(&wal_dir).unwrap(), vec![3, 4]);
        let r = replay(&wal_dir, |_| Ok(())).unwrap();
        assert_eq!(r.records, 1);
    }

    #[test]
    fn zeros_end_the_frames_and_anything_after_them_is_damage() {
        let buf = rec(&[Op::Put(b"a", b"1")]).seal().to_vec();
        let mut seg = buf.clone();
        seg.extend_from_slice(&[0; 100]);
        assert_eq!(frames(&seg).0.len(), 1);
        assert_eq!(frames(&seg).1, None);
        // A partial header of zeros at the very end is zeros too.
        assert_eq!(frames(&seg[..buf.len() + 3]).1, None);
        seg[buf.len() + 50] = 9;
        assert_eq!(frames(&seg), (vec![&buf[8..]], Some(buf.len())));
    }

    #[test]
    fn segments_start_as_zeros_that_commits_overwrite_then_grow_past() {
        let (_dir, wal_dir, wal) = fresh_wal();
        let seg1 = segment_path(&wal_dir, 1);
        let len = |p: &Path| std::fs::metadata(p).unwrap().len();
        assert_eq!(len(&seg1), MIN_SEGMENT);
        // An empty batch logs nothing: its zero header would end the frames.
        wal.commit(&mut Record::default(), |_| Ok(())).unwrap();
        assert!(!holds_frames(&seg1));
        let value = vec![5u8; 1000];
        wal.commit(&mut rec(&[Op::Put(b"k", &value)]), |_| Ok(()))
            .unwrap();
        assert!(holds_frames(&seg1));
        assert_eq!(len(&seg1), MIN_SEGMENT, "written over the zeros");
        let n = MIN_SEGMENT as usize / value.len() + 10;
        for _ in 1..n {
            wal.commit(&mut rec(&[Op::Put(b"k", &value)]), |_| Ok(()))
                .unwrap();
        }
        assert!(len(&seg1) > MIN_SEGMENT, "grown past its zeros");
        let logged = wal.logged_since_checkpoint();
        wal.checkpoint(true, || Ok(())).unwrap();
        let seg2 = segment_path(&wal_dir, 2);
        assert_eq!(len(&seg2), next_segment_size(logged));
        assert_eq!(next_segment_size(logged), 256 << 10);
        wal.commit(&mut rec(&[Op::Del(b"k")]), |_| Ok(())).unwrap();
        drop(wal);
        let r = replay(&wal_dir, |_| Ok(())).unwrap();
        assert_eq!((r.segments, r.records), (vec![2], 1));
    }

    #[test]
    fn segment_sizes_stay_within_bounds() {
        assert_eq!(next_segment_size(0), MIN_SEGMENT);
        assert_eq!(next_segment_size(100 << 10), 256 << 10);
        assert_eq!(next_segment_size(u64::MAX), MAX_SEGMENT);
    }

    #[test]
    fn damage_before_the_newest_segment_refuses() {
        let dir = tempfile::tempdir().unwrap();
        let buf = rec(&[Op::Put(b"a", b"1")]).seal().to_vec();
        let cut = buf.len() - 1;
        std::fs::write(segment_path(dir.path(), 1), &buf[..cut]).unwrap();
        std::fs::write(segment_path(dir.path(), 2), &buf).unwrap();
        assert!(matches!(
            replay(dir.path(), |_| Ok(())),
            Err(StoreError::Unreadable { .. })
        ));
        // The same cut in the newest segment (or one followed by empty
        // or zero-filled ones) is a write that never finished.
        std::fs::write(segment_path(dir.path(), 2), b"").unwrap();
        assert_eq!(replay(dir.path(), |_| Ok(())).unwrap().records, 0);
        std::fs::write(segment_path(dir.path(), 2), [0; 4096]).unwrap();
        assert_eq!(replay(dir.path(), |_| Ok(())).unwrap().records, 0);
    }
}
