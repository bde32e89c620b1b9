//! What the blacklist and the shutup list share: the start-up load, a
//! batch change under the conversation's lock (the rules are
//! [`crate::core::moderation`]), pages and checks.
//!
//! Both lists are kept per conversation and client id, apart from
//! membership: a muted member who leaves and rejoins is still muted, and
//! a blocked client stays blocked whether or not it was ever a member
//! (LeanCloud's blacklist keeps outsiders out). Deleting the conversation
//! drops both.

use crate::core::Caller;
use crate::core::conversation::{Conv, ConversationTable};
use crate::core::moderation::{List, Verdict, apply, judge};
use crate::core::validate::{self, err};
use crate::hub::Hub;
use crate::protocol::{ConvId, ConvKind, ErrorBody, ErrorCode, Reply};
use crate::store::{Store, StoreError};
use crate::util::now_ms;

/// Most clients one batch may name (LeanCloud caps its batches too; this
/// bounds the lock hold and the events).
const MAX_BATCH: usize = 100;

/// Fills the loaded conversations' lists from the store. Entries of a
/// conversation that is gone (a crash between its removal and theirs) are
/// left for nobody.
pub(crate) fn load(store: &Store, table: &ConversationTable) -> Result<(), StoreError> {
    for (conv, list, client) in store.moderation_lists()? {
        if let Some(c) = table.get(&conv) {
            c.state.write().moderation.list_mut(list).insert(client);
        }
    }
    Ok(())
}

/// The bad-input checks every batch makes before the conversation is read.
pub(super) fn check_batch(members: &[String]) -> Result<(), ErrorBody> {
    validate::client_ids(members)?;
    if members.is_empty() || members.len() > MAX_BATCH {
        return Err(err(
            ErrorCode::ConvApiFailed,
            format!("name 1 to {MAX_BATCH} clients"),
        ));
    }
    Ok(())
}

/// Judges and applies a batch under the conversation's write lock, and
/// persists what changed; returns the verdict and who changed. A failed
/// write is undone in memory, so memory never claims what the disk lacks.
pub(super) fn change(
    hub: &Hub,
    caller: &Caller,
    c: &Conv,
    list: List,
    targets: &[String],
    on: bool,
) -> Result<(Verdict, Vec<String>), ErrorBody> {
    let mut st = c.state.write();
    let verdict = judge(&st, &caller.client, list, targets)?;
    let changed = apply(&mut st.moderation, list, &verdict.allowed, on);
    if changed.is_empty() {
        return Ok((verdict, changed));
    }
    let written = if on {
        hub.store.put_moderation(c.id, list, &changed, now_ms())
    } else {
        hub.store.remove_moderation(c.id, list, &changed)
    };
    if let Err(e) = written {
        apply(&mut st.moderation, list, &changed, !on);
        return Err(e.into());
    }
    Ok((verdict, changed))
}

/// The partial answer of a batch.
pub(super) fn partial(v: Verdict) -> Reply {
    Reply::Partial {
        allowed: v.allowed,
        failed: v.failed,
    }
}

/// Who may read a conversation's lists: its members (anyone, for a chat
/// room, whose members come and go).
fn readable(hub: &Hub, caller: &Caller, conv: ConvId) -> Result<std::sync::Arc<Conv>, ErrorBody> {
    let c = hub.convs.live(conv)?;
    {
        let st = c.state.read();
        if st.rec.kind != ConvKind::ChatRoom && !st.is_member(&caller.client) {
            return Err(super::not_member(conv));
        }
    }
    Ok(c)
}

/// A page of `list` (LeanCloud's `query_shutup` / `blacklist/query`).
pub fn page(
    hub: &Hub,
    caller: &Caller,
    conv: ConvId,
    list: List,
    limit: u32,
    next: Option<String>,
) -> Result<Reply, ErrorBody> {
    let c = readable(hub, caller, conv)?;
    let (clients, next) = c.state.read().moderation.page(list, next.as_deref(), limit);
    Ok(Reply::Clients { clients, next })
}

/// Which of `members` are on `list` (`check_shutup` / `check_block`).
pub fn check(
    hub: &Hub,
    caller: &Caller,
    conv: ConvId,
    list: List,
    members: &[String],
) -> Result<Reply, ErrorBody> {
    check_batch(members)?;
    let c = readable(hub, caller, conv)?;
    let clients = c.state.read().moderation.which(list, members);
    Ok(Reply::Clients {
        clients,
        next: None,
    })
}
