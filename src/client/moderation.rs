//! The client's moderation calls: member mute ("shutup"), the blacklist
//! and member roles (LeanCloud's `muteMembers`, `blockMembers`,
//! `updateMemberRole`, `getAllMemberInfo`, …).

use super::{Client, ClientError, unexpected};
use crate::protocol::{Command, ConvId, FailedClients, MemberInfo, MemberRole, Reply};

/// A batch that may succeed for some clients only (LeanCloud's
/// `PartiallySuccess`: `successfulClientIds` and `failures`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partial {
    pub allowed: Vec<String>,
    pub failed: Vec<FailedClients>,
}

impl Partial {
    /// The code a client was refused with, if it was.
    pub fn failure_of(&self, client: &str) -> Option<u16> {
        self.failed
            .iter()
            .find(|f| f.clients.iter().any(|c| c == client))
            .map(|f| f.error.code)
    }
}

/// A page of client ids; `next` is `Some` while more remain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientPage {
    pub clients: Vec<String>,
    pub next: Option<String>,
}

impl Client {
    async fn request_partial(&self, cmd: Command) -> Result<Partial, ClientError> {
        match self.request(cmd).await? {
            Reply::Partial { allowed, failed } => Ok(Partial { allowed, failed }),
            other => Err(unexpected("Partial", other)),
        }
    }

    async fn request_page(&self, cmd: Command) -> Result<ClientPage, ClientError> {
        match self.request(cmd).await? {
            Reply::Clients { clients, next } => Ok(ClientPage { clients, next }),
            other => Err(unexpected("Clients", other)),
        }
    }

    /// Mutes members (owner or manager): they may not send until unmuted.
    pub async fn mute_members(
        &self,
        conv: ConvId,
        members: Vec<String>,
    ) -> Result<Partial, ClientError> {
        self.request_partial(Command::AddShutup { conv, members })
            .await
    }

    pub async fn unmute_members(
        &self,
        conv: ConvId,
        members: Vec<String>,
    ) -> Result<Partial, ClientError> {
        self.request_partial(Command::RemoveShutup { conv, members })
            .await
    }

    /// A page of the muted clients; `limit` 0 is the server's default (10).
    pub async fn muted_members(
        &self,
        conv: ConvId,
        limit: u32,
        next: Option<String>,
    ) -> Result<ClientPage, ClientError> {
        self.request_page(Command::QueryShutup { conv, limit, next })
            .await
    }

    /// Which of `members` are muted.
    pub async fn check_muted(
        &self,
        conv: ConvId,
        members: Vec<String>,
    ) -> Result<Vec<String>, ClientError> {
        Ok(self
            .request_page(Command::CheckShutup { conv, members })
            .await?
            .clients)
    }

    /// Blocks clients (owner or manager): members among them are removed,
    /// and none may join or be added until unblocked.
    pub async fn block_members(
        &self,
        conv: ConvId,
        members: Vec<String>,
    ) -> Result<Partial, ClientError> {
        self.request_partial(Command::Block { conv, members }).await
    }

    pub async fn unblock_members(
        &self,
        conv: ConvId,
        members: Vec<String>,
    ) -> Result<Partial, ClientError> {
        self.request_partial(Command::Unblock { conv, members })
            .await
    }

    /// A page of the blocked clients; `limit` 0 is the server's default (10).
    pub async fn blocked_members(
        &self,
        conv: ConvId,
        limit: u32,
        next: Option<String>,
    ) -> Result<ClientPage, ClientError> {
        self.request_page(Command::QueryBlocked { conv, limit, next })
            .await
    }

    /// Which of `members` are blocked.
    pub async fn check_blocked(
        &self,
        conv: ConvId,
        members: Vec<String>,
    ) -> Result<Vec<String>, ClientError> {
        Ok(self
            .request_page(Command::CheckBlocked { conv, members })
            .await?
            .clients)
    }

    /// Makes `member` a manager or a plain member (the owner only).
    pub async fn set_member_role(
        &self,
        conv: ConvId,
        member: &str,
        role: MemberRole,
    ) -> Result<(), ClientError> {
        self.request_ok(Command::SetMemberRole {
            conv,
            member: member.to_owned(),
            role,
        })
        .await
    }

    /// Every member with its role: the owner, managers, then members.
    pub async fn member_roles(&self, conv: ConvId) -> Result<Vec<MemberInfo>, ClientError> {
        match self.request(Command::MemberRoles { conv }).await? {
            Reply::MemberRoles { members } => Ok(members),
            other => Err(unexpected("MemberRoles", other)),
        }
    }
}
