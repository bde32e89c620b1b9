//! The queue in front of the commit and room threads: a mutex, a condvar
//! and a `VecDeque`, and no spinning.
//!
//! crossbeam's channel, used here before, spins and then calls
//! `sched_yield` about four times in `recv` and four more in its park
//! before it sleeps. With the server on one core that was 4.3 `sched_yield`
//! calls and ~0.8 involuntary context switches per message at 2,000 msgs/s
//! (docs/PERFORMANCE.md), each handing the core to another thread only to
//! come back. Here a receiver sleeps at once, a sender wakes it only when it
//! asked to be woken, and a group's linger is one timed sleep that sends do
//! not interrupt (unless they fill the group): a group of k jobs costs one
//! wake-up, not k.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::{Condvar, Mutex};

struct State<T> {
    items: VecDeque<T>,
    senders: usize,
    receiver: bool,
    /// The receiver sleeps until the queue holds this many (0: awake).
    wake_at: usize,
}

struct Shared<T> {
    state: Mutex<State<T>>,
    ready: Condvar,
}

pub(super) struct Sender<T>(Arc<Shared<T>>);

pub(super) struct Receiver<T>(Arc<Shared<T>>);

pub(super) fn channel<T>() -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            items: VecDeque::new(),
            senders: 1,
            receiver: true,
            wake_at: 0,
        }),
        ready: Condvar::new(),
    });
    (Sender(shared.clone()), Receiver(shared))
}

impl<T> Sender<T> {
    /// Queues `item`; gives it back when the receiver is gone.
    pub(super) fn send(&self, item: T) -> Result<(), T> {
        let mut s = self.0.state.lock();
        if !s.receiver {
            return Err(item);
        }
        s.items.push_back(item);
        let wake = s.wake_at != 0 && s.items.len() >= s.wake_at;
        if wake {
            s.wake_at = 0;
        }
        drop(s);
        if wake {
            self.0.ready.notify_one();
        }
        Ok(())
    }
}

#[cfg(test)]
impl<T> Sender<T> {
    /// How many queued items the receiver sleeps for (0: it is awake).
    fn receiver_waits_for(&self) -> usize {
        self.0.state.lock().wake_at
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.0.state.lock().senders += 1;
        Sender(self.0.clone())
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let mut s = self.0.state.lock();
        s.senders -= 1;
        if s.senders == 0 {
            s.wake_at = 0;
            drop(s);
            self.0.ready.notify_one();
        }
    }
}

impl<T> Receiver<T> {
    /// Sleeps until something is queued, then moves up to `max` items into
    /// `out`. False once the queue is empty and every sender is gone.
    pub(super) fn recv_into(&self, out: &mut Vec<T>, max: usize) -> bool {
        let mut s = self.0.state.lock();
        while s.items.is_empty() {
            if s.senders == 0 {
                return false;
            }
            s.wake_at = 1;
            self.0.ready.wait(&mut s);
        }
        take(&mut s.items, out, max);
        true
    }

    /// Sleeps until `deadline`, or until enough is queued to bring `out` to
    /// `max`, or the last sender is gone; then moves what is queued into
    /// `out`, up to `max` in all.
    pub(super) fn gather_until(&self, out: &mut Vec<T>, max: usize, deadline: Instant) {
        let mut s = self.0.state.lock();
        loop {
            let want = max.saturating_sub(out.len());
            if want == 0 || s.items.len() >= want || s.senders == 0 {
                break;
            }
            s.wake_at = want;
            if self.0.ready.wait_until(&mut s, deadline).timed_out() {
                break;
            }
        }
        s.wake_at = 0;
        take(&mut s.items, out, max);
    }
}

fn take<T>(items: &mut VecDeque<T>, out: &mut Vec<T>, max: usize) {
    let n = max.saturating_sub(out.len()).min(items.len());
    out.extend(items.drain(..n));
}

