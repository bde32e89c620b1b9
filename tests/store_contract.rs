//! The store contract: what every storage backend must do, written once
//! against the traits of `tidings::store::api` and run here against sled.
//! A second backend runs the same functions: add its constructor next to
//! [`sled`] and a line per test to `against!`.

use tidings::protocol::{Content, ConvId, ConvKind, Message};
use tidings::store::api::{Head, LogBatch};
use tidings::store::{
    Backend, BroadcastRecord, ConversationRecord, DeadLetter, LogEntry, ModerationList,
    OutboxRecord, SentRecord, Store, StoreError, TokenRecord,
};

/// A fresh sled store in its own directory (kept alive alongside it).
fn sled() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), 8 << 20, false).expect("open");
    (dir, store)
}

/// One `#[test]` per contract function, each on a fresh sled store.
macro_rules! against {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                let (_dir, store) = sled();
                contract::$name(&store);
            }
        )*
    };
}

against!(
    append_and_read_back,
    rewrites_move_the_patch_index,
    gaps_and_repeats_are_refused,
    a_moved_head_is_refused_whole,
    racing_writers_never_share_a_seq,
    tokens_are_idempotent,
    conversations_unique_claims_and_memberships,
    cursors_only_rise,
    receipts_only_rise_and_owed_ones_are_taken_once,
    outbox_claim_ack_and_dead_letters,
    broadcasts_expire_by_ttl,
    webhook_queue_and_delivery_times,
    moderation_lists_per_conversation,
);

/// The sled `Store` keeps heads in memory; a write through its older,
/// unchecked path must keep them right.
#[test]
fn sled_unchecked_writes_keep_the_heads_in_step() {
    let (_dir, s) = sled();
    let c = ConvId([9; 12]);
    contract::append_n(&s, c, 0, 2);
    s.write_unsynced(&[contract::entry(c, 3, 3)], &[], &[], &[])
        .expect("unchecked write");
    assert_eq!(Backend::sync(&s).ok(), Some(()));
    contract::append_n(&s, c, 3, 1);
    assert_eq!(tidings::store::MessageLog::last_seq(&s, c).unwrap(), 4);
    // A removed log starts again from 0.
    s.remove_log(c).unwrap();
    contract::append_n(&s, c, 0, 1);
}

mod contract {
    use super::*;

    pub fn conv(b: u8) -> ConvId {
        ConvId([b; 12])
    }

    pub fn entry(c: ConvId, seq: u64, ts: u64) -> LogEntry {
        LogEntry::new(
            Message {
                msg_id: tidings::protocol::msg_id(c, seq),
                ..Message::new(c, seq, "Tom", ts, Content::Text(format!("m{seq}")))
            },
            "phone",
            "127.0.0.1",
        )
    }

    fn batch<'a>(heads: &'a [Head], entries: &'a [LogEntry]) -> LogBatch<'a> {
        LogBatch {
            heads,
            entries,
            tokens: &[],
            stale_patches: &[],
            for_webhook: &[],
        }
    }

    /// Appends `n` messages to `c` after `last`.
    pub fn append_n<B: Backend>(b: &B, c: ConvId, last: u64, n: u64) {
        let entries: Vec<_> = (last + 1..=last + n).map(|s| entry(c, s, s)).collect();
        let heads = [Head {
            conv: c,
            last_seq: last,
        }];
        b.append(&batch(&heads, &entries)).expect("append");
    }

    fn seqs(v: &[LogEntry]) -> Vec<u64> {
        v.iter().map(|e| e.msg.seq).collect()
    }

