//! A store that fails: an I/O error at each step of a commit (injected with
//! `Store::faults`), and a disk that really fills (a tmpfs). The rules under
//! test (`store::health`): the server never acknowledges what it did not
//! store, never answers "not stored" (4200) for what may be stored, never
//! hands out a sequence number twice, and rides out a full disk without a
//! restart.

mod common;

use common::admin::Admin;
use common::tmpfs::Tmpfs;
use common::*;
use tidings::client::{Client, ClientEvent};
use tidings::protocol::{ConvId, Event, SendMessage};
use tidings::store::health::{Health, Step};

const NOT_STORED: u16 = 4200;
const OUTCOME_UNKNOWN: u16 = 4202;

fn with_token(conv: ConvId, token: &str, body: &str) -> SendMessage {
    SendMessage {
        token: Some(token.into()),
        ..SendMessage::text(conv, body)
    }
}

/// Checks the log of `conv` against what the senders were told: every
/// acknowledged `(token, text)` appears exactly once, under the seq it was
/// acknowledged with, no text in `never` appears, and seqs run 1, 2, 3…
async fn check_history(
    c: &Client,
    conv: ConvId,
    acked: &[(u64, &str)],
    never: &[&str],
) -> Vec<String> {
    let h = full_history(c, conv).await;
    let seqs: Vec<u64> = h.iter().map(|m| m.seq).collect();
    let expected: Vec<u64> = (1..=h.len() as u64).collect();
    assert_eq!(seqs, expected, "seqs are dense and never reused");
    for (seq, body) in acked {
        let m = h
            .iter()
            .find(|m| m.seq == *seq)
            .unwrap_or_else(|| panic!("acknowledged seq {seq} missing"));
        assert_eq!(
            text(m),
            *body,
            "seq {seq} holds the message acknowledged for it"
        );
    }
    let texts: Vec<String> = h.iter().map(|m| text(m).to_owned()).collect();
    for n in never {
        assert!(
            !texts.iter().any(|t| t == n),
            "{n:?} was answered 'not stored' but is in history: {texts:?}"
        );
    }
    texts
}

/// A failure before anything reaches sled (the token lookup) is a true
/// "not stored": 4200, the server keeps running, no seq is used up, and a
/// resend with the same token stores the message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_token_read_is_not_stored_and_uses_no_seq() {
    let s = TestServer::start().await;
    let (tom, _tev) = s.connect("Tom").await;
    let conv = tom.create_unique(vec!["Jerry".into()]).await.unwrap().id;
    let first = tom.send(with_token(conv, "t1", "one")).await.unwrap();

    s.running()
        .hub()
        .store
        .faults()
        .fail_nth(Step::TokenRead, 1);
    let refused = tom.send(with_token(conv, "t2", "two, refused")).await;
    assert_eq!(code_of(refused), NOT_STORED);
    assert!(s.running().hub().store.health().is_ok());

    let second = tom.send(with_token(conv, "t2", "two")).await.unwrap();
    assert!(!second.duplicate, "the refused send left no token behind");
    assert_eq!(second.seq, first.seq + 1, "the refused send used no seq");
    check_history(&tom, conv, &[(1, "one"), (2, "two")], &["two, refused"]).await;
}

/// The same for a patch: reading the message to edit fails, the edit is
/// refused with 4200 and the message is as it was; the next edit works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_read_for_an_edit_is_not_stored() {
    let s = TestServer::start().await;
    let (tom, _tev) = s.connect("Tom").await;
    let conv = tom.create_unique(vec!["Jerry".into()]).await.unwrap().id;
    let sent = tom.send_text(conv, "draft").await.unwrap();

    s.running()
        .hub()
        .store
        .faults()
        .fail_nth(Step::MessageRead, 1);
    let refused = tom.edit_text(conv, &sent.msg_id, "refused edit").await;
    assert_eq!(code_of(refused), NOT_STORED);
    check_history(&tom, conv, &[(1, "draft")], &["refused edit"]).await;

    tom.edit_text(conv, &sent.msg_id, "final").await.unwrap();
    check_history(&tom, conv, &[(1, "final")], &[]).await;
}

