//! `Delivery` on a virtual clock: `t0 + d` stands for any time, so ack
//! timeouts of seconds run in microseconds.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::*;
use crate::protocol::Content;

const A: ConvId = ConvId([1; 12]);
const B: ConvId = ConvId([2; 12]);
const SEC: Duration = Duration::from_secs(1);
const TIMEOUT: Duration = Duration::from_secs(30);

fn stored(conv: ConvId, seq: u64, receipt_from: Option<&str>) -> StoredFrame {
    StoredFrame {
        conv,
        seq,
        frame: Bytes::from_static(b"frame"),
        receipt: receipt_from.map(|f| Arc::new((f.to_owned(), 1000 + seq))),
        chat_room: false,
    }
}

fn row(conv: ConvId, seq: u64, deleted: bool) -> LogEntry {
    let mut e = LogEntry::new(
        Message::new(
            conv,
            seq,
            "Tom",
            1000 + seq,
            Content::Text(format!("m{seq}")),
        ),
        "phone",
        "127.0.0.1",
    );
    e.deleted = deleted;
    e
}

fn jerry(t0: Instant) -> Delivery {
    Delivery::new(t0, "Jerry", TIMEOUT, MAX_INFLIGHT)
}

#[test]
fn a_chat_rooms_message_is_written_and_never_tracked() {
    let t0 = crate::core::test_origin();
    let mut d = jerry(t0);
    let room = StoredFrame {
        chat_room: true,
        ..stored(A, 1, None)
    };
    assert!(d.handle_stored(t0, &room));
    assert_eq!(d.inflight(), 0);
    assert_eq!(d.poll_timeout(), None, "nothing to send again");
    d.handle_timeout(t0 + TIMEOUT * 2);
    assert_eq!(d.poll_refetch(), None);
}

#[test]
fn an_unacked_message_is_read_again_after_the_ack_timeout() {
    let t0 = crate::core::test_origin();
    let mut d = jerry(t0);
    assert_eq!(
        d.poll_timeout(),
        None,
        "no timer while nothing is in flight"
    );
    assert!(d.handle_stored(t0, &stored(A, 1, None)));
    assert_eq!(d.poll_timeout(), Some(t0 + SEC), "checked every second");
    d.handle_timeout(t0 + TIMEOUT - SEC);
    assert_eq!(d.poll_refetch(), None, "not yet due");
    assert_eq!(d.poll_timeout(), Some(t0 + TIMEOUT), "the next check");
    d.handle_timeout(t0 + TIMEOUT);
    assert_eq!(d.poll_refetch(), Some((A, 1, 1)));
    assert_eq!(d.poll_refetch(), None);
    let again = d.handle_refetched(t0 + TIMEOUT, A, &[row(A, 1, false)]);
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].seq, 1);
    assert_eq!(d.inflight(), 1, "still in flight until acked");
    // Sent again at t0 + 30 s: not due before t0 + 60 s.
    d.handle_timeout(t0 + TIMEOUT + TIMEOUT - SEC);
    assert_eq!(d.poll_refetch(), None);
    d.handle_timeout(t0 + TIMEOUT * 2);
    assert_eq!(d.poll_refetch(), Some((A, 1, 1)));
}

#[test]
fn the_check_does_not_run_before_it_is_due() {
    let t0 = crate::core::test_origin();
    let mut d = Delivery::new(t0, "Jerry", Duration::from_millis(200), MAX_INFLIGHT);
    assert!(d.handle_stored(t0, &stored(A, 1, None)));
    assert_eq!(
        d.poll_timeout(),
        Some(t0 + Duration::from_millis(200)),
        "a short timeout checks more often"
    );
    d.handle_timeout(t0 + Duration::from_millis(199));
    assert_eq!(d.poll_refetch(), None);
    d.handle_timeout(t0 + Duration::from_millis(200));
    assert_eq!(d.poll_refetch(), Some((A, 1, 1)));
}

