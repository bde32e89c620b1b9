//! The live half of a broadcast: a task hands it to the clients online
//! now, a step at a time, paced so chat traffic is not queued behind it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use tracing::debug;

use crate::core::outbound::Outbound;
use crate::hub::Hub;
use crate::metrics::METRICS;

/// Who a fan-out walks.
pub(super) enum Audience {
    Everyone,
    Subscribers(Vec<String>),
}

/// Runs the online fan-out off the request: the answer does not wait for
/// 100,000 clients, and the task holds the server only weakly, a step at a
/// time, so a shutdown is not held up by it.
pub(super) fn spawn_fan_out(
    hub: &Arc<Hub>,
    audience: Audience,
    skip: Option<String>,
    out: Outbound,
) {
    let running = FanOutRunning::new(hub);
    let hub = Arc::downgrade(hub);
    tokio::spawn(async move {
        let _running = running;
        let started = Instant::now();
        let Some(reached) = fan_out(&hub, audience, skip.as_deref(), &out).await else {
            return;
        };
        let took = started.elapsed();
        METRICS.broadcast_fan_out.observe(took);
        METRICS.broadcast_delivered(reached);
        debug!(
            clients = reached,
            ms = took.as_millis() as u64,
            "broadcast fan-out done"
        );
    });
}

/// Counts a fan-out in `Hub::fan_outs` from before the request is answered
/// until its task ends, however it ends.
struct FanOutRunning(Arc<AtomicU64>);

impl FanOutRunning {
    fn new(hub: &Hub) -> Self {
        hub.fan_outs.fetch_add(1, Ordering::Relaxed);
        FanOutRunning(hub.fan_outs.clone())
    }
}

impl Drop for FanOutRunning {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Hands `out` to every device of the audience online now, `fan_out_step`
/// clients per step. The number of clients reached; `None` once the server
/// is gone.
async fn fan_out(
    hub: &Weak<Hub>,
    audience: Audience,
    skip: Option<&str>,
    out: &Outbound,
) -> Option<u64> {
    let (step_len, mut pace) = {
        let hub = hub.upgrade()?;
        let sys = &hub.config.system;
        let step_len = usize::try_from(sys.fan_out_step)
            .unwrap_or(usize::MAX)
            .max(1);
        (step_len, Pace::new(sys.fan_out_rate))
    };
    match audience {
        Audience::Subscribers(list) => {
            for chunk in list.chunks(step_len) {
                let n = step(hub, chunk, skip, out)?;
                pace.after(n).await;
            }
        }
        Audience::Everyone => {
            let shards = hub.upgrade()?.registry.shard_count();
            for shard in 0..shards {
                let online = hub.upgrade()?.registry.online_in_shard(shard);
                for chunk in online.chunks(step_len) {
                    let n = step(hub, chunk, skip, out)?;
                    pace.after(n).await;
                }
            }
        }
    }
    Some(pace.reached)
}

/// Spreads a fan-out over time. Every delivery wakes a session and, a moment
/// later, brings back the client's ack through the one UDP socket all
/// connections share; handing 2,000 at once queues a chat message behind
/// all of that (tens of ms on 2 cores, see docs/PERFORMANCE.md).
struct Pace {
    started: tokio::time::Instant,
    /// Deliveries per second; 0: only a yield between steps.
    rate: u64,
    reached: u64,
}

impl Pace {
    fn new(rate: u64) -> Self {
        Pace {
            started: tokio::time::Instant::now(),
            rate,
            reached: 0,
        }
    }

    /// After a step that reached `n` clients: waits until the schedule
    /// allows the next, and always lets other tasks run.
    async fn after(&mut self, n: u64) {
        self.reached += n;
        if self.rate > 0 {
            let due =
                self.started + Duration::from_secs_f64(self.reached as f64 / self.rate as f64);
            if due > tokio::time::Instant::now() {
                tokio::time::sleep_until(due).await;
                return;
            }
        }
        tokio::task::yield_now().await;
    }
}

/// One step: the message to these clients' devices. How many it reached.
fn step(hub: &Weak<Hub>, clients: &[String], skip: Option<&str>, out: &Outbound) -> Option<u64> {
    let hub = hub.upgrade()?;
    let reached = clients
        .iter()
        .filter(|c| Some(c.as_str()) != skip && hub.registry.send_to_client(c, out))
        .count();
    Some(reached as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On tokio's virtual clock: each step waits for its share of a second.
    #[tokio::test(start_paused = true)]
    async fn pace_spreads_a_fan_out_over_time() {
        let t0 = tokio::time::Instant::now();
        let mut p = Pace::new(1000);
        p.after(100).await;
        assert_eq!(t0.elapsed(), Duration::from_millis(100));
        p.after(0).await;
        assert_eq!(t0.elapsed(), Duration::from_millis(100));
        p.after(400).await;
        assert_eq!(t0.elapsed(), Duration::from_millis(500));
        assert_eq!(p.reached, 500);
        let t1 = tokio::time::Instant::now();
        let mut unpaced = Pace::new(0);
        unpaced.after(1_000_000).await;
        assert_eq!(t1.elapsed(), Duration::ZERO);
    }
}
