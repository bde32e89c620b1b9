//! Conversations in memory: the lock-sharded table and the rules of
//! membership and roles. The table is filled from records the caller read
//! (`server` at start-up), so nothing here touches the store.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crossbeam_utils::CachePadded;
use parking_lot::{Mutex, MutexGuard, RwLock};
use sha2::{Digest, Sha256};

use super::moderation::Moderation;
use crate::protocol::{ConvId, ConvKind, ConversationInfo, ErrorBody, ErrorCode};
use crate::store::ConversationRecord;

/// One conversation in memory.
pub struct Conv {
    pub id: ConvId,
    pub state: RwLock<ConvState>,
    /// Highest assigned seq and its timestamp; written only by the commit
    /// pipeline, after the message is durable.
    last_seq: AtomicU64,
    last_ts: AtomicU64,
    /// Set by a conversation delete; the commit thread then refuses writes
    /// from sends that looked the conversation up just before.
    deleted: AtomicBool,
}

pub struct ConvState {
    pub rec: ConversationRecord,
    /// Chat rooms only: who is in the room now.
    pub room: BTreeSet<String>,
    /// Blocked and muted clients; the store's copy is loaded at start-up.
    pub moderation: Moderation,
}

impl ConvState {
    pub fn is_member(&self, client: &str) -> bool {
        match self.rec.kind {
            ConvKind::ChatRoom => self.room.contains(client),
            _ => self
                .rec
                .members
                .binary_search_by(|m| m.as_str().cmp(client))
                .is_ok(),
        }
    }

    pub fn is_admin(&self, client: &str) -> bool {
        self.rec.creator == client || self.rec.managers.iter().any(|m| m == client)
    }

    pub fn audience_len(&self) -> usize {
        match self.rec.kind {
            ConvKind::ChatRoom => self.room.len(),
            _ => self.rec.members.len(),
        }
    }

    /// Who receives this conversation's messages.
    pub fn audience(&self) -> Vec<String> {
        self.present().map(str::to_owned).collect()
    }

    /// Who is in the conversation now: its members, or whoever is in the
    /// room for a chat room. One iterator type for both, so no caller
    /// allocates to read it.
    fn present(&self) -> impl Iterator<Item = &str> {
        let (room, members) = match self.rec.kind {
            ConvKind::ChatRoom => (Some(self.room.iter()), None),
            _ => (None, Some(self.rec.members.iter())),
        };
        room.into_iter()
            .flatten()
            .chain(members.into_iter().flatten())
            .map(String::as_str)
    }
}

/// Who receives a message `from` sent in `st`'s conversation, the sender
/// included (its other devices get a copy): everyone in it (online room
/// members for chat rooms), narrowed by every `to_peers` list a hook or the
/// app chose (`None` narrows nothing). In a system conversation clients
/// write to the app, not to each other: a message reaches only the sender
/// and whom the app named in `to_peers` (the first list).
///
/// The one copy of this rule: stored messages, their patches and unstored
/// ones (transient messages, wills) all reach whom it says.
pub fn audience<'a>(
    st: &'a ConvState,
    from: &'a str,
    to_peers: &[Option<&'a [String]>],
) -> Vec<&'a str> {
    let chosen = |a: &&str| {
        *a == from
            || to_peers
                .iter()
                .all(|tp| tp.is_none_or(|p| p.iter().any(|p| p == a)))
    };
    match st.rec.kind {
        ConvKind::System => std::iter::once(from)
            .chain(
                to_peers
                    .first()
                    .copied()
                    .flatten()
                    .into_iter()
                    .flatten()
                    .map(String::as_str),
            )
            .filter(chosen)
            .collect(),
        ConvKind::ChatRoom | ConvKind::Normal | ConvKind::Temporary => {
            st.present().filter(chosen).collect()
        }
    }
}

