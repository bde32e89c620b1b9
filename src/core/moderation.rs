//! Moderation rules: member roles, who may mute ("shutup") or block whom,
//! and the partial answers LeanCloud gives a batch (`allowedPids` /
//! `failedPids`). Pure: the lists live in [`ConvState`], the store only
//! persists them.
//!
//! LeanCloud's roles (JS `ConversationMemberRole`, `_ConversationMemberInfo`)
//! map onto what Tidings already keeps: the owner is the creator, managers
//! are the record's `managers`, everyone else is a member.

use std::collections::BTreeSet;
use std::ops::Bound;

use super::conversation::ConvState;
use super::validate::err;
use crate::protocol::{ConvKind, ErrorBody, ErrorCode, FailedClients, MemberInfo, MemberRole};
use crate::store::ConversationRecord;

/// A query page when the client names no limit (JS: "服务器默认值 10").
pub const DEFAULT_PAGE: usize = 10;
/// The most a query page holds.
pub const MAX_PAGE: usize = 100;

/// The two per-conversation lists a moderator edits (the store's enum, so
/// one name serves both).
pub use crate::store::ModerationList as List;

fn verb(l: List) -> &'static str {
    match l {
        List::Blocked => "block",
        List::Shutup => "mute",
    }
}

/// A conversation's blocked and muted clients, sorted (so pages are stable).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Moderation {
    pub blocked: BTreeSet<String>,
    pub shutup: BTreeSet<String>,
}

impl Moderation {
    pub fn list(&self, l: List) -> &BTreeSet<String> {
        match l {
            List::Blocked => &self.blocked,
            List::Shutup => &self.shutup,
        }
    }

    pub fn list_mut(&mut self, l: List) -> &mut BTreeSet<String> {
        match l {
            List::Blocked => &mut self.blocked,
            List::Shutup => &mut self.shutup,
        }
    }

    pub fn is_blocked(&self, client: &str) -> bool {
        self.blocked.contains(client)
    }

    pub fn is_shutup(&self, client: &str) -> bool {
        self.shutup.contains(client)
    }

    /// Up to `limit` clients of `l` after `next` (exclusive), and the
    /// cursor for the page after, `None` when this is the last. The cursor
    /// is the last id returned: a client removed meanwhile cannot make a
    /// page skip or repeat anyone.
    pub fn page(&self, l: List, next: Option<&str>, limit: u32) -> (Vec<String>, Option<String>) {
        let limit = match limit as usize {
            0 => DEFAULT_PAGE,
            n => n.min(MAX_PAGE),
        };
        let from = match next {
            Some(n) => Bound::Excluded(n),
            None => Bound::Unbounded,
        };
        let mut it = self
            .list(l)
            .range::<str, _>((from, Bound::Unbounded))
            .cloned();
        let page: Vec<String> = it.by_ref().take(limit).collect();
        let more = it.next().is_some();
        let next = more.then(|| page.last().cloned()).flatten();
        (page, next)
    }

    /// Those of `clients` on `l`, in the order asked, once each.
    pub fn which(&self, l: List, clients: &[String]) -> Vec<String> {
        let on = self.list(l);
        let mut seen = BTreeSet::new();
        clients
            .iter()
            .filter(|c| on.contains(c.as_str()) && seen.insert(c.as_str()))
            .cloned()
            .collect()
    }
}

/// 4315 when any of `clients` is blocked: the check joins and additions
/// make, under the same lock as the member change, so a block cannot race one.
pub fn refuse_blocked(m: &Moderation, clients: &[String]) -> Result<(), ErrorBody> {
    match clients.iter().find(|c| m.is_blocked(c)) {
        Some(c) => Err(err(
            ErrorCode::ConvBlacklisted,
            format!("{c} is blocked in this conversation"),
        )),
        None => Ok(()),
    }
}

/// 4308 when `client` is muted: a send's check, before any hook runs.
pub fn refuse_shutup(m: &Moderation, client: &str) -> Result<(), ErrorBody> {
    if m.is_shutup(client) {
        return Err(err(
            ErrorCode::ConvNotAllowed,
            "muted in this conversation (shutup): no sending until unmuted",
        ));
    }
    Ok(())
}

pub fn role_of(rec: &ConversationRecord, client: &str) -> MemberRole {
    if rec.creator == client {
        MemberRole::Owner
    } else if rec.managers.iter().any(|m| m == client) {
        MemberRole::Manager
    } else {
        MemberRole::Member
    }
}

/// Every member with its role: the owner, then managers, then the rest
/// (chat rooms: whoever is in the room), each group sorted.
pub fn member_roles(st: &ConvState) -> Vec<MemberInfo> {
    let rec = &st.rec;
    let info = |c: &str, role| MemberInfo {
        client: c.to_owned(),
        role,
    };
    let mut out = vec![info(&rec.creator, MemberRole::Owner)];
    let mut managers: Vec<&String> = rec.managers.iter().collect();
    managers.sort();
    out.extend(managers.into_iter().map(|m| info(m, MemberRole::Manager)));
    out.extend(
        st.audience()
            .iter()
            .filter(|m| role_of(rec, m) == MemberRole::Member)
            .map(|m| info(m, MemberRole::Member)),
    );
    out
}