/// A failure once the batch is in sled's hands (the write itself, or the
/// flush after it): the outcome is unknown, so the senders hear 4202 (never
/// an ack, never a false 4200), the store takes no more writes, the server
/// stops, and after the restart a resend with the same token answers the
/// sender's own message (or stores it anew), under a seq nobody else has.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_write_or_flush_stops_the_server_and_reuses_no_seq() {
    for step in [Step::Write, Step::Flush] {
        let mut s = TestServer::start().await;
        let (tom, _tev) = s.connect("Tom").await;
        let (jerry, _jev) = s.connect("Jerry").await;
        let conv = tom.create_unique(vec!["Jerry".into()]).await.unwrap().id;
        let first = tom.send(with_token(conv, "t1", "one")).await.unwrap();
        assert_eq!(first.seq, 1);

        s.running().hub().store.faults().fail_nth(step, 1);
        let lost = tom.send(with_token(conv, "t2", "two")).await;
        assert_eq!(code_of(lost), OUTCOME_UNKNOWN, "{step:?}: outcome unknown");
        tokio::time::timeout(WAIT, s.running().store_failed())
            .await
            .unwrap_or_else(|_| panic!("{step:?}: the store is marked failed"));
        assert!(matches!(
            s.running().hub().store.health(),
            Health::Failed { .. }
        ));
        // Nothing is written after the failure: no ack, and the seq the
        // failed batch used is not handed out again in this process.
        if let Ok(sent) = jerry.send(with_token(conv, "j1", "after")).await {
            panic!("{step:?}: a send after the failure was acknowledged: {sent:?}");
        }
        let running = s.server.take().expect("running");
        let err = running
            .shutdown()
            .await
            .expect_err("a failed store shuts down with an error");
        assert!(err.is_store_failure(), "{step:?}: {err}");

        s.start_again().await;
        let (tom, _tev) = s.connect("Tom").await;
        let (jerry, _jev) = s.connect("Jerry").await;
        let again = tom.send(with_token(conv, "t2", "two")).await.unwrap();
        let other = jerry.send(with_token(conv, "j1", "after")).await.unwrap();
        assert_ne!(again.seq, other.seq, "{step:?}: one seq per message");
        let texts = check_history(
            &tom,
            conv,
            &[(1, "one"), (again.seq, "two"), (other.seq, "after")],
            &[],
        )
        .await;
        assert_eq!(texts.len(), 3, "{step:?}: {texts:?}");
        // Same token once more: the same answer.
        let dup = tom.send(with_token(conv, "t2", "two")).await.unwrap();
        assert!(dup.duplicate);
        assert_eq!((dup.seq, &dup.msg_id), (again.seq, &again.msg_id));
    }
}