/// Who receives an unstored message (a transient message, a will): as
/// [`audience`], except in a system conversation, where it reaches the
/// subscribers (narrowed by `to_peers`, the sender kept if subscribed)
/// rather than whom the app named: the rule unstored messages have always
/// had there, kept apart so that the difference is stated in one place.
pub fn audience_unstored<'a>(
    st: &'a ConvState,
    from: &'a str,
    to_peers: Option<&'a [String]>,
) -> Vec<&'a str> {
    match st.rec.kind {
        ConvKind::System => st
            .present()
            .filter(|a| *a == from || to_peers.is_none_or(|p| p.iter().any(|p| p == a)))
            .collect(),
        ConvKind::ChatRoom | ConvKind::Normal | ConvKind::Temporary => {
            audience(st, from, &[to_peers])
        }
    }
}

impl Conv {
    pub fn new(rec: ConversationRecord, last_seq: u64, last_ts: u64) -> Self {
        Conv {
            id: rec.id,
            state: RwLock::new(ConvState {
                rec,
                room: BTreeSet::new(),
                moderation: Moderation::default(),
            }),
            last_seq: AtomicU64::new(last_seq),
            last_ts: AtomicU64::new(last_ts),
            deleted: AtomicBool::new(false),
        }
    }

    pub fn is_deleted(&self) -> bool {
        self.deleted.load(Ordering::Acquire)
    }

    pub fn mark_deleted(&self) {
        self.deleted.store(true, Ordering::Release);
    }

    pub fn last_seq(&self) -> u64 {
        self.last_seq.load(Ordering::Acquire)
    }

    pub fn last_ts(&self) -> u64 {
        self.last_ts.load(Ordering::Acquire)
    }

    /// Called by the commit pipeline once `seq` is durable.
    pub fn advance(&self, seq: u64, ts: u64) {
        self.last_ts.store(ts, Ordering::Release);
        self.last_seq.store(seq, Ordering::Release);
    }

    pub fn info(&self, caller: &str) -> ConversationInfo {
        let st = self.state.read();
        let r = &st.rec;
        let last_seq = self.last_seq();
        ConversationInfo {
            id: r.id,
            kind: r.kind,
            name: r.name.clone(),
            attr: r.attr.clone(),
            creator: r.creator.clone(),
            members: r.members.clone(),
            managers: r.managers.clone(),
            muted: r.muted.iter().any(|m| m == caller),
            unique: r.unique,
            created_at: r.created_at,
            updated_at: r.updated_at,
            last_message_at: (last_seq > 0).then(|| self.last_ts()),
            last_seq,
        }
    }
}

const SHARDS: usize = 64;

type Shard = RwLock<HashMap<ConvId, Arc<Conv>>>;

/// Conversations by id, sharded so unrelated conversations never share a
/// lock; each shard on its own cache line, or readers on different cores
/// would still fight over the lock words.
pub struct ConversationTable {
    shards: Vec<CachePadded<Shard>>,
    /// Held (never across an await) while creating a unique conversation:
    /// "look the member set up, else insert" must be one step, or two racing
    /// creates of one member set would make two conversations.
    unique: Mutex<()>,
    /// The temporary conversations' ids. Their bytes begin with the mark
    /// and the big-endian expiry, so this set is in expiry order and the
    /// expired ones are a prefix of it.
    temporary: Mutex<BTreeSet<ConvId>>,
    /// The wall clock in Unix ms, by which temporary conversations expire;
    /// passed in so the core reads no clock of its own.
    clock: fn() -> u64,
}

impl ConversationTable {
    pub fn new(clock: fn() -> u64) -> Self {
        ConversationTable {
            clock,
            shards: (0..SHARDS)
                .map(|_| CachePadded::new(RwLock::new(HashMap::new())))
                .collect(),
            unique: Mutex::new(()),
            temporary: Mutex::new(BTreeSet::new()),
        }
    }

    fn shard(&self, id: &ConvId) -> &Shard {
        // Ids are random, so their bytes spread evenly.
        &self.shards[id.0[11] as usize % SHARDS]
    }