    pub fn append_and_read_back<B: Backend>(b: &B) {
        let (x, y) = (conv(1), conv(2));
        assert_eq!(b.last_seq(x).unwrap(), 0);
        assert_eq!(b.last_message(x).unwrap(), None);
        // Two conversations in one batch.
        let mut entries: Vec<_> = (1..=5).map(|s| entry(x, s, 100 + s * 10)).collect();
        entries.push(entry(y, 1, 7));
        let heads = [
            Head {
                conv: x,
                last_seq: 0,
            },
            Head {
                conv: y,
                last_seq: 0,
            },
        ];
        b.append(&batch(&heads, &entries)).unwrap();
        assert_eq!(b.last_seq(x).unwrap(), 5);
        assert_eq!(b.last_seq(y).unwrap(), 1);
        assert_eq!(b.message(x, 3).unwrap(), Some(entry(x, 3, 130)));
        assert_eq!(b.message(x, 6).unwrap(), None);
        assert_eq!(b.last_message(x).unwrap(), Some(entry(x, 5, 150)));
        assert_eq!(seqs(&b.messages(x, 1, 5, 2, true).unwrap()), [4, 5]);
        assert_eq!(seqs(&b.messages(x, 2, 5, 2, false).unwrap()), [2, 3]);
        assert!(b.messages(x, 4, 3, 10, false).unwrap().is_empty());
        let (page, cut) = b
            .messages_where(x, (1, 5), 2, true, 100, &mut |e| e.msg.seq != 4)
            .unwrap();
        assert_eq!((seqs(&page), cut), (vec![3, 5], false));
        let (page, cut) = b
            .messages_where(x, (1, 5), 10, false, 2, &mut |_| true)
            .unwrap();
        assert_eq!((page.len(), cut), (2, true));
        assert_eq!(b.seq_at_or_after(x, 135, 5).unwrap(), 4);
        assert_eq!(b.seq_at_or_after(x, 0, 5).unwrap(), 1);
        assert_eq!(b.seq_at_or_after(x, 10_000, 5).unwrap(), 6);
        // Then on from the new head.
        append_n(b, x, 5, 2);
        assert_eq!(
            seqs(&b.messages(x, 1, u64::MAX, 100, false).unwrap()),
            [1, 2, 3, 4, 5, 6, 7]
        );
        assert_eq!(b.remove_log(y).unwrap(), 1);
        assert_eq!(b.last_seq(y).unwrap(), 0);
        assert_eq!(b.last_seq(x).unwrap(), 7);
    }

    pub fn rewrites_move_the_patch_index<B: Backend>(b: &B) {
        let (x, y) = (conv(1), conv(2));
        append_n(b, x, 0, 3);
        append_n(b, y, 0, 1);
        // A rewrite needs no head: its seq is not above the log's.
        let mut e = b.message(x, 2).unwrap().unwrap();
        e.msg.updated_at = Some(100);
        b.append(&batch(&[], std::slice::from_ref(&e))).unwrap();
        e.msg.updated_at = Some(200);
        e.msg.content = Content::Text("edited".into());
        b.append(&LogBatch {
            stale_patches: &[(100, x, 2)],
            ..batch(&[], std::slice::from_ref(&e))
        })
        .unwrap();
        let mut d = b.message(y, 1).unwrap().unwrap();
        d.deleted = true;
        d.msg.updated_at = Some(150);
        // A rewrite and a new message of the same conversation together.
        let both = [d, entry(y, 2, 2)];
        b.append(&batch(
            &[Head {
                conv: y,
                last_seq: 1,
            }],
            &both,
        ))
        .unwrap();
        assert_eq!(b.patches_since(0, 10).unwrap(), [(150, y, 1), (200, x, 2)]);
        assert_eq!(b.patches_since(150, 10).unwrap(), [(200, x, 2)]);
        assert!(b.patches_since(200, 10).unwrap().is_empty());
        assert!(b.patches_since(u64::MAX, 10).unwrap().is_empty());
        assert_eq!(
            b.message(x, 2).unwrap().unwrap().msg.content,
            Content::Text("edited".into())
        );
        assert!(b.message(y, 1).unwrap().unwrap().deleted);
        assert_eq!(b.last_seq(y).unwrap(), 2);
        assert_eq!(b.last_seq(x).unwrap(), 3, "a rewrite moves no head");
    }