impl<T> Drop for Receiver<T> {
    /// What is still queued is dropped with it: a job's reply channel then
    /// tells its sender the server is shutting down.
    fn drop(&mut self) {
        let items = {
            let mut s = self.0.state.lock();
            s.receiver = false;
            std::mem::take(&mut s.items)
        };
        drop(items);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::Duration;

    use super::*;

    /// Longest a test waits for the receiving thread; far beyond what a
    /// working queue needs, so only a lost wake-up reaches it.
    const WAIT: Duration = Duration::from_secs(10);

    /// Runs `f` on a thread of its own; its result, if it comes in [`WAIT`].
    fn on_thread<T: Send + 'static>(
        f: impl FnOnce() -> T + Send + 'static,
    ) -> impl FnOnce() -> Option<T> {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(f());
        });
        move || rx.recv_timeout(WAIT).ok()
    }

    /// Until the receiver sleeps waiting for `n` queued items (bounded by
    /// [`WAIT`]), so a test's next send has to wake it.
    fn until_asleep_for<T>(tx: &Sender<T>, n: usize) {
        let end = Instant::now() + WAIT;
        while tx.receiver_waits_for() != n {
            assert!(Instant::now() < end, "the receiver never went to sleep");
            std::thread::yield_now();
        }
    }

    #[test]
    fn items_come_out_in_order_up_to_max() {
        let (tx, rx) = channel();
        for i in 0..5 {
            assert!(tx.send(i).is_ok());
        }
        let mut out = Vec::new();
        assert!(rx.recv_into(&mut out, 3));
        assert_eq!(out, [0, 1, 2]);
        out.clear();
        assert!(rx.recv_into(&mut out, 3));
        assert_eq!(out, [3, 4]);
    }

    #[test]
    fn a_sleeping_receiver_is_woken_by_a_send_from_another_thread() {
        let (tx, rx) = channel();
        let got = on_thread(move || {
            let mut out = Vec::new();
            rx.recv_into(&mut out, 8);
            out
        });
        until_asleep_for(&tx, 1);
        assert!(tx.send(7).is_ok());
        assert_eq!(got(), Some(vec![7]));
    }

    #[test]
    fn the_receiver_ends_when_every_sender_is_gone_and_the_queue_is_empty() {
        let (tx, rx) = channel();
        let tx2 = tx.clone();
        assert!(tx.send(1).is_ok());
        drop(tx);
        let got = on_thread(move || {
            let mut out = Vec::new();
            let mut rounds = Vec::new();
            while rx.recv_into(&mut out, 8) {
                rounds.push(std::mem::take(&mut out));
            }
            rounds.concat()
        });
        until_asleep_for(&tx2, 1);
        assert!(tx2.send(2).is_ok());
        // The last sender's drop is what must wake it now.
        until_asleep_for(&tx2, 1);
        drop(tx2);
        assert_eq!(got(), Some(vec![1, 2]));
    }

    #[test]
    fn a_send_after_the_receiver_is_gone_gives_the_item_back() {
        let (tx, rx) = channel::<u8>();
        drop(rx);
        assert_eq!(tx.send(3), Err(3));
    }

    #[test]
    fn gathering_returns_at_the_deadline_with_what_came() {
        let (tx, rx) = channel();
        assert!(tx.send(1).is_ok());
        let mut out = vec![0];
        rx.gather_until(&mut out, 10, Instant::now() + Duration::from_millis(5));
        assert_eq!(out, [0, 1]);
    }

    #[test]
    fn gathering_ends_early_once_the_group_is_full() {
        let (tx, rx) = channel();
        let got = on_thread(move || {
            let mut out = Vec::new();
            // An hour away: only a full group ends this wait within WAIT.
            rx.gather_until(&mut out, 3, Instant::now() + Duration::from_secs(3600));
            out
        });
        until_asleep_for(&tx, 3);
        for i in 0..3 {
            assert!(tx.send(i).is_ok());
        }
        assert_eq!(got(), Some(vec![0, 1, 2]));
    }
}