#[test]
fn only_the_overdue_head_and_what_follows_it_are_sent_again() {
    let t0 = crate::core::test_origin();
    let mut d = jerry(t0);
    assert!(d.handle_stored(t0, &stored(A, 1, None)));
    assert!(d.handle_stored(t0 + SEC * 10, &stored(A, 2, None)));
    assert!(d.handle_stored(t0 + SEC * 20, &stored(B, 5, None)));
    d.handle_timeout(t0 + TIMEOUT);
    // B's head is young: only A is read, the whole unacked range of it.
    assert_eq!(d.poll_refetch(), Some((A, 1, 2)));
    assert_eq!(d.poll_refetch(), None);
    let rows = [row(A, 1, false), row(A, 2, false)];
    let again = d.handle_refetched(t0 + TIMEOUT, A, &rows);
    assert_eq!(
        again.iter().map(|m| m.seq).collect::<Vec<_>>(),
        [1],
        "2 is not overdue yet"
    );
}

#[test]
fn a_message_deleted_or_gone_meanwhile_counts_as_acked() {
    let t0 = crate::core::test_origin();
    let mut d = jerry(t0);
    for seq in 1..=3 {
        assert!(d.handle_stored(t0, &stored(A, seq, None)));
    }
    d.handle_timeout(t0 + TIMEOUT);
    assert_eq!(d.poll_refetch(), Some((A, 1, 3)));
    // 2 was deleted, 3 is not in the log at all.
    let again = d.handle_refetched(t0 + TIMEOUT, A, &[row(A, 1, false), row(A, 2, true)]);
    assert_eq!(again.iter().map(|m| m.seq).collect::<Vec<_>>(), [1]);
    assert_eq!(d.inflight(), 1);
    d.handle_refetched(t0 + TIMEOUT * 2, A, &[]);
    assert_eq!(d.inflight(), 0);
    assert_eq!(d.poll_timeout(), None, "nothing left to wait for");
}

#[test]
fn the_resent_copy_is_marked_for_this_receiver() {
    let t0 = crate::core::test_origin();
    let mut d = jerry(t0);
    assert!(d.handle_stored(t0, &stored(A, 1, None)));
    let mut r = row(A, 1, false);
    r.msg.mention_list = vec!["Jerry".into()];
    d.handle_timeout(t0 + TIMEOUT);
    assert_eq!(d.poll_refetch(), Some((A, 1, 1)));
    let again = d.handle_refetched(t0 + TIMEOUT, A, &[r]);
    assert!(again[0].mentioned);
}

#[test]
fn acks_are_cumulative_and_late_ones_do_no_harm() {
    let t0 = crate::core::test_origin();
    let mut d = jerry(t0);
    for seq in 1..=4 {
        assert!(d.handle_stored(t0, &stored(A, seq, None)));
    }
    assert!(d.handle_stored(t0, &stored(B, 1, None)));
    let acked = d.handle_ack(A, 3, Some(4));
    assert_eq!(
        acked,
        Some(Acked {
            conv: A,
            seq: 3,
            receipt: None
        })
    );
    assert_eq!(d.inflight(), 2, "A 4 and B 1 remain");
    // An older ack arriving after a newer one changes nothing in flight,
    // and still asks for its cursor (the store only raises it).
    assert_eq!(d.handle_ack(A, 2, Some(4)).map(|a| a.seq), Some(2));
    assert_eq!(d.inflight(), 2);
    assert!(d.handle_ack(A, 4, Some(4)).is_some());
    assert!(d.handle_ack(B, 1, Some(1)).is_some());
    assert_eq!(d.inflight(), 0);
    assert_eq!(d.poll_timeout(), None);
}