    pub fn gaps_and_repeats_are_refused<B: Backend>(b: &B) {
        let x = conv(1);
        append_n(b, x, 0, 2);
        let h = [Head {
            conv: x,
            last_seq: 2,
        }];
        let gap = |got: u64, want: u64| {
            move |r: Result<(), StoreError>| match r {
                Err(StoreError::SeqGap {
                    conv,
                    want: w,
                    got: g,
                }) => {
                    assert_eq!((conv, w, g), (x, want, got));
                }
                other => panic!("want SeqGap, got {other:?}"),
            }
        };
        // Skipping seq 3.
        gap(4, 3)(b.append(&batch(&h, &[entry(x, 4, 4)])));
        // A repeat within the batch.
        gap(3, 4)(b.append(&batch(&h, &[entry(x, 3, 3), entry(x, 3, 3)])));
        // Out of order.
        gap(4, 3)(b.append(&batch(&h, &[entry(x, 4, 4), entry(x, 3, 3)])));
        // A new message without a head.
        gap(3, 3)(b.append(&batch(&[], &[entry(x, 3, 3)])));
        // Seq 0 never exists.
        gap(0, 3)(b.append(&batch(&[], &[entry(x, 0, 0)])));
        // Nothing of a refused batch was written.
        assert_eq!(b.last_seq(x).unwrap(), 2);
        assert_eq!(b.message(x, 3).unwrap(), None);
        assert_eq!(b.message(x, 4).unwrap(), None);
        append_n(b, x, 2, 1);
    }

    pub fn a_moved_head_is_refused_whole<B: Backend>(b: &B) {
        let (x, y) = (conv(1), conv(2));
        append_n(b, x, 0, 1);
        // Planned from 0 for both, but x is at 1: nothing of y goes in either.
        let entries = [entry(x, 1, 1), entry(y, 1, 1)];
        let heads = [
            Head {
                conv: x,
                last_seq: 0,
            },
            Head {
                conv: y,
                last_seq: 0,
            },
        ];
        match b.append(&batch(&heads, &entries)) {
            Err(StoreError::SeqMoved {
                conv,
                expected,
                found,
            }) => assert_eq!((conv, expected, found), (x, 0, 1)),
            other => panic!("want SeqMoved, got {other:?}"),
        }
        assert!(
            !StoreError::SeqMoved {
                conv: x,
                expected: 0,
                found: 1
            }
            .is_damage()
        );
        assert_eq!(b.last_seq(y).unwrap(), 0);
        assert_eq!(b.message(y, 1).unwrap(), None);
        // A head ahead of the log is as wrong as one behind it.
        let ahead = [Head {
            conv: x,
            last_seq: 5,
        }];
        assert!(matches!(
            b.append(&batch(&ahead, &[entry(x, 6, 6)])),
            Err(StoreError::SeqMoved { found: 1, .. })
        ));
    }

    pub fn racing_writers_never_share_a_seq<B: Backend>(b: &B) {
        const WRITERS: u64 = 4;
        const EACH: u64 = 25;
        let x = conv(1);
        std::thread::scope(|s| {
            for w in 0..WRITERS {
                s.spawn(move || {
                    for i in 0..EACH {
                        loop {
                            let last = b.last_seq(x).unwrap();
                            let mut e = entry(x, last + 1, last + 1);
                            e.msg.content = Content::Text(format!("w{w} i{i}"));
                            let heads = [Head {
                                conv: x,
                                last_seq: last,
                            }];
                            match b.append(&batch(&heads, std::slice::from_ref(&e))) {
                                Ok(()) => break,
                                Err(StoreError::SeqMoved { .. }) => continue,
                                Err(e) => panic!("writer {w}: {e}"),
                            }
                        }
                    }
                });
            }
        });
        let all = b.messages(x, 1, u64::MAX, 1000, false).unwrap();
        assert_eq!(seqs(&all), (1..=WRITERS * EACH).collect::<Vec<_>>());
        let mut texts: Vec<_> = all.iter().map(|e| e.msg.content.clone()).collect();
        texts.sort_by_key(|c| format!("{c:?}"));
        texts.dedup();
        assert_eq!(
            texts.len() as u64,
            WRITERS * EACH,
            "every send exactly once"
        );
    }

