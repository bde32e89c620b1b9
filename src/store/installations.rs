//! Push device registrations: LeanCloud's `_Installation` class, which the
//! unchanged SDKs write over REST (`gateway::installations`) and the IM
//! login binds to a client. One record per device under `o objectId`, with
//! three indexes in the same tree (`t` push token, `i` installationId,
//! `c` client + objectId), so every change is one single-tree sled
//! transaction: two saves of one device racing each other, or a badge
//! increment racing a save, never leave an index pointing at the wrong
//! record or lose an increment.
//!
//! One registration per push token and per installationId: a save that
//! gives a token (or installationId) another record holds removes that
//! other record, because the device re-registered (reinstall, restore from
//! backup) and the old row would double its pushes.

use serde::{Deserialize, Serialize};
use sled::transaction::{
    ConflictableTransactionError, ConflictableTransactionResult, TransactionError,
    TransactionalTree,
};

use super::tables::Tree;
use super::{Result, Store, StoreError, keys};
use crate::wire::codec;

/// One device, as stored. Positional (bincode): new fields go at the END.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Installation {
    pub object_id: String,
    /// `ios`, `android`, `macos`, … as the SDK sent it.
    pub device_type: String,
    /// APNs token, lowercase hex (iOS SDKs).
    pub device_token: Option<String>,
    /// The SDK's own id for the install (Android: MD5 of package + UUID).
    pub installation_id: Option<String>,
    /// Android push vendor (`fcm`, `HMS`, `mi`, …).
    pub vendor: Option<String>,
    /// The FCM or vendor token.
    pub registration_id: Option<String>,
    pub apns_topic: Option<String>,
    pub apns_team_id: Option<String>,
    /// Names the credentials to push with (`_profile` of a push).
    pub device_profile: Option<String>,
    /// The server-kept badge that `badge: "Increment"` raises.
    pub badge: i64,
    pub channels: Vec<String>,
    pub time_zone: Option<String>,
    pub created_at: u64,
    /// Also what the idle sweep goes by.
    pub updated_at: u64,
    /// Clients bound to this device at IM login, each also in `channels`.
    pub clients: Vec<String>,
    /// Fields the SDKs send that Tidings does not interpret, as
    /// `(name, JSON text)`, so a GET gives them back.
    pub extra: Vec<(String, String)>,
}

/// APNs tokens are hex; the iOS SDKs send them lowercase, but an app may
/// format its own. Lowercasing hex makes a registration and a login match
/// whatever case each used; other tokens (FCM) are kept as they are.
pub fn normal_token(t: &str) -> String {
    if t.bytes().all(|b| b.is_ascii_hexdigit()) {
        t.to_ascii_lowercase()
    } else {
        t.to_owned()
    }
}

impl Installation {
    /// The tokens a provider pushes to, and that the token index holds.
    pub fn tokens(&self) -> impl Iterator<Item = &str> {
        self.device_token
            .as_deref()
            .into_iter()
            .chain(self.registration_id.as_deref())
            .filter(|t| !t.is_empty())
    }
}

/// How a save finds the record it changes.
#[derive(Debug, Clone, Copy)]
pub enum Lookup<'a> {
    /// `PUT …/<objectId>`: that record or nothing.
    Exactly(&'a str),
    /// `POST`: by objectId when given and known, then by push token, then
    /// by installationId (LeanCloud's order); a new record otherwise.
    Upsert { object_id: Option<&'a str> },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadgeChange {
    Set(i64),
    Increment(i64),
}

/// `channels` as a value or one of LeanCloud's array `__op`s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelsChange {
    Set(Vec<String>),
    Add(Vec<String>),
    AddUnique(Vec<String>),
    Remove(Vec<String>),
}

