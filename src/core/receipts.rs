//! The rules of delivery and read receipts, as decisions with no I/O:
//! who may ask for one, when a stored receipt time is news, and whether the
//! sender hears it now or is owed it for its next login. The store side
//! (raising the stored times, the owed list) is `message::receipts`.
//!
//! Like LeanCloud, a receipt is a time, not a message: the sender learns
//! `lastDeliveredAt` / `lastReadAt`, and every message it sent up to then
//! is delivered / read.

use crate::core::conversation::ConvState;
use crate::protocol::{ConvId, ConvKind, Event};

/// Receipts exist only between two members (LeanCloud's rule).
pub fn between_two(st: &ConvState) -> bool {
    st.audience_len() <= 2
}

/// Whether a message sent with `asked` carries the receipt flag.
pub fn wanted(asked: bool, st: &ConvState) -> bool {
    asked && between_two(st)
}

/// Whether reading in this conversation can owe anyone a read receipt:
/// only a normal conversation of two.
pub fn read_counts(st: &ConvState) -> bool {
    st.rec.kind == ConvKind::Normal && between_two(st)
}

/// Which receipt time moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Delivered,
    Read,
}

/// What to do with a receipt once the stored time was raised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Nothing new: an earlier receipt already covered a later message.
    Nothing,
    /// The sender has a device online: send it [`event`] now.
    Tell,
    /// The sender is offline: owe it; it comes at the next login.
    Owe,
}

/// `reader` reached time `at` in `conv`; the store, raising only, now
/// holds `stored`. Only a raise to exactly `at` is news (raise-only: a
/// lower or equal time is old news). `sender_online` is asked only then.
pub fn decide(at: u64, stored: u64, sender_online: impl FnOnce() -> bool) -> Decision {
    if stored != at {
        Decision::Nothing
    } else if sender_online() {
        Decision::Tell
    } else {
        Decision::Owe
    }
}

/// The event that tells a sender `reader` reached `at`.
pub fn event(kind: Kind, conv: ConvId, reader: &str, at: u64) -> Event {
    let by = reader.to_owned();
    match kind {
        Kind::Delivered => Event::LastDeliveredAt { conv, by, at },
        Kind::Read => Event::LastReadAt { conv, by, at },
    }
}

/// The events an owed receipt becomes at login: `by`'s stored times, each
/// one only if it was ever set.
pub fn owed_events(conv: ConvId, by: &str, delivered: u64, read: u64) -> Vec<Event> {
    let mut out = Vec::with_capacity(2);
    if delivered > 0 {
        out.push(Event::LastDeliveredAt {
            conv,
            by: by.to_owned(),
            at: delivered,
        });
    }
    if read > 0 {
        out.push(Event::LastReadAt {
            conv,
            by: by.to_owned(),
            at: read,
        });
    }
    out
}

/// The answer to a receipts query: the latest times over the other
/// members, `None` where none was ever set.
pub fn latest(times: impl IntoIterator<Item = (u64, u64)>) -> (Option<u64>, Option<u64>) {
    let (d, r) = times
        .into_iter()
        .fold((0, 0), |(d, r), (d2, r2)| (d.max(d2), r.max(r2)));
    ((d > 0).then_some(d), (r > 0).then_some(r))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::conversation::Conv;
    use crate::core::conversation::test_record;

    fn conv(kind: ConvKind, members: &[&str]) -> Conv {
        Conv::new(test_record(ConvId([7; 12]), kind, members), 0, 0)
    }

    #[test]
    fn only_two_members_get_receipts() {
        let two = conv(ConvKind::Normal, &["a", "b"]);
        let three = conv(ConvKind::Normal, &["a", "b", "c"]);
        assert!(wanted(true, &two.state.read()));
        assert!(!wanted(false, &two.state.read()));
        assert!(!wanted(true, &three.state.read()));
        assert!(read_counts(&two.state.read()));
        assert!(!read_counts(&three.state.read()));
    }

    #[test]
    fn a_chat_room_counts_who_is_in_it_and_never_owes_read_receipts() {
        let room = conv(ConvKind::ChatRoom, &[]);
        room.state.write().room.extend(["a".into(), "b".into()]);
        assert!(wanted(true, &room.state.read()));
        assert!(!read_counts(&room.state.read()));
        room.state.write().room.insert("c".into());
        assert!(!wanted(true, &room.state.read()));
    }

    #[test]
    fn raise_only_a_move_to_exactly_at_is_news() {
        let never = || -> bool { panic!("asked who is online for old news") };
        assert_eq!(decide(100, 200, never), Decision::Nothing);
        assert_eq!(decide(200, 200, || true), Decision::Tell);
        let c = ConvId([1; 12]);
        assert_eq!(
            event(Kind::Delivered, c, "b", 200),
            Event::LastDeliveredAt {
                conv: c,
                by: "b".into(),
                at: 200
            }
        );
        assert_eq!(
            event(Kind::Read, c, "b", 200),
            Event::LastReadAt {
                conv: c,
                by: "b".into(),
                at: 200
            }
        );
    }

    #[test]
    fn an_offline_sender_is_owed_and_gets_what_was_set_at_login() {
        let c = ConvId([1; 12]);
        assert_eq!(decide(5, 5, || false), Decision::Owe);
        assert_eq!(owed_events(c, "b", 0, 0), Vec::<Event>::new());
        assert_eq!(
            owed_events(c, "b", 3, 0),
            vec![Event::LastDeliveredAt {
                conv: c,
                by: "b".into(),
                at: 3
            }]
        );
        assert_eq!(owed_events(c, "b", 3, 2).len(), 2);
    }

    #[test]
    fn the_query_answers_the_latest_times() {
        assert_eq!(latest([]), (None, None));
        assert_eq!(latest([(0, 0)]), (None, None));
        assert_eq!(latest([(3, 0), (5, 1)]), (Some(5), Some(1)));
    }
}
