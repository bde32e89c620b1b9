//! SIGHUP on the real binary: the keyword list is re-read from its file
//! without a restart, and a broken list leaves the running one in place.

use std::path::Path;
use std::time::{Duration, Instant};

use tidings::client::{Client, ClientEvent, Events};
use tidings::protocol::{
    Anchor, Content, ConvId, ConvKind, CreateConversation, Direction, Event, HistoryQuery,
};

#[path = "common/process.rs"]
mod process;
use process::{ServerProcess, options, spawn_server};

const WAIT: Duration = Duration::from_secs(10);

async fn connect(dir: &Path, addr: std::net::SocketAddr, who: &str) -> (Client, Events) {
    Client::connect(options(dir, addr, who))
        .await
        .expect("connect")
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
    let pid = libc::pid_t::try_from(server.child.id()).expect("pid");
    // SAFETY: signalling our own child process.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_rereads_the_keyword_list() {
    let dir = tempfile::tempdir().expect("tempdir");
    let words = dir.path().join("words.txt");
    std::fs::write(&words, "alpha\n").expect("words");
    let server = spawn_server(
        dir.path(),
        &[("TIDINGS_MESSAGES_KEYWORD_FILE", words.as_os_str())],
    );
    let (tom, mut events) = connect(dir.path(), server.addr, "Tom").await;
    let conv = tom
        .create_conversation(CreateConversation {
            members: vec!["Jerry".into()],
            name: None,
            attr: None,
            unique: false,
            kind: ConvKind::Normal,
            sig: None,
            ttl_secs: None,
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