/// What a save sets; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstallationChanges {
    pub device_type: Option<String>,
    pub device_token: Option<String>,
    pub installation_id: Option<String>,
    pub vendor: Option<String>,
    pub registration_id: Option<String>,
    pub apns_topic: Option<String>,
    pub apns_team_id: Option<String>,
    pub device_profile: Option<String>,
    pub time_zone: Option<String>,
    pub badge: Option<BadgeChange>,
    pub channels: Option<ChannelsChange>,
    /// `(name, JSON text)` of other fields, replacing same-named ones.
    pub extra: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Saved {
    pub object_id: String,
    pub created: bool,
    pub created_at: u64,
    pub updated_at: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SaveOutcome {
    Saved(Saved),
    /// [`Lookup::Exactly`] named no record.
    NotFound,
    /// A new record needs a `deviceType` (LeanCloud's code 135).
    NeedsDeviceType,
}

/// The device an IM login names: iOS SDKs send the APNs token, Android
/// the installationId.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum DeviceRef {
    Token(String),
    InstallationId(String),
}

/// Why a transaction gave up (besides sled's own errors).
#[derive(Debug)]
enum Abort {
    Corrupt,
}

type Tx<T> = ConflictableTransactionResult<T, Abort>;

fn corrupt<E>(_: E) -> ConflictableTransactionError<Abort> {
    ConflictableTransactionError::Abort(Abort::Corrupt)
}

fn tx_error(e: TransactionError<Abort>) -> StoreError {
    match e {
        TransactionError::Storage(e) => e.into(),
        TransactionError::Abort(Abort::Corrupt) => StoreError::Corrupt {
            tree: Tree::Installations.name(),
        },
    }
}

fn get(t: &TransactionalTree, object_id: &str) -> Tx<Option<Installation>> {
    match t.get(keys::installation(object_id))? {
        Some(v) => codec::decode(&v).map(Some).map_err(corrupt),
        None => Ok(None),
    }
}

/// The objectId an index key points at.
fn pointed(t: &TransactionalTree, key: &[u8]) -> Tx<Option<String>> {
    match t.get(key)? {
        Some(v) => String::from_utf8(v.to_vec()).map(Some).map_err(corrupt),
        None => Ok(None),
    }
}

/// Removes `key` if it still points at `object_id` (a newer record may
/// have taken the token since).
fn unindex(t: &TransactionalTree, key: Vec<u8>, object_id: &str) -> Tx<()> {
    if pointed(t, &key)?.as_deref() == Some(object_id) {
        t.remove(key)?;
    }
    Ok(())
}

/// Removes a record and its index entries; the record, if there was one.
fn drop_record(t: &TransactionalTree, object_id: &str) -> Tx<Option<Installation>> {
    let Some(rec) = get(t, object_id)? else {
        return Ok(None);
    };
    for tok in rec.tokens() {
        unindex(t, keys::installation_token(tok), object_id)?;
    }
    if let Some(iid) = &rec.installation_id {
        unindex(t, keys::installation_iid(iid), object_id)?;
    }
    for c in &rec.clients {
        t.remove(keys::installation_client(c, object_id))?;
    }
    t.remove(keys::installation(object_id))?;
    Ok(Some(rec))
}

/// Writes `new` over `old` (same objectId), keeping the indexes in step.
fn put(t: &TransactionalTree, old: Option<&Installation>, new: &Installation) -> Tx<()> {
    let id = new.object_id.as_str();
    if let Some(old) = old {
        for tok in old.tokens() {
            if !new.tokens().any(|n| n == tok) {
                unindex(t, keys::installation_token(tok), id)?;
            }
        }
        if let Some(iid) = &old.installation_id
            && new.installation_id.as_ref() != Some(iid)
        {
            unindex(t, keys::installation_iid(iid), id)?;
        }
        for c in &old.clients {
            if !new.clients.contains(c) {
                t.remove(keys::installation_client(c, id))?;
            }
        }
    }
    let mut index = Vec::new();
    index.extend(new.tokens().map(keys::installation_token));
    index.extend(new.installation_id.as_deref().map(keys::installation_iid));
    for key in index {
        if let Some(other) = pointed(t, &key)?
            && other != id
        {
            // The device re-registered: one row per token / installationId.
            drop_record(t, &other)?;
        }
        t.insert(key, id.as_bytes())?;
    }
    for c in &new.clients {
        t.insert(keys::installation_client(c, id), &[][..])?;
    }
    t.insert(keys::installation(id), codec::encode(new).map_err(corrupt)?)?;
    Ok(())
}

