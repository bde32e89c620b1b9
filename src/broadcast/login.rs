//! The broadcasts a client missed, read once per login.

use super::AT_LOGIN_MAX;
use crate::core::outbound::BroadcastFrame;
use crate::hub::Hub;
use crate::metrics::METRICS;
use crate::protocol::{ConvId, Event};
use crate::store::StoreError;
use crate::store::system::BroadcastRecord;
use crate::util::now_ms;

fn subscribed(hub: &Hub, conv: ConvId, client: &str) -> bool {
    hub.convs
        .live(conv)
        .is_ok_and(|c| c.state.read().is_member(client))
}

/// What a login reads of the broadcasts: the ones `client` missed,
/// oldest first, as `Message` events flagged `redelivered`, and where its
/// cursor stands. Nothing is written: the cursor moves as the client
/// acknowledges them.
#[derive(Debug, Default)]
pub struct AtLogin {
    pub frames: Vec<BroadcastFrame>,
    /// The stored cursor; `None`: never seen.
    pub cursor: Option<u64>,
    /// The newest broadcast looked at, meant for the client or not.
    pub looked_at: Option<u64>,
}

/// Called once per login, after the offline sync. The session drops a
/// live copy of one of these that the fan-out hands over after the login
/// read the store. Store failures are logged: a login does not fail for
/// them, and the cursor stays, so they come at the next one.
pub fn at_login(hub: &Hub, client: &str) -> Result<AtLogin, StoreError> {
    let got = missed(hub, client)?;
    METRICS.broadcast_delivered(got.frames.len() as u64);
    Ok(got)
}

fn missed(hub: &Hub, client: &str) -> Result<AtLogin, StoreError> {
    let store = &hub.store;
    let now = now_ms();
    let applies = |r: &BroadcastRecord| {
        r.valid_till > now
            && r.from != client
            && (!r.subscribers_only || subscribed(hub, r.conv, client))
    };
    let cursor = store.broadcast_cursor(client)?;
    // Never seen: only the newest broadcast meant for it.
    let wanted = if cursor.is_some() { AT_LOGIN_MAX } else { 1 };
    let mut looked_at = None;
    let mut due = Vec::new();
    for item in store.broadcasts_newest_first(cursor.unwrap_or(0)) {
        let (id, r) = item?;
        looked_at = looked_at.max(Some(id));
        if applies(&r) {
            due.push((id, r));
            if due.len() == wanted {
                break;
            }
        }
    }
    let mut frames = Vec::with_capacity(due.len());
    for (id, r) in due.into_iter().rev() {
        let Some(e) = store.message(r.conv, r.seq)? else {
            continue;
        };
        if e.deleted {
            continue;
        }
        if let Some(frame) = crate::wire::frame::event(Event::Message {
            msg: e.msg.for_receiver(client),
            redelivered: true,
            chat_room: false,
        }) {
            frames.push(BroadcastFrame {
                id,
                conv: r.conv,
                seq: r.seq,
                frame,
            });
        }
    }
    Ok(AtLogin {
        frames,
        cursor,
        looked_at,
    })
}