#[test]
fn an_ack_past_the_log_or_of_a_gone_conversation_is_ignored() {
    let t0 = crate::core::test_origin();
    let mut d = jerry(t0);
    assert!(d.handle_stored(t0, &stored(A, 1, None)));
    assert_eq!(d.handle_ack(A, 9, Some(1)), None, "past the newest seq");
    assert_eq!(d.handle_ack(B, 1, None), None, "gone");
    assert_eq!(d.inflight(), 1);
}

#[test]
fn an_ack_owes_the_newest_receipt_and_never_one_to_myself() {
    let t0 = crate::core::test_origin();
    let mut d = jerry(t0);
    assert!(d.handle_stored(t0, &stored(A, 1, Some("Tom"))));
    assert!(d.handle_stored(t0, &stored(A, 2, Some("Tom"))));
    assert!(d.handle_stored(t0, &stored(A, 3, None)));
    assert!(
        d.handle_stored(t0, &stored(A, 4, Some("Jerry"))),
        "my own, from another device"
    );
    let acked = d.handle_ack(A, 4, Some(4)).expect("acked");
    assert_eq!(acked.receipt.as_deref(), Some(&("Tom".to_owned(), 1002)));
}

#[test]
fn a_seq_the_sync_sent_is_dropped_from_the_live_copy() {
    let t0 = crate::core::test_origin();
    let mut d = jerry(t0);
    d.handle_synced(t0, A, 5, None);
    d.handle_sync_passed(B, 2);
    assert!(!d.handle_stored(t0, &stored(A, 4, None)));
    assert!(!d.handle_stored(t0, &stored(A, 5, None)));
    assert!(
        !d.handle_stored(t0, &stored(B, 2, None)),
        "passed over by the sync"
    );
    assert_eq!(d.inflight(), 1, "only the synced one");
    assert!(d.handle_stored(t0, &stored(A, 6, None)));
    assert!(
        !d.handle_stored(t0, &stored(A, 6, None)),
        "a repeat of a live one"
    );
    assert!(d.handle_stored(t0, &stored(B, 3, None)));
}

#[test]
fn past_the_inflight_cap_messages_are_written_but_left_to_the_next_sync() {
    let t0 = crate::core::test_origin();
    let mut d = Delivery::new(t0, "Jerry", TIMEOUT, 2);
    assert!(d.handle_stored(t0, &stored(A, 1, None)));
    assert!(d.handle_stored(t0, &stored(A, 2, None)));
    assert!(d.handle_stored(t0, &stored(A, 3, None)), "still written");
    assert_eq!(d.inflight(), 2);
    assert!(
        !d.handle_stored(t0, &stored(A, 3, None)),
        "and still deduplicated"
    );
    d.handle_timeout(t0 + TIMEOUT);
    assert_eq!(d.poll_refetch(), Some((A, 1, 2)), "3 is not redelivered");
}

#[test]
fn a_broadcast_sent_at_login_is_skipped_once_from_the_live_fan_out() {
    let t0 = crate::core::test_origin();
    let mut d = jerry(t0);
    let b = |id, seq| BroadcastFrame {
        id,
        conv: A,
        seq,
        frame: Bytes::from_static(b"b"),
    };
    d.handle_login_broadcasts(Some(3), Some(4));
    d.handle_login_broadcast(4, A, 7);
    assert_eq!(
        d.poll_broadcast_cursor(),
        None,
        "4 is unacked: the cursor stays at 3"
    );
    assert!(
        !d.handle_broadcast(&b(4, 7)),
        "the live copy of the login's one"
    );
    assert!(d.handle_broadcast(&b(4, 7)), "but only once");
    assert!(d.handle_broadcast(&b(5, 8)));
    d.handle_broadcast_ack(A, 7);
    assert_eq!(d.poll_broadcast_cursor(), Some(4), "5 is still unacked");
    d.handle_broadcast_ack(A, 8);
    assert_eq!(d.poll_broadcast_cursor(), Some(5));
    assert_eq!(d.poll_broadcast_cursor(), None, "written once");
}