fn find(
    t: &TransactionalTree,
    lookup: Lookup<'_>,
    c: &InstallationChanges,
) -> Tx<Option<Installation>> {
    let by_id = match lookup {
        Lookup::Exactly(id) => return get(t, id),
        Lookup::Upsert { object_id } => object_id,
    };
    if let Some(id) = by_id
        && let Some(rec) = get(t, id)?
    {
        return Ok(Some(rec));
    }
    let tokens = c.device_token.iter().chain(&c.registration_id);
    let mut index: Vec<Vec<u8>> = tokens
        .filter(|t| !t.is_empty())
        .map(|t| keys::installation_token(t))
        .collect();
    index.extend(
        c.installation_id
            .iter()
            .filter(|i| !i.is_empty())
            .map(|i| keys::installation_iid(i)),
    );
    for key in index {
        if let Some(id) = pointed(t, &key)?
            && let Some(rec) = get(t, &id)?
        {
            return Ok(Some(rec));
        }
    }
    Ok(None)
}

fn apply(rec: &mut Installation, c: &InstallationChanges) {
    let set = |field: &mut Option<String>, v: &Option<String>| {
        if let Some(v) = v {
            *field = Some(v.clone()).filter(|v| !v.is_empty());
        }
    };
    if let Some(d) = &c.device_type {
        rec.device_type.clone_from(d);
    }
    set(&mut rec.device_token, &c.device_token);
    set(&mut rec.installation_id, &c.installation_id);
    set(&mut rec.vendor, &c.vendor);
    set(&mut rec.registration_id, &c.registration_id);
    set(&mut rec.apns_topic, &c.apns_topic);
    set(&mut rec.apns_team_id, &c.apns_team_id);
    set(&mut rec.device_profile, &c.device_profile);
    set(&mut rec.time_zone, &c.time_zone);
    match c.badge {
        Some(BadgeChange::Set(n)) => rec.badge = n,
        Some(BadgeChange::Increment(n)) => rec.badge = rec.badge.saturating_add(n),
        None => {}
    }
    match &c.channels {
        Some(ChannelsChange::Set(v)) => rec.channels.clone_from(v),
        Some(ChannelsChange::Add(v)) => rec.channels.extend(v.iter().cloned()),
        Some(ChannelsChange::AddUnique(v)) => {
            for ch in v {
                if !rec.channels.contains(ch) {
                    rec.channels.push(ch.clone());
                }
            }
        }
        Some(ChannelsChange::Remove(v)) => rec.channels.retain(|ch| !v.contains(ch)),
        None => {}
    }
    for (k, v) in &c.extra {
        match rec.extra.iter_mut().find(|(name, _)| name == k) {
            Some(slot) => slot.1.clone_from(v),
            None => rec.extra.push((k.clone(), v.clone())),
        }
    }
}

impl Store {
    /// Creates or changes one installation. `new_id` is the objectId a
    /// new record gets.
    pub fn installation_save(
        &self,
        lookup: Lookup<'_>,
        changes: &InstallationChanges,
        new_id: &str,
        now_ms: u64,
    ) -> Result<SaveOutcome> {
        self.guard.writable()?;
        self.trees[Tree::Installations]
            .transaction(|t| {
                let old = find(t, lookup, changes)?;
                let mut rec = match (&old, lookup) {
                    (Some(old), _) => old.clone(),
                    (None, Lookup::Exactly(_)) => return Ok(SaveOutcome::NotFound),
                    (None, Lookup::Upsert { .. }) => {
                        if changes.device_type.as_deref().is_none_or(str::is_empty) {
                            return Ok(SaveOutcome::NeedsDeviceType);
                        }
                        Installation {
                            object_id: new_id.to_owned(),
                            created_at: now_ms,
                            ..Default::default()
                        }
                    }
                };
                apply(&mut rec, changes);
                rec.updated_at = now_ms;
                put(t, old.as_ref(), &rec)?;
                Ok(SaveOutcome::Saved(Saved {
                    object_id: rec.object_id.clone(),
                    created: old.is_none(),
                    created_at: rec.created_at,
                    updated_at: rec.updated_at,
                }))
            })
            .map_err(tx_error)
    }

