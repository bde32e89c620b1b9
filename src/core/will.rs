//! The will table: which parked message goes out when a connection drops.
//!
//! One will per client, the latest wins, whichever of its connections set
//! it. When a connection drops without a logout, its client's will goes
//! out only if that very connection set it: a will set from the phone is
//! not sent because the laptop's connection died. A logout takes the
//! connection's will without sending it; an explicit clear drops the
//! client's will whoever set it. Sending is the caller's (`message::will`).

use std::collections::HashMap;

use parking_lot::Mutex;

use super::Caller;
use crate::protocol::{ConvId, Message};

/// A parked message and who parked it.
#[derive(Debug, Clone)]
pub struct Will {
    pub caller: Caller,
    pub conv: ConvId,
    pub msg: Message,
    pub to_peers: Option<Vec<String>>,
}

/// Wills by client.
#[derive(Default)]
pub struct Wills {
    by_client: Mutex<HashMap<String, Will>>,
}

impl Wills {
    pub fn new() -> Self {
        Self::default()
    }

    /// Parks `will` as its client's, replacing any earlier one.
    pub fn set(&self, will: Will) {
        self.by_client
            .lock()
            .insert(will.caller.client.clone(), will);
    }

    /// Drops `client`'s will, whichever of its connections set it.
    pub fn clear(&self, client: &str) {
        self.by_client.lock().remove(client);
    }

    /// Takes the will that connection `caller` set, if it is still the
    /// client's: what a dropped connection sends, or a logout discards.
    pub fn take(&self, caller: &Caller) -> Option<Will> {
        let mut wills = self.by_client.lock();
        match wills.get(&caller.client) {
            Some(w) if w.caller.conn_id == caller.conn_id => wills.remove(&caller.client),
            _ => None,
        }
    }

    pub fn len(&self) -> usize {
        self.by_client.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Content;

    fn caller(client: &str, conn_id: u64) -> Caller {
        Caller {
            client: client.into(),
            device_id: format!("dev{conn_id}"),
            conn_id,
            ip: "::1".into(),
        }
    }

    fn will(client: &str, conn_id: u64, text: &str) -> Will {
        let conv = ConvId([1; 12]);
        Will {
            caller: caller(client, conn_id),
            conv,
            msg: Message::new(conv, 0, client, 1, Content::Text(text.into())),
            to_peers: None,
        }
    }

    fn text(w: &Will) -> &str {
        match &w.msg.content {
            Content::Text(t) => t,
            Content::Binary(_) => "",
        }
    }

    #[test]
    fn one_will_per_client_and_the_latest_wins() {
        let t = Wills::new();
        t.set(will("Tom", 1, "first"));
        t.set(will("Tom", 1, "second"));
        t.set(will("Jerry", 5, "other"));
        assert_eq!(t.len(), 2);
        let w = t.take(&caller("Tom", 1)).expect("Tom's will");
        assert_eq!(text(&w), "second");
        assert!(t.take(&caller("Tom", 1)).is_none(), "taken once");
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn a_drop_takes_only_the_will_its_own_connection_set() {
        let t = Wills::new();
        t.set(will("Tom", 1, "from the phone"));
        // The laptop's connection drops: the phone's will stays.
        assert!(t.take(&caller("Tom", 2)).is_none());
        // The laptop sets one: it replaces the phone's, and now only the
        // laptop's drop sends it.
        t.set(will("Tom", 2, "from the laptop"));
        assert!(t.take(&caller("Tom", 1)).is_none());
        assert_eq!(
            text(&t.take(&caller("Tom", 2)).expect("laptop's")),
            "from the laptop"
        );
        assert!(t.is_empty());
    }

    #[test]
    fn clear_drops_the_will_whoever_set_it() {
        let t = Wills::new();
        t.set(will("Tom", 1, "w"));
        t.clear("Jerry");
        assert_eq!(t.len(), 1, "another client's clear leaves it");
        t.clear("Tom");
        assert!(t.take(&caller("Tom", 1)).is_none());
    }
}