    pub fn get(&self, id: &ConvId) -> Option<Arc<Conv>> {
        self.shard(id).read().get(id).cloned()
    }

    /// A conversation that exists and is not deleted, else 4303; 4323 for
    /// a temporary one past its TTL, from then on (the sweeper removes it
    /// later, `conversation::expire`).
    pub fn live(&self, id: ConvId) -> Result<Arc<Conv>, ErrorBody> {
        self.live_at(id, (self.clock)())
    }

    /// [`Self::live`] at `now_ms`.
    pub fn live_at(&self, id: ConvId, now_ms: u64) -> Result<Arc<Conv>, ErrorBody> {
        if id.expired(now_ms) {
            return Err(ErrorBody::new(
                ErrorCode::TemporaryConvExpired,
                format!("temporary conversation {id} has expired"),
            ));
        }
        self.get(&id)
            .filter(|c| !c.is_deleted())
            .ok_or_else(|| ErrorBody::new(ErrorCode::ConvNotFound, format!("no conversation {id}")))
    }

    /// A live conversation of `kind`, else `None`: for callers that serve
    /// one kind only (the admin API's system conversations), to whom every
    /// other conversation does not exist.
    pub fn live_of(&self, id: ConvId, kind: ConvKind) -> Option<Arc<Conv>> {
        self.live(id)
            .ok()
            .filter(|c| c.state.read().rec.kind == kind)
    }

    /// Serialises the creation of unique conversations; see the field.
    pub fn unique_creation(&self) -> MutexGuard<'_, ()> {
        self.unique.lock()
    }

    pub fn insert(&self, conv: Arc<Conv>) {
        if conv.id.is_temporary() {
            self.temporary.lock().insert(conv.id);
        }
        self.shard(&conv.id).write().insert(conv.id, conv);
    }

    pub fn remove(&self, id: &ConvId) -> Option<Arc<Conv>> {
        if id.is_temporary() {
            self.temporary.lock().remove(id);
        }
        self.shard(id).write().remove(id)
    }

    /// Temporary conversations expired at `now_ms`, oldest first, at most
    /// `limit`.
    pub fn expired(&self, now_ms: u64, limit: usize) -> Vec<ConvId> {
        self.temporary
            .lock()
            .iter()
            .take_while(|id| id.expired(now_ms))
            .take(limit)
            .copied()
            .collect()
    }

    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.read().len()).sum()
    }

    /// Every conversation's id, one shard lock at a time.
    pub fn ids(&self) -> Vec<ConvId> {
        let mut out = Vec::with_capacity(self.len());
        for s in &self.shards {
            out.extend(s.read().keys().copied());
        }
        out
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The unique-conversation key: a hash of the sorted member set.
pub fn unique_key(sorted_members: &[String]) -> [u8; 32] {
    let mut h = Sha256::new();
    for m in sorted_members {
        h.update(m.as_bytes());
        h.update([0]);
    }
    h.finalize().into()
}

/// The sorted-members invariant: a stored member list is sorted and has no
/// duplicates, so membership is a binary search and the unique key is a
/// hash of the list as it stands. Every edit goes through these.
pub fn sorted_unique(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v.dedup();
    v
}

/// Inserts `client` in place; false when it was there already.
pub fn insert_member(members: &mut Vec<String>, client: &str) -> bool {
    match members.binary_search_by(|m| m.as_str().cmp(client)) {
        Ok(_) => false,
        Err(at) => {
            members.insert(at, client.to_owned());
            true
        }
    }
}

/// Removes `client`; false when it was not there.
pub fn remove_member(members: &mut Vec<String>, client: &str) -> bool {
    match members.binary_search_by(|m| m.as_str().cmp(client)) {
        Ok(at) => {
            members.remove(at);
            true
        }
        Err(_) => false,
    }
}

/// A member-set change worked out before it is applied: the new list, and
/// who of `add` was not in and who of `remove` was (as asked, in order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberEdit {
    pub members: Vec<String>,
    pub added: Vec<String>,
    pub removed: Vec<String>,
}