/// A disk that fills under a running server, with the reserve on: writes
/// are refused with 4200 (and /healthz says 503), acknowledged messages
/// stay, a login meanwhile still syncs, and once space is freed sends work
/// again without a restart; a graceful stop then exits cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_writes_and_recovers_without_a_restart() {
    let fs = Tmpfs::mount(64);
    let data = fs.path().join("data");
    let mut s = TestServer::start_with(|c| {
        c.server.data_dir = data.clone();
        c.store.min_free_mb = 16;
    })
    .await;
    let admin = Admin::of(&s);
    let (tom, _tev) = s.connect("Tom").await;
    let conv = tom.create_unique(vec!["Jerry".into()]).await.unwrap().id;
    let mut acked = Vec::new();
    for i in 0..20 {
        let body = format!("before {i}");
        let sent = tom.send_text(conv, &body).await.unwrap();
        acked.push((sent.seq, body));
    }
    admin
        .send(admin.bare(reqwest::Method::GET, "/healthz"))
        .await
        .expect(200);

    let filler = fs.fill(8 << 20);
    // The store re-reads free space at most every 100 ms.
    eventually("the store to see the disk low", || {
        !s.running().hub().store.health().is_ok()
    })
    .await;
    let refused = tom.send_text(conv, "while full").await;
    assert_eq!(code_of(refused), NOT_STORED);
    assert!(matches!(
        s.running().hub().store.health(),
        Health::LowSpace { .. }
    ));
    admin
        .send(admin.bare(reqwest::Method::GET, "/healthz"))
        .await
        .expect(503);
    // A conversation change is refused too, with the same code.
    assert_eq!(
        code_of(tom.create_conversation(group(&["Jerry", "Spike"])).await),
        NOT_STORED
    );
    // Jerry logs in meanwhile: his offline sync still runs (reads need no space).
    let (_jerry, mut jev) = s.connect_raw(s.options("Jerry")).await;
    let (synced, _) = push_sync(&mut jev).await;
    assert_eq!(
        synced.len() as u32,
        s.config.delivery.push_sync_limit.min(20)
    );

    std::fs::remove_file(&filler).expect("free the space");
    let mut after = None;
    // The free-space figure is re-read every 100 ms: bounded retries.
    for _ in 0..100 {
        match tom.send_text(conv, "after").await {
            Ok(sent) => {
                after = Some(sent);
                break;
            }
            Err(e) => assert_eq!(e.code(), Some(NOT_STORED), "{e}"),
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let after = after.expect("sends work again once space is freed");
    acked.push((after.seq, "after".into()));
    assert!(s.running().hub().store.health().is_ok());
    admin
        .send(admin.bare(reqwest::Method::GET, "/healthz"))
        .await
        .expect(200);
    let acked_ref: Vec<(u64, &str)> = acked.iter().map(|(q, b)| (*q, b.as_str())).collect();
    check_history(&tom, conv, &acked_ref, &["while full"]).await;

    s.restart().await;
    let (tom, _tev) = s.connect("Tom").await;
    check_history(&tom, conv, &acked_ref, &["while full"]).await;
}

/// With the reserve off, the disk really fills under sled: the write fails
/// inside the store, the server stops with a store failure, acknowledged
/// messages survive, and after space is freed a restart serves again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_full_under_the_store_stops_the_server_and_loses_nothing_acknowledged() {
    let fs = Tmpfs::mount(64);
    let data = fs.path().join("data");
    let mut s = TestServer::start_with(|c| {
        c.server.data_dir = data.clone();
        c.store.min_free_mb = 0;
    })
    .await;
    let (tom, _tev) = s.connect("Tom").await;
    let conv = tom.create_unique(vec!["Jerry".into()]).await.unwrap().id;
    let mut acked = Vec::new();
    for i in 0..20 {
        let body = format!("before {i}");
        acked.push((tom.send_text(conv, &body).await.unwrap().seq, body));
    }
    let filler = fs.fill(0);
    // Bigger messages, so sled's buffers must reach the full disk. Bounded.
    let big = "x".repeat(4000);
    let mut refused_with = None;
    for i in 0..2000 {
        match tom.send(with_token(conv, &format!("big-{i}"), &big)).await {
            Ok(sent) => acked.push((sent.seq, big.clone())),
            Err(e) => {
                refused_with = e.code();
                break;
            }
        }
    }
    assert!(
        matches!(refused_with, Some(OUTCOME_UNKNOWN) | Some(NOT_STORED)),
        "a send fails once the disk is full: {refused_with:?}"
    );
    tokio::time::timeout(WAIT, s.running().store_failed())
        .await
        .expect("the store is marked failed");
    let running = s.server.take().expect("running");
    let err = running.shutdown().await.expect_err("stops with an error");
    assert!(err.is_store_failure(), "{err}");

    std::fs::remove_file(&filler).expect("free the space");
    s.start_again().await;
    let (tom, _tev) = s.connect("Tom").await;
    let acked_ref: Vec<(u64, &str)> = acked.iter().map(|(q, b)| (*q, b.as_str())).collect();
    check_history(&tom, conv, &acked_ref, &[]).await;
    let sent = tom.send_text(conv, "after the restart").await.unwrap();
    assert!(sent.seq > acked.last().map_or(0, |a| a.0));
}

/// A login whose sync cannot run says so instead of skipping it in silence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_whose_sync_fails_is_told() {
    let s = TestServer::start().await;
    let (tom, _tev) = s.connect("Tom").await;
    let conv = tom.create_unique(vec!["Jerry".into()]).await.unwrap().id;
    // Jerry has logged in before, so his next login catches up on patches.
    let (jerry, _jev) = s.connect("Jerry").await;
    jerry.logout().await.unwrap();
    let sent = tom.send_text(conv, "hello").await.unwrap();
    tom.edit_text(conv, &sent.msg_id, "hello, edited")
        .await
        .unwrap();
    // The patch sync reads the edited message; that read fails once.
    s.running()
        .hub()
        .store
        .faults()
        .fail_nth(Step::MessageRead, 1);
    let (_jerry, mut jev) = s.connect_raw(s.options("Jerry")).await;
    let said = jev
        .wait_for(WAIT, |e| match e {
            ClientEvent::Server(Event::SyncSkipped { what, code, .. }) => {
                Some((what.clone(), *code))
            }
            _ => None,
        })
        .await
        .expect("SyncSkipped");
    assert_eq!(said, ("patches".to_owned(), NOT_STORED));
}
