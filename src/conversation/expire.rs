//! Temporary conversations past their TTL go in the background, with their
//! history. Until then the table already answers 4323 for them
//! (`ConversationTable::live`), so the sweep's pace is only about disk.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast as signal;
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use crate::hub::Hub;
use crate::protocol::ErrorBody;
use crate::util::now_ms;

const SWEEP_EVERY: Duration = Duration::from_secs(30);
const SWEEP_BATCH: usize = 256;

/// Removes every temporary conversation expired by `now_ms`; how many went.
pub async fn sweep(hub: &Hub, now_ms: u64) -> Result<usize, ErrorBody> {
    let mut n = 0;
    loop {
        let ids = hub.convs.expired(now_ms, SWEEP_BATCH);
        for &id in &ids {
            let Some(c) = hub.convs.get(&id) else {
                continue;
            };
            let rec = c.state.read().rec.clone();
            let messages = super::delete::remove(hub, &c, &rec).await?;
            debug!(conv = %id, messages, "temporary conversation expired");
            n += 1;
        }
        if ids.len() < SWEEP_BATCH {
            return Ok(n);
        }
    }
}

/// Sweeps every [`SWEEP_EVERY`] (and once at start, for those that expired
/// while the server was down) until `shutdown`.
pub fn start_expirer(hub: &Arc<Hub>, shutdown: signal::Receiver<()>) -> JoinHandle<()> {
    crate::hub::every(hub, SWEEP_EVERY, shutdown, |hub| async move {
        match sweep(&hub, now_ms()).await {
            Ok(0) => {}
            Ok(n) => debug!(conversations = n, "expired temporary conversations removed"),
            Err(e) => warn!(error = %e, "temporary conversation sweep failed"),
        }
    })
}
