//! Conversation moderation over real QUIC clients against a real server:
//! member mute (LeanCloud's "shutup"), the blacklist and member roles, with
//! their partial answers, events, pages, persistence across a restart and
//! the codes the JS SDK's own tests expect (4308 for a muted send, 4315 for
//! a blocked join or add, 4324 for a plain member moderating, 5130 for an
//! Owner promotion).

#[path = "common/advanced.rs"]
#[allow(dead_code)]
mod adv;
mod common;

use adv::events_before;
use common::*;
use tidings::client::{ClientEvent, Events};
use tidings::protocol::{ConvId, Event, MemberRole};

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// The next server event for which `f` returns `Some`, or a panic naming `what`.
async fn expect<T>(ev: &mut Events, what: &str, mut f: impl FnMut(&Event) -> Option<T>) -> T {
    ev.wait_for(WAIT, |e| match e {
        ClientEvent::Server(s) => f(s),
        ClientEvent::Closed { .. } => None,
    })
    .await
    .unwrap_or_else(|| panic!("no {what} within {WAIT:?}"))
}

#[tokio::test]
async fn a_muted_member_cannot_send_until_unmuted_and_everyone_hears_it() {
    let mut s = TestServer::start().await;
    let (tom, mut tev) = s.connect("Tom").await;
    let (jerry, mut jev) = s.connect("Jerry").await;
    let (_spike, mut sev) = s.connect("Spike").await;
    let conv = tom
        .create_conversation(group(&["Jerry", "Spike"]))
        .await
        .unwrap()
        .id;

    // The owner, an outsider and Jerry: only Jerry is muted.
    let r = tom
        .mute_members(conv, strs(&["Jerry", "Tom", "Nobody", "Jerry"]))
        .await
        .unwrap();
    assert_eq!(r.allowed, strs(&["Jerry"]));
    assert_eq!(r.failure_of("Tom"), Some(4308));
    assert_eq!(r.failure_of("Nobody"), Some(4401));

    let own = expect(&mut jev, "Shutuped", |e| match e {
        Event::Shutuped { conv: c, by } => Some((*c, by.clone())),
        _ => None,
    })
    .await;
    assert_eq!(own, (conv, "Tom".to_string()));
    let members_shutuped = |e: &Event| match e {
        Event::MembersShutuped { conv, members, by } => Some((*conv, members.clone(), by.clone())),
        _ => None,
    };
    let want = (conv, strs(&["Jerry"]), "Tom".to_string());
    for ev in [&mut tev, &mut jev, &mut sev] {
        assert_eq!(expect(ev, "MembersShutuped", members_shutuped).await, want);
    }

    // Refused with its code, before anything is stored.
    assert_eq!(code_of(jerry.send_text(conv, "let me speak").await), 4308);
    let mut transient = tidings::protocol::SendMessage::text(conv, "psst");
    transient.transient = true;
    assert_eq!(code_of(jerry.send(transient).await), 4308);
    assert!(full_history(&tom, conv).await.is_empty());

    // Members may read the list; only a moderator may change it.
    let page = jerry.muted_members(conv, 0, None).await.unwrap();
    assert_eq!((page.clients, page.next), (strs(&["Jerry"]), None));
    assert_eq!(
        jerry
            .check_muted(conv, strs(&["Spike", "Jerry"]))
            .await
            .unwrap(),
        strs(&["Jerry"])
    );
    assert_eq!(
        code_of(jerry.unmute_members(conv, strs(&["Jerry"])).await),
        4324
    );

    // The mute outlives leaving and rejoining, and a restart.
    jerry.leave(conv).await.unwrap();
    jerry.join(conv).await.unwrap();
    drop((tom, jerry, tev, jev, sev));
    s.restart().await;
    let (tom, mut tev) = s.connect("Tom").await;
    let (jerry, mut jev) = s.connect("Jerry").await;
    assert_eq!(code_of(jerry.send_text(conv, "after restart").await), 4308);

    let r = tom.unmute_members(conv, strs(&["Jerry"])).await.unwrap();
    assert_eq!(r.allowed, strs(&["Jerry"]));
    assert!(r.failed.is_empty());
    let own = expect(&mut jev, "Unshutuped", |e| match e {
        Event::Unshutuped { conv: c, by } => Some((*c, by.clone())),
        _ => None,
    })
    .await;
    assert_eq!(own, (conv, "Tom".to_string()));
    let unmuted = expect(&mut tev, "MembersUnshutuped", |e| match e {
        Event::MembersUnshutuped { members, by, .. } => Some((members.clone(), by.clone())),
        _ => None,
    })
    .await;
    assert_eq!(unmuted, (strs(&["Jerry"]), "Tom".to_string()));
    jerry.send_text(conv, "free again").await.unwrap();
    assert!(
        tom.muted_members(conv, 0, None)
            .await
            .unwrap()
            .clients
            .is_empty()
    );
}