    pub fn tokens_are_idempotent<B: Backend>(b: &B) {
        let x = conv(1);
        let sent = |seq| SentRecord {
            conv: x,
            msg_id: tidings::protocol::msg_id(x, seq),
            seq,
            timestamp: seq,
        };
        let send = |last: u64| {
            let tokens = [TokenRecord {
                client: "Tom",
                token: "tok",
                sent: sent(last + 1),
            }];
            let heads = [Head {
                conv: x,
                last_seq: last,
            }];
            let entries = [entry(x, last + 1, last + 1)];
            b.append(&LogBatch {
                tokens: &tokens,
                ..batch(&heads, &entries)
            })
        };
        assert_eq!(b.sent_by_token("Tom", "tok").unwrap(), None);
        send(0).unwrap();
        assert_eq!(b.sent_by_token("Tom", "tok").unwrap(), Some(sent(1)));
        // A racing resend planned from the same head cannot also land.
        assert!(matches!(send(0), Err(StoreError::SeqMoved { .. })));
        assert_eq!(b.sent_by_token("Tom", "tok").unwrap(), Some(sent(1)));
        assert_eq!(b.last_seq(x).unwrap(), 1);
        // Tokens belong to their client.
        assert_eq!(b.sent_by_token("Jerry", "tok").unwrap(), None);
        assert_eq!(b.sent_by_token("To", "mtok").unwrap(), None);
    }

    pub fn conversations_unique_claims_and_memberships<B: Backend>(b: &B) {
        let rec = |c: ConvId| ConversationRecord {
            id: c,
            kind: ConvKind::Normal,
            name: Some("n".into()),
            attr: None,
            creator: "Tom".into(),
            members: vec!["Jerry".into(), "Tom".into()],
            managers: Vec::new(),
            muted: Vec::new(),
            unique: true,
            created_at: 1,
            updated_at: 1,
        };
        let (x, y) = (conv(1), conv(2));
        b.put_conversation(&rec(x)).unwrap();
        b.put_conversation(&rec(y)).unwrap();
        let mut all = b.conversations().unwrap();
        all.sort_by_key(|r| r.id.0);
        assert_eq!(all, [rec(x), rec(y)]);
        b.remove_conversation(y).unwrap();
        assert_eq!(b.conversations().unwrap(), [rec(x)]);
        let key = [7u8; 32];
        assert_eq!(b.unique_get(&key).unwrap(), None);
        assert_eq!(b.unique_claim(&key, x).unwrap(), None);
        assert_eq!(
            b.unique_claim(&key, y).unwrap(),
            Some(x),
            "first claim wins"
        );
        assert_eq!(b.unique_get(&key).unwrap(), Some(x));
        b.unique_put(&key, y).unwrap();
        assert_eq!(b.unique_get(&key).unwrap(), Some(y));
        b.unique_remove(&key).unwrap();
        assert_eq!(b.unique_get(&key).unwrap(), None);
        b.add_membership("Tom", x).unwrap();
        b.add_membership("Tom", y).unwrap();
        b.add_membership("Tom", y).unwrap();
        let mut of = b.memberships_of("Tom").unwrap();
        of.sort_by_key(|c| c.0);
        assert_eq!(of, [x, y]);
        assert!(b.memberships_of("To").unwrap().is_empty());
        assert_eq!(b.membership_count("Tom", 10).unwrap(), 2);
        assert_eq!(b.membership_count("Tom", 1).unwrap(), 1);
        b.remove_membership("Tom", x).unwrap();
        assert_eq!(b.memberships_of("Tom").unwrap(), [y]);
        // Subscriptions page by client id and keep the first time.
        for (i, c) in ["carol", "alice", "bob"].iter().enumerate() {
            b.put_subscription(x, c, i as u64).unwrap();
        }
        b.put_subscription(x, "alice", 99).unwrap();
        assert_eq!(
            b.subscriptions(x, None, 10).unwrap(),
            [
                ("alice".to_owned(), 1),
                ("bob".to_owned(), 2),
                ("carol".to_owned(), 0)
            ]
        );
        assert_eq!(
            b.subscriptions(x, Some("alice"), 1).unwrap(),
            [("bob".to_owned(), 2)]
        );
        b.remove_subscription(x, "bob").unwrap();
        assert_eq!(b.subscriptions(x, Some("alice"), 1).unwrap()[0].0, "carol");
    }