/// `current` (sorted) with `add` in and `remove` out, still sorted.
pub fn edit_members(current: &[String], add: &[String], remove: &[String]) -> MemberEdit {
    let has = |m: &String| current.binary_search(m).is_ok();
    let added: Vec<String> = add.iter().filter(|m| !has(m)).cloned().collect();
    let removed: Vec<String> = remove.iter().filter(|m| has(m)).cloned().collect();
    let mut members = current.to_vec();
    members.extend(added.iter().cloned());
    members.retain(|m| !removed.contains(m));
    MemberEdit {
        members: sorted_unique(members),
        added,
        removed,
    }
}

/// A record for the core's unit tests: created by "a", no name or roles.
#[cfg(test)]
pub(crate) fn test_record(id: ConvId, kind: ConvKind, members: &[&str]) -> ConversationRecord {
    ConversationRecord {
        id,
        kind,
        name: None,
        attr: None,
        creator: "a".into(),
        members: members.iter().map(|m| m.to_string()).collect(),
        managers: Vec::new(),
        muted: Vec::new(),
        unique: false,
        created_at: 0,
        updated_at: 0,
    }
}

#[cfg(test)]
mod audience_tests {
    use super::*;

    fn state(kind: ConvKind, members: &[&str], room: &[&str]) -> ConvState {
        ConvState {
            rec: test_record(ConvId([3; 12]), kind, members),
            room: room.iter().map(|m| m.to_string()).collect(),
            moderation: Default::default(),
        }
    }

    fn peers(p: &[&str]) -> Vec<String> {
        p.iter().map(|m| m.to_string()).collect()
    }

    #[test]
    fn members_hear_everything_the_sender_included() {
        let st = state(ConvKind::Normal, &["a", "b", "c"], &[]);
        assert_eq!(audience(&st, "a", &[None]), ["a", "b", "c"]);
        assert_eq!(audience(&st, "a", &[]), ["a", "b", "c"]);
        assert_eq!(st.audience(), ["a", "b", "c"]);
    }

    #[test]
    fn a_chat_room_reaches_who_is_in_the_room_not_its_members() {
        let st = state(ConvKind::ChatRoom, &["x"], &["b", "a"]);
        assert_eq!(audience(&st, "a", &[None]), ["a", "b"]);
        assert_eq!(st.audience(), ["a", "b"]);
        assert_eq!(st.audience_len(), 2);
    }

    #[test]
    fn to_peers_narrow_but_the_sender_stays() {
        let st = state(ConvKind::Normal, &["a", "b", "c", "d"], &[]);
        let hook = peers(&["c", "d", "z"]);
        let update = peers(&["d"]);
        assert_eq!(audience(&st, "a", &[Some(&hook)]), ["a", "c", "d"]);
        // A patch is narrowed by the message's list and the patch hook's.
        assert_eq!(
            audience(&st, "a", &[Some(&hook), Some(&update)]),
            ["a", "d"]
        );
        assert_eq!(audience(&st, "a", &[None, Some(&update)]), ["a", "d"]);
        // An empty list (a broadcast's stored copy) leaves only the sender.
        assert_eq!(audience(&st, "a", &[Some(&[])]), ["a"]);
    }

    #[test]
    fn a_system_conversation_reaches_the_sender_and_whom_the_app_named() {
        let st = state(ConvKind::System, &["s1", "s2", "s3"], &[]);
        let named = peers(&["s2", "t"]);
        assert_eq!(audience(&st, "bot", &[Some(&named)]), ["bot", "s2", "t"]);
        // A client writing in: to the app, not to the other subscribers.
        assert_eq!(audience(&st, "s1", &[Some(&[])]), ["s1"]);
        // The patch hook narrows it further.
        let update = peers(&["t"]);
        assert_eq!(
            audience(&st, "bot", &[Some(&named), Some(&update)]),
            ["bot", "t"]
        );
        // Membership questions still see the subscribers.
        assert_eq!(st.audience(), ["s1", "s2", "s3"]);
    }