#[tokio::test]
async fn a_blocked_client_is_removed_and_cannot_come_back_until_unblocked() {
    let s = TestServer::start().await;
    let (tom, mut tev) = s.connect("Tom").await;
    let (jerry, mut jev) = s.connect("Jerry").await;
    let (spike, mut sev) = s.connect("Spike").await;
    let (tyke, _yev) = s.connect("Tyke").await;
    let conv = tom
        .create_conversation(group(&["Jerry", "Spike"]))
        .await
        .unwrap()
        .id;

    // A plain member may not block; blocking an outsider is allowed.
    assert_eq!(
        code_of(spike.block_members(conv, strs(&["Jerry"])).await),
        4324
    );
    let r = tom
        .block_members(conv, strs(&["Jerry", "Tyke", "Tom"]))
        .await
        .unwrap();
    assert_eq!(r.allowed, strs(&["Jerry", "Tyke"]));
    assert_eq!(r.failure_of("Tom"), Some(4308));

    // Jerry hears Kicked then Blocked; the others MembersLeft then MembersBlocked.
    let kicked = expect(&mut jev, "Kicked", |e| match e {
        Event::Kicked { conv: c, by } => Some((*c, by.clone())),
        _ => None,
    })
    .await;
    assert_eq!(kicked, (conv, "Tom".to_string()));
    let blocked = expect(&mut jev, "Blocked", |e| match e {
        Event::Blocked { conv: c, by } => Some((*c, by.clone())),
        _ => None,
    })
    .await;
    assert_eq!(blocked, (conv, "Tom".to_string()));
    for ev in [&mut tev, &mut sev] {
        let left = expect(ev, "MembersLeft", |e| match e {
            Event::MembersLeft { members, by, .. } => Some((members.clone(), by.clone())),
            _ => None,
        })
        .await;
        assert_eq!(left, (strs(&["Jerry"]), "Tom".to_string()));
        let all = expect(ev, "MembersBlocked", |e| match e {
            Event::MembersBlocked { members, by, .. } => Some((members.clone(), by.clone())),
            _ => None,
        })
        .await;
        assert_eq!(all, (strs(&["Jerry", "Tyke"]), "Tom".to_string()));
    }
    let info = tom.get_conversation(conv).await.unwrap();
    assert_eq!(info.members, strs(&["Spike", "Tom"]));

    // Neither joins nor is added; the blocked may not unblock themselves.
    assert_eq!(code_of(jerry.join(conv).await), 4315);
    assert_eq!(code_of(tyke.join(conv).await), 4315);
    assert_eq!(code_of(tom.add_members(conv, strs(&["Jerry"])).await), 4315);
    assert_eq!(
        code_of(jerry.unblock_members(conv, strs(&["Jerry"])).await),
        4401
    );
    let page = spike.blocked_members(conv, 0, None).await.unwrap();
    assert_eq!((page.clients, page.next), (strs(&["Jerry", "Tyke"]), None));
    assert_eq!(
        tom.check_blocked(conv, strs(&["Spike", "Tyke"]))
            .await
            .unwrap(),
        strs(&["Tyke"])
    );

    let r = tom.unblock_members(conv, strs(&["Jerry"])).await.unwrap();
    assert_eq!(r.allowed, strs(&["Jerry"]));
    let own = expect(&mut jev, "Unblocked", |e| match e {
        Event::Unblocked { conv: c, by } => Some((*c, by.clone())),
        _ => None,
    })
    .await;
    assert_eq!(own, (conv, "Tom".to_string()));
    let all = expect(&mut sev, "MembersUnblocked", |e| match e {
        Event::MembersUnblocked { members, by, .. } => Some((members.clone(), by.clone())),
        _ => None,
    })
    .await;
    assert_eq!(all, (strs(&["Jerry"]), "Tom".to_string()));
    // Unblocking adds nobody back; Jerry may join now, Tyke still not.
    assert!(
        !tom.get_conversation(conv)
            .await
            .unwrap()
            .members
            .contains(&"Jerry".to_string())
    );
    jerry.join(conv).await.unwrap();
    jerry.send_text(conv, "back").await.unwrap();
    assert_eq!(code_of(tyke.join(conv).await), 4315);
}

#[tokio::test]
async fn chat_room_blocks_take_effect_on_who_is_in_the_room() {
    let s = TestServer::start().await;
    let (tom, _tev) = s.connect("Tom").await;
    let (jerry, mut jev) = s.connect("Jerry").await;
    let mut room = group(&[]);
    room.kind = tidings::protocol::ConvKind::ChatRoom;
    let conv = tom.create_conversation(room).await.unwrap().id;
    jerry.join(conv).await.unwrap();
    let r = tom.block_members(conv, strs(&["Jerry"])).await.unwrap();
    assert_eq!(r.allowed, strs(&["Jerry"]));
    expect(&mut jev, "Kicked", |e| {
        matches!(e, Event::Kicked { .. }).then_some(())
    })
    .await;
    assert_eq!(code_of(jerry.join(conv).await), 4315);
    assert_eq!(code_of(jerry.send_text(conv, "hello?").await), 4401);
}

