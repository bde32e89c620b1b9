//! Receipts: what each member of a conversation has received and read
//! (raise-only), and the receipts owed to a client that was offline.

use super::tables::Tree;
use super::{Result, Store, StoreError, keys};
use crate::protocol::ConvId;

impl Store {
    /// Raises what `client` has received (`delivered`) or read in `conv` to
    /// `ms`; returns the new `(delivered, read)`.
    pub fn raise_receipt(
        &self,
        conv: ConvId,
        client: &str,
        delivered: Option<u64>,
        read: Option<u64>,
    ) -> Result<(u64, u64)> {
        self.guard.not_failed()?;
        let new =
            self.trees[Tree::Receipts].update_and_fetch(keys::receipt(conv, client), |old| {
                let (d, r) = old.and_then(keys::read_u64_pair).unwrap_or((0, 0));
                let d = d.max(delivered.unwrap_or(0));
                let r = r.max(read.unwrap_or(0));
                Some(keys::u64_pair(d, r).to_vec())
            })?;
        new.as_deref()
            .and_then(keys::read_u64_pair)
            .ok_or(StoreError::Corrupt {
                tree: Tree::Receipts.name(),
            })
    }

    /// What `client` has received and read in `conv` (0 when never).
    pub fn receipt(&self, conv: ConvId, client: &str) -> Result<(u64, u64)> {
        match self.trees[Tree::Receipts].get(keys::receipt(conv, client))? {
            None => Ok((0, 0)),
            Some(v) => keys::read_u64_pair(&v).ok_or(StoreError::Corrupt {
                tree: Tree::Receipts.name(),
            }),
        }
    }

    /// Notes that `client` was offline when a receipt for `conv` was due.
    pub fn owe_receipt(&self, client: &str, conv: ConvId) -> Result<()> {
        self.guard.not_failed()?;
        self.trees[Tree::Receipts].insert(keys::owed_receipt(client, conv), &[])?;
        Ok(())
    }

    /// Takes the conversations `client` is owed receipts for.
    pub fn take_owed_receipts(&self, client: &str) -> Result<Vec<ConvId>> {
        let prefix = keys::owed_receipt_prefix(client);
        let mut out = Vec::new();
        for k in self.trees[Tree::Receipts].scan_prefix(&prefix).keys() {
            let k = k?;
            if let Some(conv) = keys::read_conv(&k[prefix.len()..]) {
                out.push(conv);
            }
            self.trees[Tree::Receipts].remove(k)?;
        }
        Ok(out)
    }
}
