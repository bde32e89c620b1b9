//! SIGHUP on the real binary: the keyword list is re-read from its file
//! without a restart, and a broken list leaves the running one in place.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tidings::client::{Client, ClientEvent, ClientOptions, Events, Signer};
use tidings::protocol::{
    Anchor, Content, ConvId, ConvKind, CreateConversation, Direction, Event, HistoryQuery,
};
use tidings::transport::ServerTrust;
use tidings::transport::tls::{data_dir_fingerprint, parse_fingerprint};

const WAIT: Duration = Duration::from_secs(10);

struct ServerProcess(Child);

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(dir: &Path, words: &Path) -> (ServerProcess, std::net::SocketAddr) {
    let addr_file = dir.join(tidings::server::ADDR_FILE);
    let child = Command::new(env!("CARGO_BIN_EXE_tidings"))
        .arg("serve")
        .env("TIDINGS_SERVER_DATA_DIR", dir)
        .env("TIDINGS_SERVER_LISTEN", "127.0.0.1:0")
        .env("TIDINGS_ADMIN_ENABLED", "false")
        .env("TIDINGS_MESSAGES_KEYWORD_FILE", words)
        .env("TIDINGS_LOG_LEVEL", "warn")
        .env_remove("TIDINGS_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn tidings serve");
    let server = ServerProcess(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    let addr = loop {
        if let Ok(text) = std::fs::read_to_string(&addr_file)
            && let Ok(a) = text.trim().parse()
        {
            break a;
        }
        assert!(Instant::now() < deadline, "server did not start within 30s");
        std::thread::sleep(Duration::from_millis(20));
    };
    (server, addr)
}

async fn connect(dir: &Path, addr: std::net::SocketAddr, who: &str) -> (Client, Events) {
    let creds = tidings::auth::Credentials::load(dir).expect("credentials");
    let pin = parse_fingerprint(&data_dir_fingerprint(dir).expect("cert")).expect("pin");
    let o = ClientOptions::new(
        addr,
        ServerTrust::Pin(pin),
        creds.app_id,
        Signer::MasterKey(creds.master_key),
        who,
    );
    Client::connect(o).await.expect("connect")
}

/// What history stored for the newest message.
async fn stored(tom: &Client, conv: ConvId) -> String {
    let (page, _) = tom
        .history(HistoryQuery {
            conv,
            anchor: Anchor::Latest,
            direction: Direction::Before,
            inclusive: true,
            limit: 1,
            lctype: None,
        })
        .await
        .expect("history");
    match &page[0].content {
        Content::Text(t) => t.clone(),
        Content::Binary(_) => panic!("binary"),
    }
}

fn hup(server: &ServerProcess) {
    let pid = libc::pid_t::try_from(server.0.id()).expect("pid");
    // SAFETY: signalling our own child process.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_rereads_the_keyword_list() {
    let dir = tempfile::tempdir().expect("tempdir");
    let words = dir.path().join("words.txt");
    std::fs::write(&words, "alpha\n").expect("words");
    let (server, addr) = spawn(dir.path(), &words);
    let (tom, mut events) = connect(dir.path(), addr, "Tom").await;
    let conv = tom
        .create_conversation(CreateConversation {
            members: vec!["Jerry".into()],
            name: None,
            attr: None,
            unique: false,
            kind: ConvKind::Normal,
        })
        .await
        .expect("create")
        .id;

    let sent = tom.send_text(conv, "ALPHA beta").await.expect("send");
    let (id, code) = events
        .wait_for(WAIT, |e| match e {
            ClientEvent::Server(Event::MessageUpdated {
                msg,
                reason: Some(r),
            }) => Some((msg.msg_id.clone(), r.code)),
            _ => None,
        })
        .await
        .expect("the sender is told its message was filtered");
    assert_eq!((id, code), (sent.msg_id, -4408));
    assert_eq!(stored(&tom, conv).await, "*** beta");

    // A new word, then SIGHUP: sends are masked once the reload has happened.
    std::fs::write(&words, "alpha\nbeta\n").expect("words");
    hup(&server);
    let deadline = Instant::now() + WAIT;
    let mut n = 0;
    loop {
        n += 1;
        tom.send_text(conv, &format!("beta {n}"))
            .await
            .expect("send");
        if stored(&tom, conv).await == format!("*** {n}") {
            break;
        }
        assert!(Instant::now() < deadline, "the reload never took effect");
        tokio::task::yield_now().await;
    }

    // A list that cannot be read is an error in the log, not a crash: the
    // server stays up and keeps filtering with the list it had.
    std::fs::remove_file(&words).expect("rm");
    hup(&server);
    tom.send_text(conv, "alpha and beta").await.expect("send");
    assert_eq!(stored(&tom, conv).await, "*** and ***");
}
