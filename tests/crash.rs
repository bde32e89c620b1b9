//! Crash safety in the style of sled's own crash tests: the real `tidings`
//! binary runs under load and is killed with SIGKILL at a random moment,
//! repeatedly. After each restart every acknowledged send is in history,
//! exactly once, in order; a resend of an unanswered message with its
//! idempotency token is stored at most once.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rand::Rng;
use tidings::client::{Client, ClientOptions};
use tidings::protocol::{Anchor, ConvId, Direction, HistoryQuery, Message, SendMessage};

#[path = "common/process.rs"]
mod process;
use process::{ServerProcess, options, spawn_server};

const ROUNDS: usize = 6;
const SENDERS: usize = 4;

fn spawn(dir: &Path) -> ServerProcess {
    spawn_server(dir, &[("TIDINGS_STORE_CACHE_CAPACITY_MB", "16".as_ref())])
}

fn client_options(dir: &Path, addr: std::net::SocketAddr, who: &str) -> ClientOptions {
    let mut o = options(dir, addr, who);
    o.request_timeout = Duration::from_secs(3);
    o
}

#[derive(Default)]
struct Ledger {
    /// (sender, n) -> (seq, msg_id) for every acknowledged send.
    acked: HashMap<(usize, u64), (u64, String)>,
    /// The next number each sender will send; an unanswered one is resent as is.
    next: [u64; SENDERS],
}

fn body(sender: usize, n: u64) -> String {
    format!("s{sender}-{n}")
}

/// Sends numbered messages until the connection dies; records each answer.
async fn sender_loop(client: Client, conv: ConvId, sender: usize, ledger: Arc<Mutex<Ledger>>) {
    loop {
        let n = ledger.lock().next[sender];
        let mut m = SendMessage::text(conv, body(sender, n));
        m.token = Some(body(sender, n));
        match client.send(m).await {
            Ok(sent) => {
                let mut l = ledger.lock();
                if let Some((seq, id)) = l.acked.get(&(sender, n)) {
                    assert_eq!((*seq, id.as_str()), (sent.seq, sent.msg_id.as_str()));
                }
                l.acked.insert((sender, n), (sent.seq, sent.msg_id));
                l.next[sender] = n + 1;
            }
            Err(_) => return,
        }
    }
}

async fn history(client: &Client, conv: ConvId) -> Vec<Message> {
    let mut out: Vec<Message> = Vec::new();
    loop {
        let anchor = out.last().map_or(Anchor::Earliest, |m| Anchor::Seq(m.seq));
        let (page, more) = client
            .history(HistoryQuery {
                conv,
                anchor,
                direction: Direction::After,
                inclusive: false,
                limit: 1000,
                lctype: None,
            })
            .await
            .expect("history");
        let empty = page.is_empty();
        out.extend(page);
        if !more || empty {
            return out;
        }
    }
}

fn verify(msgs: &[Message], ledger: &Ledger) {
    let mut seen: HashMap<String, u64> = HashMap::new();
    let mut last_n = [None::<u64>; SENDERS];
    for (i, m) in msgs.iter().enumerate() {
        assert_eq!(m.seq, i as u64 + 1, "seqs are gap-free from 1");
        let tidings::protocol::Content::Text(t) = &m.content else {
            panic!("unexpected binary message")
        };
        assert!(seen.insert(t.clone(), m.seq).is_none(), "{t} stored twice");
        let (s, n) = t[1..].split_once('-').expect("sN-M");
        let (s, n): (usize, u64) = (s.parse().unwrap(), n.parse().unwrap());
        assert!(
            last_n[s].is_none_or(|prev| prev < n),
            "sender {s} out of order at {t}"
        );
        last_n[s] = Some(n);
    }
    for ((s, n), (seq, id)) in &ledger.acked {
        let t = body(*s, *n);
        let at = seen
            .get(&t)
            .unwrap_or_else(|| panic!("acknowledged {t} (seq {seq}) lost"));
        assert_eq!(at, seq, "{t} moved");
        assert_eq!(&msgs[(*at - 1) as usize].msg_id, id);
    }
}

fn data_dir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_path_buf();
    (dir, path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_messages_survive_sigkill() {
    let (_guard, dir) = data_dir();
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let mut conv = None;
    let mut rng = rand::thread_rng();
    for round in 0..ROUNDS {
        let mut server = spawn(&dir);
        let mut clients = Vec::new();
        for s in 0..SENDERS {
            let (c, _events) =
                Client::connect(client_options(&dir, server.addr, &format!("sender{s}")))
                    .await
                    .expect("sender logs in");
            clients.push(c);
        }
        let conv_id = match conv {
            Some(c) => c,
            None => {
                let members = (1..SENDERS).map(|s| format!("sender{s}")).collect();
                let c = clients[0]
                    .create_conversation(tidings::protocol::CreateConversation {
                        members,
                        name: Some("crash".into()),
                        attr: None,
                        unique: false,
                        kind: tidings::protocol::ConvKind::Normal,
                        sig: None,
                        ttl_secs: None,
                    })
                    .await
                    .expect("create")
                    .id;
                conv = Some(c);
                c
            }
        };
        if round > 0 {
            // Everything acknowledged before the last kill is there, exactly once.
            verify(&history(&clients[0], conv_id).await, &ledger.lock());
        }
        let before = ledger.lock().acked.len();
        let tasks: Vec<_> = clients
            .iter()
            .enumerate()
            .map(|(s, c)| tokio::spawn(sender_loop(c.clone(), conv_id, s, ledger.clone())))
            .collect();
        // Let real load build up (bounded wait on progress), then kill at a random moment.
        let deadline = Instant::now() + Duration::from_secs(30);
        while ledger.lock().acked.len() < before + 50 {
            assert!(Instant::now() < deadline, "no progress under load");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(rng.gen_range(0..300))).await;
        server.child.kill().expect("SIGKILL");
        let _ = server.child.wait();
        for t in tasks {
            t.await.expect("sender task");
        }
        drop(clients);
    }

    // Final check, then a graceful SIGTERM that must exit 0.
    let mut server = spawn(&dir);
    let (reader, _ev) = Client::connect(client_options(&dir, server.addr, "sender0"))
        .await
        .expect("reader logs in");
    let conv_id = conv.expect("conversation created");
    let msgs = history(&reader, conv_id).await;
    let l = ledger.lock();
    verify(&msgs, &l);
    assert!(
        l.acked.len() >= ROUNDS * 50,
        "load ran: {} acked",
        l.acked.len()
    );
    drop(l);
    drop(reader);
    let pid = server.child.id() as i32;
    // SAFETY: signalling our own child process.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let status = server.child.wait().expect("wait");
    assert!(status.success(), "graceful shutdown exits 0, got {status}");
}
