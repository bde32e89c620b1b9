//! Used login nonces, kept until their signature window ends, so a login
//! captured before a restart cannot be replayed after it (`auth`).
//!
//! Keys are `expires(8) nonce`, so expired ones are a prefix range. Writes
//! do not wait for a flush: a nonce is on disk at the next flush of the
//! store (a group commit, sled's 500 ms background flush, or a graceful
//! shutdown), so only a crash within that moment can forget one.

use super::tables::Tree;
use super::{Result, Store, StoreError, keys};

impl Store {
    /// Records `nonce` as used until `expires` (seconds since the epoch).
    pub fn nonce_put(&self, nonce: &str, expires: u64) -> Result<()> {
        self.guard.not_failed()?;
        self.trees[Tree::Nonces].insert(keys::nonce(nonce, expires), &[])?;
        Ok(())
    }

    /// Forgets nonces that expired, as the in-memory table drops them.
    pub fn nonce_remove(&self, nonce: &str, expires: u64) -> Result<()> {
        self.guard.not_failed()?;
        self.trees[Tree::Nonces].remove(keys::nonce(nonce, expires))?;
        Ok(())
    }

    /// Nonces still live at `now`, oldest expiry first; expired ones are
    /// removed on the way.
    pub fn nonces_live(&self, now: u64) -> Result<Vec<(u64, String)>> {
        let mut live = Vec::new();
        let mut expired = Vec::new();
        for kv in self.trees[Tree::Nonces].iter() {
            let (k, _) = kv?;
            let corrupt = || StoreError::Corrupt {
                tree: Tree::Nonces.name(),
            };
            let expires = keys::read_u64(k.get(..8).ok_or_else(corrupt)?).ok_or_else(corrupt)?;
            if expires < now {
                expired.push(k);
                continue;
            }
            let nonce = std::str::from_utf8(&k[8..]).map_err(|_| corrupt())?;
            live.push((expires, nonce.to_owned()));
        }
        if !expired.is_empty() && self.guard.not_failed().is_ok() {
            let mut batch = sled::Batch::default();
            expired.into_iter().for_each(|k| batch.remove(k));
            self.trees[Tree::Nonces].apply_batch(batch)?;
        }
        Ok(live)
    }
}
