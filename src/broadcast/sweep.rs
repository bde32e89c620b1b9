//! Expired broadcast records go in the background.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast as signal;
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use crate::hub::Hub;
use crate::metrics::METRICS;
use crate::store::{Store, StoreError};
use crate::util::now_ms;

/// How often expired records are swept.
const SWEEP_EVERY: Duration = Duration::from_secs(1);
const SWEEP_BATCH: usize = 1000;

/// Removes every record expired by `now`; how many went.
pub fn sweep(store: &Store, now: u64) -> Result<u64, StoreError> {
    let mut n = 0;
    loop {
        let ids = store.expired_broadcasts(now, SWEEP_BATCH)?;
        for &id in &ids {
            n += u64::from(store.remove_broadcast(id)?);
        }
        if ids.len() < SWEEP_BATCH {
            return Ok(n);
        }
    }
}

/// Sweeps expired records every second until `shutdown`, off the async
/// workers; sends never wait for it.
pub fn start_sweeper(hub: &Arc<Hub>, shutdown: signal::Receiver<()>) -> JoinHandle<()> {
    crate::hub::every(hub, SWEEP_EVERY, shutdown, |hub| async move {
        let store = hub.store.clone();
        match tokio::task::spawn_blocking(move || sweep(&store, now_ms())).await {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => {
                METRICS.broadcasts_swept(n);
                debug!(records = n, "expired broadcasts swept");
            }
            Ok(Err(e)) => warn!(error = %e, "broadcast sweep failed"),
            Err(e) => warn!(error = %e, "broadcast sweep task failed"),
        }
    })
}
