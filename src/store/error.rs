//! What the store can fail with, and how a failure reads to a client.

use std::path::PathBuf;

use crate::protocol::{ConvId, ErrorBody, ErrorCode};
use crate::wire::codec::CodecError;

use super::{SCHEMA_VERSION, check, health};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("sled: {0}")]
    Sled(#[from] sled::Error),
    #[error("record: {0}")]
    Codec(#[from] CodecError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("data dir has schema {found}, this build reads {SCHEMA_VERSION}")]
    Schema { found: u32 },
    #[error("corrupt key or value in {tree}")]
    Corrupt { tree: &'static str },
    #[error("disk space low: {free} bytes free, store.min_free_mb keeps {reserve}")]
    DiskLow { free: u64, reserve: u64 },
    #[error("the store failed earlier ({0}); the server is stopping")]
    Failed(String),
    #[error("injected fault at {0:?}")]
    Injected(health::Step),
    /// sled cannot open the store (it panicked or reported corruption while
    /// recovering): a restart will not fix it.
    #[error(
        "store file {} is damaged and cannot be opened: {detail}. A restart will not fix it: \
         stop here, copy the data dir aside, then run `tidings store check` and \
         `tidings store repair --into NEWDIR` (README, \"Damaged store files\")",
        path.display()
    )]
    Unreadable { path: PathBuf, detail: String },
    /// An append planned from `expected` as the conversation's last seq,
    /// but the store holds `found`: another writer got there first.
    /// Nothing of the batch was written; re-read the head and plan again.
    #[error("conversation {conv}: last seq moved from {expected} to {found} under this append")]
    SeqMoved {
        conv: ConvId,
        expected: u64,
        found: u64,
    },
    /// An append whose new messages do not continue the conversation one
    /// seq at a time from its head (a gap, a repeat, or a message past the
    /// end with no head given): a bug in the caller. Nothing was written.
    #[error("conversation {conv}: seq {got} where the log continues at {want}")]
    SeqGap { conv: ConvId, want: u64, got: u64 },
}

impl StoreError {
    /// Refused before anything was written: the caller may say "not stored".
    pub fn is_refusal(&self) -> bool {
        matches!(self, StoreError::DiskLow { .. } | StoreError::Failed(_))
    }

    /// The bytes on disk are bad (a record that does not decode, a page
    /// sled finds corrupt or cut short), as opposed to a refusal or an I/O
    /// failure that may pass (EMFILE, ENOSPC).
    pub fn is_damage(&self) -> bool {
        match self {
            StoreError::Codec(_) | StoreError::Corrupt { .. } | StoreError::Unreadable { .. } => {
                true
            }
            StoreError::Sled(e) => check::sled_damage(e),
            _ => false,
        }
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// 4200 with what happened. A refusal (low disk space, a failed store) was
/// logged once when it began, so it is not logged again per request; other
/// errors are logged at most once a second.
impl From<StoreError> for ErrorBody {
    fn from(e: StoreError) -> Self {
        let detail = match &e {
            StoreError::DiskLow { .. } => "not stored: the server's disk is full; try again later",
            StoreError::Failed(_) => "not stored: the server's store failed and it is restarting",
            // Noted per conversation and reported by /healthz (`store::check`).
            e if e.is_damage() => "stored records here are damaged and cannot be read",
            _ => {
                health::log_error(&e);
                "storage failure"
            }
        };
        ErrorBody::new(ErrorCode::InternalError, detail)
    }
}