    #[test]
    fn unstored_messages_in_a_system_conversation_reach_named_subscribers() {
        let st = state(ConvKind::System, &["s1", "s2", "s3"], &[]);
        let named = peers(&["s2", "t"]);
        // Not `t`, who is not subscribed; not the app's sender, who is not either.
        assert_eq!(audience_unstored(&st, "bot", Some(&named)), ["s2"]);
        assert_eq!(audience_unstored(&st, "s1", None), ["s1", "s2", "s3"]);
        assert_eq!(audience_unstored(&st, "s1", Some(&named)), ["s1", "s2"]);
        let normal = state(ConvKind::Normal, &["a", "b"], &[]);
        assert_eq!(
            audience_unstored(&normal, "a", None),
            audience(&normal, "a", &[None])
        );
    }
}

#[cfg(test)]
mod member_tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn edits_keep_members_sorted_and_unique() {
        assert_eq!(sorted_unique(v(&["b", "a", "b"])), v(&["a", "b"]));
        let mut m = v(&["a", "c"]);
        assert!(insert_member(&mut m, "b"));
        assert!(!insert_member(&mut m, "b"));
        assert_eq!(m, v(&["a", "b", "c"]));
        assert!(remove_member(&mut m, "a"));
        assert!(!remove_member(&mut m, "a"));
        assert_eq!(m, v(&["b", "c"]));
    }

    #[test]
    fn an_edit_reports_only_real_changes() {
        let e = edit_members(&v(&["a", "c"]), &v(&["d", "a", "b"]), &v(&["c", "x"]));
        assert_eq!(e.members, v(&["a", "b", "d"]));
        assert_eq!(e.added, v(&["d", "b"]));
        assert_eq!(e.removed, v(&["c"]));
        let none = edit_members(&v(&["a"]), &[], &[]);
        assert_eq!(none.members, v(&["a"]));
        assert!(none.added.is_empty() && none.removed.is_empty());
    }
}

#[cfg(test)]
mod temporary_tests {
    use super::*;

    fn table_with(ids: &[ConvId]) -> ConversationTable {
        let t = ConversationTable::new(|| 0);
        for &id in ids {
            t.insert(Arc::new(Conv::new(
                test_record(id, ConvKind::Temporary, &["a", "b"]),
                0,
                0,
            )));
        }
        t
    }

    #[test]
    fn an_expired_temporary_conversation_answers_4323_and_leads_the_sweep() {
        let late = ConvId::temporary(2_000);
        let early = ConvId::temporary(1_000);
        let normal = ConvId::random();
        let t = table_with(&[late, early]);
        t.insert(Arc::new(Conv::new(
            test_record(normal, ConvKind::Normal, &["a"]),
            0,
            0,
        )));
        assert!(t.live_at(early, 999_999).is_ok());
        let e = t.live_at(early, 1_000_000).err().map(|e| e.code);
        assert_eq!(e, Some(ErrorCode::TemporaryConvExpired as u16));
        assert!(t.live_at(normal, u64::MAX).is_ok(), "others never expire");
        assert_eq!(t.expired(999_999, 10), Vec::<ConvId>::new());
        assert_eq!(t.expired(1_500_000, 10), vec![early]);
        assert_eq!(t.expired(5_000_000, 10), vec![early, late], "oldest first");
        assert_eq!(t.expired(5_000_000, 1), vec![early]);
        t.remove(&early);
        assert_eq!(t.expired(5_000_000, 10), vec![late]);
        // Gone from the table, still 4323 rather than "not found".
        let e = t.live_at(early, 1_500_000).err().map(|e| e.code);
        assert_eq!(e, Some(ErrorCode::TemporaryConvExpired as u16));
    }
}
