//! sled's own crash-test pattern, against our store module: the test binary
//! re-runs itself as a child that appends group-committed batches (durable
//! in the write-ahead log) while one thread checkpoints (sled's flush) at
//! random moments and another calls `exit(9)` at a random moment; the
//! parent reopens the store, which replays the log, and checks that every
//! batch the child reported durable is there, whole, and that a cursor the
//! child flushed survived without passing the log.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use rand::Rng;
use tidings::protocol::{Content, ConvId, Message};
use tidings::store::{LogEntry, SentRecord, Store, TokenRecord};

const CHILD_ENV: &str = "TIDINGS_STORE_CRASH_DIR";
const CONV: ConvId = ConvId([7; 12]);
const BATCH: u64 = 16;

fn entry(seq: u64) -> LogEntry {
    LogEntry::new(
        Message {
            msg_id: format!("id{seq}"),
            // Mixed sizes, some large enough to become sled blobs.
            ..Message::new(
                CONV,
                seq,
                "Tom",
                seq,
                Content::Binary(vec![
                    seq as u8;
                    if seq.is_multiple_of(97) { 150_000 } else { 200 }
                ]),
            )
        },
        "d",
        "127.0.0.1",
    )
}

/// The child: append until killed, printing the last durable seq after each batch.
#[test]
#[ignore = "the child half of store_survives_exit_mid_write, which runs it"]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return; // Only meaningful when re-run by the parent.
    };
    let store = Store::open(Path::new(&dir), 8 << 20, true).expect("open");
    let mut next = store
        .last_message(CONV)
        .expect("last")
        .map_or(1, |e| e.msg.seq + 1);
    let store = std::sync::Arc::new(store);
    let delay = rand::thread_rng().gen_range(1..120);
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(delay));
        std::process::exit(9);
    });
    // Checkpoints as the server makes them, but often, so the exit lands
    // before, during and after them: in the write-ahead log only, in the
    // middle of sled's flush, and between the flush and the segments'
    // removal.
    let checkpointer = store.clone();
    std::thread::spawn(move || {
        loop {
            std::thread::sleep(Duration::from_millis(rand::thread_rng().gen_range(0..15)));
            checkpointer.checkpoint().expect("checkpoint");
        }
    });
    loop {
        let batch: Vec<LogEntry> = (next..next + BATCH).map(entry).collect();
        let tok = format!("t{next}");
        let token = TokenRecord {
            client: "Tom",
            token: &tok,
            sent: SentRecord {
                conv: CONV,
                msg_id: format!("id{next}"),
                seq: next,
                timestamp: next,
            },
        };
        store.append(&batch, &[token]).expect("append");
        next += BATCH;
        println!("durable {}", next - 1);
        // Cursors are written behind: only a flush_durable promises them.
        store
            .set_device_cursor("Jerry", "pc", CONV, next - 1)
            .expect("cursor");
        if next % (4 * BATCH) == 1 {
            store.flush_durable().expect("flush");
            println!("cursor {}", next - 1);
        }
    }
}

#[test]
fn store_survives_exit_mid_write() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let exe = std::env::current_exe().expect("test binary");
    let (mut durable, mut cursor) = (0u64, 0u64);
    let mut replayed = 0;
    for _ in 0..12 {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "crash_child",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn child");
        let out = child.stdout.take().expect("stdout");
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            // exit(9) can cut the last line short; a partial number proves nothing.
            if let Some(Ok(n)) = line.strip_prefix("durable ").map(str::parse::<u64>) {
                durable = durable.max(n);
            }
            if let Some(Ok(n)) = line.strip_prefix("cursor ").map(str::parse::<u64>) {
                cursor = cursor.max(n);
            }
        }
        let status = child.wait().expect("wait");
        assert_eq!(status.code(), Some(9), "child died by its own exit(9)");

        // Whether the reopen must replay batches written since the last
        // checkpoint: a segment whose first frame header is not the zeros
        // it was made with.
        let logged = std::fs::read_dir(dir.path().join("wal"))
            .expect("the write-ahead log's dir")
            .any(|e| {
                let mut head = Vec::with_capacity(8);
                let segment = std::fs::File::open(e.expect("entry").path()).expect("segment");
                std::io::Read::read_to_end(&mut std::io::Read::take(segment, 8), &mut head)
                    .expect("read");
                head.iter().any(|&b| b != 0)
            });
        if logged {
            replayed += 1;
        }
        let store = Store::open(dir.path(), 8 << 20, true).expect("reopen after crash");
        let last = store
            .last_message(CONV)
            .expect("last")
            .map_or(0, |e| e.msg.seq);
        assert!(
            last >= durable,
            "durable seq {durable} lost (store ends at {last})"
        );
        // Batches are atomic: the store always ends on a batch boundary.
        assert_eq!(last % BATCH, 0, "a torn batch ends at {last}");
        let all = store
            .messages(CONV, 1, last, usize::MAX, false)
            .expect("scan");
        assert_eq!(all.len() as u64, last, "gap in the log");
        for (i, e) in all.iter().enumerate() {
            assert_eq!(*e, entry(i as u64 + 1));
        }
        // A flushed cursor survives; none points past the log.
        let at = store.device_cursor("Jerry", "pc", CONV).expect("cursor");
        assert!(
            (cursor..=last).contains(&at),
            "cursor {at}: flushed {cursor}, log ends at {last}"
        );
        for b in (1..=last).step_by(BATCH as usize) {
            assert_eq!(
                store
                    .sent_by_token("Tom", &format!("t{b}"))
                    .expect("tok")
                    .map(|s| s.seq),
                Some(b)
            );
        }
    }
    assert!(durable > 0, "the child made progress");
    assert!(
        replayed > 0,
        "some crash left batches only in the write-ahead log"
    );
}