    /// Blacklists and shutup lists: per conversation and list, loaded back
    /// whole, removed with their conversation.
    pub fn moderation_lists_per_conversation<B: Backend>(b: &B) {
        let (x, y) = (conv(1), conv(2));
        let ids = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        b.put_moderation(x, ModerationList::Blocked, &ids(&["eve", "mallory"]), 1)
            .unwrap();
        b.put_moderation(x, ModerationList::Shutup, &ids(&["bob"]), 1)
            .unwrap();
        b.put_moderation(y, ModerationList::Blocked, &ids(&["eve"]), 1)
            .unwrap();
        b.remove_moderation(x, ModerationList::Blocked, &ids(&["mallory"]))
            .unwrap();
        let mut all = b.moderation_lists().unwrap();
        all.sort_by(|p, q| (p.0, p.2.as_str()).cmp(&(q.0, q.2.as_str())));
        assert_eq!(
            all,
            [
                (x, ModerationList::Shutup, "bob".to_owned()),
                (x, ModerationList::Blocked, "eve".to_owned()),
                (y, ModerationList::Blocked, "eve".to_owned()),
            ]
        );
        b.remove_moderation_of(x).unwrap();
        assert_eq!(
            b.moderation_lists().unwrap(),
            [(y, ModerationList::Blocked, "eve".to_owned())]
        );
    }

    pub fn cursors_only_rise<B: Backend>(b: &B) {
        let x = conv(1);
        assert_eq!(b.read_cursor("Tom", x).unwrap(), 0);
        b.set_read_cursor("Tom", x, 5).unwrap();
        b.set_read_cursor("Tom", x, 3).unwrap();
        assert_eq!(b.read_cursor("Tom", x).unwrap(), 5);
        assert_eq!(b.read_cursor("Jerry", x).unwrap(), 0);
        assert_eq!(b.device_cursor("Tom", "pc", x).unwrap(), 0);
        b.step_device_cursor("Tom", "pc", x, 2).unwrap();
        assert_eq!(
            b.device_cursor("Tom", "pc", x).unwrap(),
            0,
            "1 not acked yet"
        );
        b.step_device_cursor("Tom", "pc", x, 1).unwrap();
        b.step_device_cursor("Tom", "pc", x, 2).unwrap();
        assert_eq!(b.device_cursor("Tom", "pc", x).unwrap(), 2);
        b.set_device_cursor("Tom", "pc", x, 7).unwrap();
        b.set_device_cursor("Tom", "pc", x, 6).unwrap();
        b.step_device_cursor("Tom", "pc", x, 3).unwrap();
        assert_eq!(b.device_cursor("Tom", "pc", x).unwrap(), 7);
        assert_eq!(b.device_cursor("Tom", "phone", x).unwrap(), 0);
        assert_eq!(b.patch_cursor("Tom", "pc").unwrap(), None);
        b.set_patch_cursor("Tom", "pc", 42).unwrap();
        b.set_patch_cursor("Tom", "pc", 41).unwrap();
        assert_eq!(b.patch_cursor("Tom", "pc").unwrap(), Some(42));
    }

    pub fn receipts_only_rise_and_owed_ones_are_taken_once<B: Backend>(b: &B) {
        let x = conv(1);
        assert_eq!(b.receipt(x, "Jerry").unwrap(), (0, 0));
        assert_eq!(
            b.raise_receipt(x, "Jerry", Some(10), None).unwrap(),
            (10, 0)
        );
        assert_eq!(
            b.raise_receipt(x, "Jerry", Some(5), Some(7)).unwrap(),
            (10, 7)
        );
        assert_eq!(b.receipt(x, "Jerry").unwrap(), (10, 7));
        assert_eq!(b.receipt(x, "Jerr").unwrap(), (0, 0));
        b.owe_receipt("Tom", x).unwrap();
        b.owe_receipt("Tom", x).unwrap();
        assert_eq!(b.take_owed_receipts("Tom").unwrap(), [x]);
        assert!(b.take_owed_receipts("Tom").unwrap().is_empty());
    }