/// What a batch comes to: who it applies to, and who it refused, grouped
/// by reason (LeanCloud's `failedPids`: one `ErrorCommand` per reason).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    pub allowed: Vec<String>,
    pub failed: Vec<FailedClients>,
}

impl Verdict {
    fn fail(&mut self, code: ErrorCode, detail: String, client: &str) {
        match self
            .failed
            .iter_mut()
            .find(|f| f.error.code == code as u16 && f.error.detail == detail)
        {
            Some(f) => f.clients.push(client.to_owned()),
            None => self.failed.push(FailedClients {
                error: ErrorBody::new(code, detail),
                clients: vec![client.to_owned()],
            }),
        }
    }
}

/// Whom `caller` may put on (or take off) list `l` of `st`'s conversation.
/// The caller must be the owner or a manager (else the whole request
/// fails); then, per target:
///
/// - nobody may target the owner, nor themselves (4308);
/// - a manager may target plain members only; managers need the owner (4324);
/// - muting needs the target to be in the conversation (4401): a muted
///   non-member could not send anyway, so the entry would only mislead.
///   Blocking does not: keeping outsiders out is what a blacklist is for.
///
/// Targets are taken once each, in the order asked.
pub fn judge(
    st: &ConvState,
    caller: &str,
    l: List,
    targets: &[String],
) -> Result<Verdict, ErrorBody> {
    let rec = &st.rec;
    if rec.kind == ConvKind::System {
        return Err(err(
            ErrorCode::ConvApiFailed,
            "system conversations belong to the app: no blacklist or shutup",
        ));
    }
    if rec.kind != ConvKind::ChatRoom && !st.is_member(caller) {
        return Err(err(
            ErrorCode::InvalidMessagingTarget,
            format!("not a member of {}", rec.id),
        ));
    }
    let by = role_of(rec, caller);
    if by == MemberRole::Member {
        return Err(err(
            ErrorCode::NeedOwner,
            format!("only the owner or a manager may {} members", verb(l)),
        ));
    }
    let mut v = Verdict::default();
    let mut seen = BTreeSet::new();
    for t in targets {
        if !seen.insert(t.as_str()) {
            continue;
        }
        let what = verb(l);
        if t == caller {
            v.fail(
                ErrorCode::ConvNotAllowed,
                format!("cannot {what} yourself"),
                t,
            );
            continue;
        }
        match role_of(rec, t) {
            MemberRole::Owner => {
                v.fail(
                    ErrorCode::ConvNotAllowed,
                    format!("cannot {what} the owner"),
                    t,
                );
                continue;
            }
            MemberRole::Manager if by != MemberRole::Owner => {
                v.fail(
                    ErrorCode::NeedOwner,
                    format!("only the owner may {what} a manager"),
                    t,
                );
                continue;
            }
            _ => {}
        }
        // Chat-room members come and go, so a mute there may name anyone.
        let needs_member = l == List::Shutup && rec.kind == ConvKind::Normal;
        if needs_member && !st.is_member(t) {
            v.fail(
                ErrorCode::InvalidMessagingTarget,
                "not a member of the conversation".into(),
                t,
            );
            continue;
        }
        v.allowed.push(t.clone());
    }
    Ok(v)
}

/// Puts `allowed` on list `l` (`on`) or takes them off; returns those whose
/// state changed, who are the ones to tell and to persist.
pub fn apply(m: &mut Moderation, l: List, allowed: &[String], on: bool) -> Vec<String> {
    let set = m.list_mut(l);
    allowed
        .iter()
        .filter(|c| {
            if on {
                set.insert((*c).clone())
            } else {
                set.remove(c.as_str())
            }
        })
        .cloned()
        .collect()
}

/// Checks a role update (LeanCloud's `member_info_update`) before it
/// becomes a managers edit: Owner is never granted (5130, as JS's
/// `OWNER_PROMOTION_NOT_ALLOWED`) and the owner's role never changes (4308).
/// Whether the caller is the owner is the managers edit's own check.
pub fn check_role_update(
    rec: &ConversationRecord,
    member: &str,
    role: MemberRole,
) -> Result<(), ErrorBody> {
    if role == MemberRole::Owner {
        return Err(err(
            ErrorCode::OwnerPromotionNotAllowed,
            "updating a member's role to Owner is not allowed",
        ));
    }
    if rec.creator == member {
        return Err(err(
            ErrorCode::ConvNotAllowed,
            "the owner's role cannot change",
        ));
    }
    Ok(())
}

#[cfg(test)]
#[path = "moderation_tests.rs"]
mod tests;