    pub fn installation(&self, object_id: &str) -> Result<Option<Installation>> {
        match self.trees[Tree::Installations].get(keys::installation(object_id))? {
            Some(v) => Ok(Some(codec::decode(&v)?)),
            None => Ok(None),
        }
    }

    fn installation_at(&self, key: &[u8]) -> Result<Option<Installation>> {
        match self.trees[Tree::Installations].get(key)? {
            Some(id) => self.installation(&String::from_utf8_lossy(&id)),
            None => Ok(None),
        }
    }

    /// The registration holding an APNs `deviceToken` or FCM `registrationId`.
    pub fn installation_by_token(&self, token: &str) -> Result<Option<Installation>> {
        self.installation_at(&keys::installation_token(token))
    }

    pub fn installation_by_installation_id(&self, iid: &str) -> Result<Option<Installation>> {
        self.installation_at(&keys::installation_iid(iid))
    }

    fn device(&self, device: &DeviceRef) -> Result<Option<Installation>> {
        match device {
            DeviceRef::Token(t) => self.installation_by_token(t),
            DeviceRef::InstallationId(i) => self.installation_by_installation_id(i),
        }
    }

    /// The devices bound to `client`, what a push to it goes to.
    pub fn installations_of_client(&self, client: &str) -> Result<Vec<Installation>> {
        let prefix = keys::installation_client_prefix(client);
        let mut out = Vec::new();
        for k in self.trees[Tree::Installations].scan_prefix(&prefix).keys() {
            let k = k?;
            let id = String::from_utf8_lossy(&k[prefix.len()..]).into_owned();
            if let Some(rec) = self.installation(&id)? {
                out.push(rec);
            }
        }
        Ok(out)
    }

    /// Up to `limit` records with an objectId above `after`, in objectId
    /// order (the master-key listing).
    pub fn installations(&self, after: Option<&str>, limit: usize) -> Result<Vec<Installation>> {
        let tree = &self.trees[Tree::Installations];
        let from = match after {
            Some(a) => {
                let mut k = keys::installation(a);
                k.push(0);
                k
            }
            None => vec![keys::INST_RECORD],
        };
        tree.range(from..vec![keys::INST_RECORD + 1])
            .values()
            .take(limit)
            .map(|v| Ok(codec::decode(&v?)?))
            .collect()
    }

    /// Deletes a registration; true if there was one.
    pub fn installation_delete(&self, object_id: &str) -> Result<bool> {
        self.guard.not_failed()?;
        self.trees[Tree::Installations]
            .transaction(|t| Ok(drop_record(t, object_id)?.is_some()))
            .map_err(tx_error)
    }

    /// Deletes the registration of a token a provider reported dead
    /// (APNs 410/BadDeviceToken, FCM UNREGISTERED, webhook `rejected`).
    /// `unless_updated_after`: APNs's 410 carries the time the token went
    /// stale; a device that registered again since keeps its record.
    pub fn installation_delete_token(
        &self,
        token: &str,
        unless_updated_after: Option<u64>,
    ) -> Result<bool> {
        self.guard.not_failed()?;
        let key = keys::installation_token(token);
        self.trees[Tree::Installations]
            .transaction(|t| {
                let Some(id) = pointed(t, &key)? else {
                    return Ok(false);
                };
                if let (Some(at), Some(rec)) = (unless_updated_after, get(t, &id)?)
                    && rec.updated_at > at
                {
                    return Ok(false);
                }
                Ok(drop_record(t, &id)?.is_some())
            })
            .map_err(tx_error)
    }

