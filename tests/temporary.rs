//! Temporary conversations (LeanCloud's `createTemporaryConversation`) over
//! real QUIC clients against a real server: `_tmp:` ids that carry their
//! expiry, fixed members, 4323 once the TTL is up, removal with their
//! history by the sweeper, and both across a restart. The LeanCloud SDK's
//! side is `tests/leancloud-sdk/temporary.test.js`.

mod common;

use common::*;
use tidings::client::ClientEvent;
use tidings::conversation::expire;
use tidings::protocol::{ConvId, ConvKind, CreateConversation, Event};
use tidings::util::now_ms;

fn temporary(members: &[&str], ttl_secs: Option<u32>) -> CreateConversation {
    CreateConversation {
        kind: ConvKind::Temporary,
        ttl_secs,
        // LeanCloud's SDKs send `unique` by default: it must not matter.
        unique: true,
        ..group(members)
    }
}

/// Seconds from now to `conv`'s expiry.
fn secs_left(conv: ConvId) -> u64 {
    conv.expires_ms()
        .expect("a temporary id")
        .saturating_sub(now_ms())
        / 1000
}

#[tokio::test]
async fn a_temporary_conversation_has_fixed_members_then_expires_with_its_history() {
    let s = TestServer::start().await;
    let (alice, _aev) = s.connect("alice").await;
    let (bob, mut bev) = s.connect("bob").await;
    let (carol, _cev) = s.connect("carol").await;

    let info = alice
        .create_conversation(temporary(&["bob"], Some(2)))
        .await
        .unwrap();
    let conv = info.id;
    assert_eq!(info.kind, ConvKind::Temporary);
    assert!(conv.to_string().starts_with("_tmp:"), "{conv}");
    assert!((1..=2).contains(&secs_left(conv)), "lives its whole TTL");
    assert_eq!(info.members, ["alice", "bob"]);
    let again = alice
        .create_conversation(temporary(&["bob"], Some(2)))
        .await
        .unwrap();
    assert_ne!(again.id, conv, "never unique");

    let invited = bev
        .wait_for(WAIT, |e| match e {
            ClientEvent::Server(Event::Invited { conv: c, by }) if *c == conv => Some(by.clone()),
            _ => None,
        })
        .await;
    assert_eq!(invited.as_deref(), Some("alice"));
    alice.send_text(conv, "short-lived").await.unwrap();
    assert_eq!(text(&full_history(&bob, conv).await[0]), "short-lived");

    // Members and attributes are fixed; outsiders see nothing.
    assert_eq!(code_of(carol.join(conv).await), 4314);
    assert_eq!(
        code_of(alice.add_members(conv, vec!["carol".into()]).await),
        4314
    );
    assert_eq!(code_of(bob.leave(conv).await), 4314);
    assert_eq!(
        code_of(alice.update(conv, Some("n".into()), None).await),
        4314
    );
    assert_eq!(code_of(carol.get_conversation(conv).await), 4401);

    // After the TTL: 4323 for everything, before any sweep.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match alice.send_text(conv, "too late?").await {
            Ok(_) => {
                assert!(tokio::time::Instant::now() < deadline, "never expired");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            Err(e) => {
                assert_eq!(e.code(), Some(4323), "{e}");
                break;
            }
        }
    }
    assert_eq!(code_of(bob.get_conversation(conv).await), 4323);
    assert_eq!(code_of(try_full_history(&bob, conv).await), 4323);
    let listed = bob.conversations(100).await.unwrap();
    assert!(
        listed.iter().all(|c| c.id != conv),
        "not listed once expired"
    );

    // The sweep removes it, its memberships and its history.
    let hub = s.running().hub();
    let swept = expire::sweep(hub, now_ms()).await.unwrap();
    assert!(swept >= 2, "both expired ones went, {swept}");
    assert!(hub.convs.get(&conv).is_none());
    assert!(!hub.store.memberships_of("bob").unwrap().contains(&conv));
    assert_eq!(hub.store.last_seq(conv).unwrap(), 0, "history removed");
    assert!(
        hub.store
            .conversations()
            .unwrap()
            .iter()
            .all(|r| r.id != conv)
    );
    assert_eq!(code_of(bob.get_conversation(conv).await), 4323);
}

#[tokio::test]
async fn a_temporary_conversation_and_its_expiry_survive_a_restart() {
    let mut s = TestServer::start_with(|c| {
        c.limits.temporary_ttl_secs = 600;
        c.limits.max_temporary_ttl_secs = 3600;
    })
    .await;
    let (alice, _aev) = s.connect("alice").await;
    let by_default = alice
        .create_conversation(temporary(&["bob"], None))
        .await
        .unwrap()
        .id;
    assert!(
        (599..=600).contains(&secs_left(by_default)),
        "the default TTL"
    );
    let clamped = alice
        .create_conversation(temporary(&["bob"], Some(7200)))
        .await
        .unwrap()
        .id;
    assert!(
        (3599..=3600).contains(&secs_left(clamped)),
        "at most the longest"
    );
    alice.send_text(clamped, "kept").await.unwrap();
    drop(alice);

    s.restart().await;
    let (bob, _bev) = s.connect("bob").await;
    let info = bob.get_conversation(clamped).await.unwrap();
    assert_eq!((info.id, info.kind), (clamped, ConvKind::Temporary));
    assert_eq!(text(&full_history(&bob, clamped).await[0]), "kept");
    bob.send_text(by_default, "still here").await.unwrap();
    let swept = expire::sweep(s.running().hub(), now_ms()).await.unwrap();
    assert_eq!(swept, 0, "nothing expired yet");
}