    fn outbox_rec(n: u32) -> OutboxRecord {
        OutboxRecord {
            hook: "_messageSent".into(),
            params: format!(r#"{{"n":{n}}}"#),
            order_key: format!("conv{}", n % 2),
            enqueued_at: 1000 + u64::from(n),
        }
    }

    pub fn outbox_claim_ack_and_dead_letters<B: Backend>(b: &B) {
        assert_eq!(b.outbox_len(), 0);
        assert!(b.outbox_peek(10).unwrap().is_empty());
        let ids: Vec<u64> = (0..4)
            .map(|n| b.outbox_push(&outbox_rec(n)).unwrap())
            .collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
        assert_eq!(b.outbox_len(), 4);
        // Claimed oldest first, then on from the last one seen.
        assert_eq!(
            b.outbox_peek(2).unwrap(),
            [(ids[0], outbox_rec(0)), (ids[1], outbox_rec(1))]
        );
        let rest: Vec<u64> = b
            .outbox_peek_after(ids[1], 10)
            .unwrap()
            .iter()
            .map(|r| r.0)
            .collect();
        assert_eq!(rest, ids[2..]);
        assert!(b.outbox_peek_after(u64::MAX, 10).unwrap().is_empty());
        // Acked once.
        assert!(b.outbox_remove(ids[0]).unwrap());
        assert!(!b.outbox_remove(ids[0]).unwrap());
        assert_eq!(b.outbox_len(), 3);
        // Given up on: moved whole, once.
        let letter = DeadLetter {
            record: outbox_rec(1),
            attempts: 3,
            dead_at: 5000,
            last_error: "HTTP 500".into(),
        };
        assert!(b.outbox_bury(ids[1], &letter).unwrap());
        assert!(!b.outbox_bury(ids[1], &letter).unwrap());
        assert_eq!((b.outbox_len(), b.dead_letters_len()), (2, 1));
        assert_eq!(b.dead_letters(0, 10).unwrap(), [(ids[1], letter.clone())]);
        assert!(b.dead_letters(ids[1], 10).unwrap().is_empty());
        // A retry goes to the end under a new id; ids are never reused.
        let again = b.dead_letter_retry(ids[1]).unwrap().expect("was there");
        assert!(again > ids[3]);
        assert_eq!(b.dead_letter_retry(ids[1]).unwrap(), None);
        assert_eq!(
            b.outbox_peek(10).unwrap().last(),
            Some(&(again, outbox_rec(1)))
        );
        assert!(b.outbox_bury(again, &letter).unwrap());
        assert!(b.dead_letter_purge(again).unwrap());
        assert!(!b.dead_letter_purge(again).unwrap());
        assert_eq!((b.outbox_len(), b.dead_letters_len()), (2, 0));
        assert!(b.outbox_push(&outbox_rec(9)).unwrap() > again);
    }

    fn bc(c: ConvId, seq: u64, valid_till: u64) -> BroadcastRecord {
        BroadcastRecord {
            conv: c,
            seq,
            from: "Bot".into(),
            created_at: 1,
            valid_till,
            subscribers_only: false,
        }
    }

    pub fn broadcasts_expire_by_ttl<B: Backend>(b: &B) {
        let (x, y) = (conv(1), conv(2));
        assert_eq!(b.last_broadcast_id().unwrap(), 0);
        let ids: Vec<u64> = [bc(x, 1, 300), bc(x, 2, 100), bc(y, 1, 200)]
            .iter()
            .map(|r| b.put_broadcast(r).unwrap())
            .collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
        let newest = |after| -> Vec<u64> {
            b.broadcasts_newest_first(after)
                .map(|r| r.unwrap().0)
                .collect()
        };
        assert_eq!(newest(0), [ids[2], ids[1], ids[0]]);
        assert_eq!(newest(ids[0]), [ids[2], ids[1]]);
        assert!(newest(ids[2]).is_empty());
        assert_eq!(b.broadcast_record(ids[2]).unwrap(), Some(bc(y, 1, 200)));
        assert_eq!(b.broadcast_of_message(x, 2).unwrap(), Some(ids[1]));
        assert_eq!(b.broadcast_of_message(y, 2).unwrap(), None);
        // Soonest expired first; valid_till itself counts as expired.
        assert!(b.expired_broadcasts(99, 10).unwrap().is_empty());
        assert_eq!(b.expired_broadcasts(200, 10).unwrap(), [ids[1], ids[2]]);
        assert_eq!(b.expired_broadcasts(u64::MAX, 1).unwrap(), [ids[1]]);
        assert!(b.remove_broadcast(ids[2]).unwrap());
        assert!(!b.remove_broadcast(ids[2]).unwrap());
        assert_eq!(b.broadcast_of_message(y, 1).unwrap(), None);
        assert_eq!(b.expired_broadcasts(200, 10).unwrap(), [ids[1]]);
        // The newest went; its id is not handed out again.
        let next = b.put_broadcast(&bc(y, 2, 500)).unwrap();
        assert!(next > ids[2]);
        assert_eq!(b.last_broadcast_id().unwrap(), next);
        // Per-client cursors start absent and only rise.
        assert_eq!(b.broadcast_cursor("Tom").unwrap(), None);
        b.raise_broadcast_cursors(&["Tom", "Jerry"], 5).unwrap();
        b.raise_broadcast_cursors(&["Tom"], 3).unwrap();
        assert_eq!(b.broadcast_cursor("Tom").unwrap(), Some(5));
        assert_eq!(b.broadcast_cursor("Jerry").unwrap(), Some(5));
        assert_eq!(b.broadcast_cursor("Jer").unwrap(), None);
    }

    pub fn webhook_queue_and_delivery_times<B: Backend>(b: &B) {
        let (x, y) = (conv(1), conv(2));
        let entries = [entry(x, 1, 1), entry(y, 1, 1)];
        let heads = [
            Head {
                conv: x,
                last_seq: 0,
            },
            Head {
                conv: y,
                last_seq: 0,
            },
        ];
        b.append(&LogBatch {
            for_webhook: &[(x, 1), (y, 1)],
            ..batch(&heads, &entries)
        })
        .unwrap();
        let mut pending = b.webhook_pending(10).unwrap();
        pending.sort_by_key(|p| p.0.0);
        assert_eq!(pending, [(x, 1), (y, 1)]);
        b.webhook_done(&[(x, 1)]).unwrap();
        assert_eq!(b.webhook_pending(10).unwrap(), [(y, 1)]);
        b.set_sys_acked(&[(x, 1)], 42).unwrap();
        assert_eq!(b.sys_acked(x, 1).unwrap(), Some(42));
        assert_eq!(b.sys_acked(y, 1).unwrap(), None);
        // Deleting a system conversation takes its queue, times and log.
        b.put_subscription(y, "Tom", 1).unwrap();
        b.put_broadcast(&bc(y, 1, 100)).unwrap();
        let rec = ConversationRecord {
            id: y,
            kind: ConvKind::System,
            name: None,
            attr: None,
            creator: String::new(),
            members: vec!["Tom".into()],
            managers: Vec::new(),
            muted: Vec::new(),
            unique: false,
            created_at: 0,
            updated_at: 0,
        };
        b.put_conversation(&rec).unwrap();
        b.remove_system_conversation(&rec).unwrap();
        assert!(b.webhook_pending(10).unwrap().is_empty());
        assert!(b.subscriptions(y, None, 10).unwrap().is_empty());
        assert_eq!(b.broadcast_of_message(y, 1).unwrap(), None);
        assert_eq!(b.message(y, 1).unwrap(), None);
        assert_eq!(b.last_seq(y).unwrap(), 0);
        assert!(b.conversations().unwrap().is_empty());
        assert_eq!(b.sys_acked(x, 1).unwrap(), Some(42));
        b.sync().unwrap();
        b.writable().unwrap();
    }
}