    /// Adds `by` to the device's badge and returns the new value (for
    /// `badge: "Increment"`); `None` when there is no such record.
    /// Does not touch `updatedAt`: a push is not the device checking in.
    pub fn installation_badge_increment(&self, object_id: &str, by: i64) -> Result<Option<i64>> {
        self.guard.not_failed()?;
        self.trees[Tree::Installations]
            .transaction(|t| {
                let Some(mut rec) = get(t, object_id)? else {
                    return Ok(None);
                };
                rec.badge = rec.badge.saturating_add(by);
                t.insert(
                    keys::installation(object_id),
                    codec::encode(&rec).map_err(corrupt)?,
                )?;
                Ok(Some(rec.badge))
            })
            .map_err(tx_error)
    }

    /// Binds what a login named (`Login::device_token`): as a push token,
    /// else as an installationId. The device bound, if one was.
    pub fn installation_bind_named(
        &self,
        named: &str,
        client: &str,
        now_ms: u64,
    ) -> Result<Option<DeviceRef>> {
        for d in [
            DeviceRef::Token(normal_token(named)),
            DeviceRef::InstallationId(named.to_owned()),
        ] {
            if self.installation_bind(&d, client, now_ms)? {
                return Ok(Some(d));
            }
        }
        Ok(None)
    }

    /// Binds the device to `client` at login: the client joins the device's
    /// `channels` (LeanCloud subscribes the device to a channel named after
    /// the clientId) and the client index. False when the device has no
    /// registration (yet): the SDK registers and logs in concurrently.
    pub fn installation_bind(&self, device: &DeviceRef, client: &str, now_ms: u64) -> Result<bool> {
        self.rebind(device, client, now_ms, true)
    }

    /// Undoes [`Store::installation_bind`] at logout.
    pub fn installation_unbind(
        &self,
        device: &DeviceRef,
        client: &str,
        now_ms: u64,
    ) -> Result<bool> {
        self.rebind(device, client, now_ms, false)
    }

    fn rebind(&self, device: &DeviceRef, client: &str, now_ms: u64, bind: bool) -> Result<bool> {
        self.guard.writable()?;
        let Some(found) = self.device(device)? else {
            return Ok(false);
        };
        let id = found.object_id;
        self.trees[Tree::Installations]
            .transaction(|t| {
                let Some(old) = get(t, &id)? else {
                    return Ok(false);
                };
                let mut rec = old.clone();
                let c = client.to_owned();
                rec.channels.retain(|ch| ch != client);
                rec.clients.retain(|ch| ch != client);
                if bind {
                    rec.channels.push(c.clone());
                    rec.clients.push(c);
                }
                rec.updated_at = now_ms;
                put(t, Some(&old), &rec)?;
                Ok(true)
            })
            .map_err(tx_error)
    }

    /// Deletes registrations not updated for `idle_ms` before `now_ms`;
    /// how many went. A scan: run rarely (daily), not per request.
    pub fn installations_sweep(&self, now_ms: u64, idle_ms: u64) -> Result<usize> {
        self.guard.not_failed()?;
        let before = now_ms.saturating_sub(idle_ms);
        let mut stale = Vec::new();
        for rec in self.installations(None, usize::MAX)? {
            if rec.updated_at < before {
                stale.push(rec.object_id);
            }
        }
        let mut gone = 0;
        for id in stale {
            // Re-checked inside: the device may have checked in meanwhile.
            let removed = self.trees[Tree::Installations]
                .transaction(|t| match get(t, &id)? {
                    Some(rec) if rec.updated_at < before => Ok(drop_record(t, &id)?.is_some()),
                    _ => Ok(false),
                })
                .map_err(tx_error)?;
            gone += usize::from(removed);
        }
        Ok(gone)
    }
}

#[cfg(test)]
#[path = "installations_tests.rs"]
mod tests;