#[tokio::test]
async fn the_owner_makes_a_manager_who_may_mute_members_but_not_managers() {
    let s = TestServer::start().await;
    let (tom, mut tev) = s.connect("Tom").await;
    let (jerry, mut jev) = s.connect("Jerry").await;
    let (spike, mut sev) = s.connect("Spike").await;
    let conv = tom
        .create_conversation(group(&["Jerry", "Spike", "Tyke"]))
        .await
        .unwrap()
        .id;

    // Plain members cannot promote (themselves or anyone); nobody becomes Owner.
    assert_eq!(
        code_of(
            spike
                .set_member_role(conv, "Spike", MemberRole::Manager)
                .await
        ),
        4324
    );
    assert_eq!(
        code_of(tom.set_member_role(conv, "Jerry", MemberRole::Owner).await),
        5130
    );
    assert_eq!(
        code_of(tom.set_member_role(conv, "Tom", MemberRole::Member).await),
        4308
    );
    assert_eq!(
        code_of(spike.mute_members(conv, strs(&["Tyke"])).await),
        4324
    );

    tom.set_member_role(conv, "Jerry", MemberRole::Manager)
        .await
        .unwrap();
    let changed = |e: &Event| match e {
        Event::MemberInfoChanged {
            conv,
            member,
            role,
            by,
        } => Some((*conv, member.clone(), *role, by.clone())),
        _ => None,
    };
    let want = (
        conv,
        "Jerry".to_string(),
        MemberRole::Manager,
        "Tom".to_string(),
    );
    for ev in [&mut tev, &mut jev, &mut sev] {
        assert_eq!(expect(ev, "MemberInfoChanged", changed).await, want);
    }
    let roles: Vec<(String, MemberRole)> = spike
        .member_roles(conv)
        .await
        .unwrap()
        .into_iter()
        .map(|i| (i.client, i.role))
        .collect();
    assert_eq!(
        roles,
        [
            ("Tom".to_string(), MemberRole::Owner),
            ("Jerry".to_string(), MemberRole::Manager),
            ("Spike".to_string(), MemberRole::Member),
            ("Tyke".to_string(), MemberRole::Member),
        ]
    );
    // The same list SetManagers edits.
    assert_eq!(
        tom.get_conversation(conv).await.unwrap().managers,
        strs(&["Jerry"])
    );

    // A manager mutes a member, but neither the owner nor another manager.
    tom.set_member_role(conv, "Tyke", MemberRole::Manager)
        .await
        .unwrap();
    let r = jerry
        .mute_members(conv, strs(&["Spike", "Tom", "Tyke"]))
        .await
        .unwrap();
    assert_eq!(r.allowed, strs(&["Spike"]));
    assert_eq!(r.failure_of("Tom"), Some(4308));
    assert_eq!(r.failure_of("Tyke"), Some(4324));
    assert_eq!(code_of(spike.send_text(conv, "hey").await), 4308);

    // Demoted, Jerry is a plain member again and may not unmute.
    tom.set_member_role(conv, "Jerry", MemberRole::Member)
        .await
        .unwrap();
    let demoted = (
        conv,
        "Jerry".to_string(),
        MemberRole::Member,
        "Tom".to_string(),
    );
    loop {
        let got = expect(&mut jev, "MemberInfoChanged", changed).await;
        if got == demoted {
            break;
        }
    }
    assert_eq!(
        code_of(jerry.unmute_members(conv, strs(&["Spike"])).await),
        4324
    );
    tom.unmute_members(conv, strs(&["Spike"])).await.unwrap();
    spike.send_text(conv, "thanks").await.unwrap();
}

#[tokio::test]
async fn queries_page_through_long_lists_and_deletion_clears_them() {
    let s = TestServer::start().await;
    let (tom, _tev) = s.connect("Tom").await;
    let (jerry, mut jev) = s.connect("Jerry").await;
    let conv: ConvId = tom.create_conversation(group(&["Jerry"])).await.unwrap().id;
    let outsiders: Vec<String> = (0..25).map(|i| format!("out{i:02}")).collect();
    let r = tom.block_members(conv, outsiders.clone()).await.unwrap();
    assert_eq!(r.allowed, outsiders);

    let mut got = Vec::new();
    let mut next = None;
    let mut pages = 0;
    loop {
        let page = jerry.blocked_members(conv, 10, next).await.unwrap();
        assert!(page.clients.len() <= 10);
        got.extend(page.clients);
        pages += 1;
        next = page.next;
        if next.is_none() {
            break;
        }
    }
    assert_eq!((got, pages), (outsiders, 3));
    // No limit means 10.
    assert_eq!(
        jerry
            .blocked_members(conv, 0, None)
            .await
            .unwrap()
            .clients
            .len(),
        10
    );
    // Bad input is refused whole.
    assert_eq!(code_of(tom.block_members(conv, Vec::new()).await), 4301);
    assert_eq!(code_of(tom.mute_members(conv, strs(&[""])).await), 4301);

    // Nothing moderation-related is left once the conversation is deleted.
    let marker = tom.send_text(conv, "bye").await.unwrap();
    let _ = events_before(&mut jev, &marker.msg_id).await;
    tom.delete_conversation(conv).await.unwrap();
    let store = s.running().hub().store.clone();
    assert!(
        store
            .moderation_lists()
            .unwrap()
            .iter()
            .all(|(c, _, _)| *c != conv)
    );
}
