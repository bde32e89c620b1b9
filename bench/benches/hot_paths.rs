//! Criterion benchmarks of the server's hot paths (issue #3).
//!
//! - `codec/…`: framing + bincode of the two frames every message crosses:
//!   the client's `Request{Send}` and the server's `Event(Message)`.
//! - `conv_table/…`: `ConversationTable::get` from 1, 2 and 4 threads, and a
//!   90% get / 10% insert mix, over 10 000 conversations.
//! - `store_append/…`: one group commit, `append_unsynced` of 1, 16 or 256
//!   log entries then `flush_durable`, with fsync on and off.
//! - `fanout/…`: `Registry::send_to` of one pre-encoded message to 10, 100
//!   or 1000 online clients.
//! - `metrics/…`: what the hot paths pay to count: `METRICS`'s counter add
//!   against a bare relaxed `fetch_add` on a static (what `metrics.rs` did
//!   before it used prometheus-client), and its lock-free histogram against
//!   prometheus-client's own (a mutex per observation).
//!
//! Run with `cargo bench --bench hot_paths`; add a filter such as
//! `-- fanout` to run one group. Measurement times are kept short so the
//! whole run stays within a few minutes on a small shared machine.

use std::hint::black_box;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use criterion::{
    BatchSize, BenchmarkGroup, Criterion, SamplingMode, Throughput, criterion_group,
    criterion_main, measurement::WallTime,
};
use rand::seq::SliceRandom;
use tokio::sync::mpsc;

use tidings::core::conversation::Conv;
use tidings::core::outbound::{Outbound, StoredFrame};
use tidings::protocol::{
    ClientFrame, Command, Content, ConvId, ConvKind, Event, Message, SendMessage, ServerFrame,
};
use tidings::registry::{DeviceHandle, Registry};
use tidings::store::{ConversationRecord, LogEntry, Store};
use tidings::wire::codec;
use tidings::wire::frame::{self, FrameDecoder};

/// The frame limit the server uses by default; only the header check reads it.
const MAX_FRAME: usize = 1024 * 1024;

/// Short timings: the machine is small and shared.
fn configure(g: &mut BenchmarkGroup<'_, WallTime>, samples: usize) {
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(samples);
}

/// 100 bytes of ASCII text, the "typical chat message" of these benchmarks.
fn text_100() -> String {
    let s: String = "The quick brown fox jumps over the lazy dog. "
        .chars()
        .cycle()
        .take(100)
        .collect();
    assert_eq!(s.len(), 100);
    s
}

fn sample_message(conv: ConvId, seq: u64) -> Message {
    Message {
        msg_id: format!("{seq:0>20}"),
        ..Message::new(
            conv,
            seq,
            "client-0042",
            1_700_000_000_000 + seq,
            Content::Text(text_100()),
        )
    }
}

fn event_frame_value(conv: ConvId) -> ServerFrame {
    ServerFrame::Event(Event::Message {
        msg: sample_message(conv, 12_345),
        redelivered: false,
        chat_room: false,
    })
}

// ---------------------------------------------------------------- codec

fn bench_codec(c: &mut Criterion) {
    let conv = ConvId([0x5a; 12]);
    let event = event_frame_value(conv);
    let request = ClientFrame::Request {
        id: 4242,
        cmd: Command::Send(SendMessage::text(conv, text_100())),
    };
    codec_pair(c, "codec/event_message", &event);
    codec_pair(c, "codec/request_send", &request);
}

/// `encode` is `transport::frame::encode` (header + bincode into a fresh
/// buffer); `decode` feeds one frame to a reused `FrameDecoder`, splits the
/// body off and decodes it with `codec::decode`, as a session reader does.
fn codec_pair<T>(c: &mut Criterion, name: &str, value: &T)
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let bytes = frame::encode(value).expect("encode");
    let mut check = FrameDecoder::new(MAX_FRAME);
    check.extend(&bytes);
    let body = check.next_body().expect("frame").expect("whole frame");
    assert_eq!(&codec::decode::<T>(&body).expect("decode"), value);

    let mut g = c.benchmark_group(name);
    configure(&mut g, 50);
    g.throughput(Throughput::Bytes(bytes.len() as u64));
    g.bench_function("encode", |b| {
        b.iter(|| frame::encode(black_box(value)).expect("encode"))
    });
    g.bench_function("decode", |b| {
        let mut dec = FrameDecoder::new(MAX_FRAME);
        b.iter(|| {
            dec.extend(black_box(&bytes));
            let body = dec.next_body().expect("frame").expect("whole frame");
            codec::decode::<T>(&body).expect("decode")
        })
    });
    g.finish();
}

// ---------------------------------------------------------------- conversation table

const CONVS: usize = 10_000;
/// Operations each thread performs per measured iteration.
const OPS_PER_THREAD: usize = 1_000;

fn conv_record(id: ConvId, i: usize) -> ConversationRecord {
    let mut members = vec![format!("client-{:05}", i), format!("client-{:05}", i + 1)];
    members.sort();
    ConversationRecord {
        id,
        kind: ConvKind::Normal,
        name: Some(format!("conv {i}")),
        attr: None,
        creator: members[0].clone(),
        members,
        managers: Vec::new(),
        muted: Vec::new(),
        unique: false,
        created_at: 1_700_000_000_000,
        updated_at: 1_700_000_000_000,
    }
}

fn bench_conv_table(c: &mut Criterion) {
    // Built the way the server builds it: records in the store, then `load`.
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), 64 << 20, false).expect("store");
    let ids: Vec<ConvId> = (0..CONVS).map(|_| ConvId::random()).collect();
    for (i, id) in ids.iter().enumerate() {
        store
            .put_conversation(&conv_record(*id, i))
            .expect("put_conversation");
    }
    let table = tidings::server::load_conversations(&store).expect("load");
    assert_eq!(table.len(), CONVS);
    // Handles to re-insert in the mixed case: replacing an entry takes the
    // shard's write lock exactly as a new conversation does, and keeps the
    // table at 10k entries however long criterion runs.
    let convs: Vec<Arc<Conv>> = ids
        .iter()
        .map(|id| table.get(id).expect("loaded"))
        .collect();
    // Every thread walks its own shuffled order so threads rarely touch the
    // same conversation (and its refcount) at the same moment.
    let orders: Vec<Vec<usize>> = (0..4)
        .map(|_| {
            let mut o: Vec<usize> = (0..CONVS).collect();
            o.shuffle(&mut rand::thread_rng());
            o
        })
        .collect();

    let mut g = c.benchmark_group("conv_table");
    configure(&mut g, 30);
    for threads in [1usize, 2, 4] {
        g.throughput(Throughput::Elements((threads * OPS_PER_THREAD) as u64));
        g.bench_function(format!("get/{threads}_threads"), |b| {
            b.iter_custom(|iters| {
                run_threads(threads, iters, &orders, |order, k| {
                    black_box(table.get(&ids[order[k]]));
                })
            })
        });
    }
    for threads in [1usize, 2, 4] {
        g.throughput(Throughput::Elements((threads * OPS_PER_THREAD) as u64));
        g.bench_function(format!("mixed_90get_10insert/{threads}_threads"), |b| {
            b.iter_custom(|iters| {
                run_threads(threads, iters, &orders, |order, k| {
                    let i = order[k];
                    if k % 10 == 9 {
                        table.insert(convs[i].clone());
                    } else {
                        black_box(table.get(&ids[i]));
                    }
                })
            })
        });
    }
    g.finish();
    drop(table);
    drop(store);
}

/// Runs `op` `iters * OPS_PER_THREAD` times on each of `threads` threads and
/// returns the wall time from a common start to the last thread's end.
fn run_threads<F>(threads: usize, iters: u64, orders: &[Vec<usize>], op: F) -> Duration
where
    F: Fn(&[usize], usize) + Sync,
{
    let start = Barrier::new(threads + 1);
    let total = iters as usize * OPS_PER_THREAD;
    let t = std::thread::scope(|s| {
        for order in orders.iter().take(threads) {
            let (start, op) = (&start, &op);
            s.spawn(move || {
                start.wait();
                let mut k = 0;
                for _ in 0..total {
                    op(order, k);
                    k += 1;
                    if k == order.len() {
                        k = 0;
                    }
                }
            });
        }
        start.wait();
        // Leaving the scope joins every thread, so the clock runs until the last ends.
        Instant::now()
    });
    t.elapsed()
}

// ---------------------------------------------------------------- store append

fn log_entry(conv: ConvId, seq: u64) -> LogEntry {
    let mut msg = sample_message(conv, seq);
    // Unique per run, like the pipeline's random 20-character ids.
    msg.msg_id = format!("{:0>12}{seq:0>8}", conv.0[0]);
    LogEntry::new(msg, "default", "10.0.0.7")
}

fn bench_store_append(c: &mut Criterion) {
    let mut g = c.benchmark_group("store_append");
    configure(&mut g, 20);
    // A durable flush costs milliseconds; flat sampling avoids criterion's
    // growing per-sample iteration counts.
    g.sampling_mode(SamplingMode::Flat);
    for fsync in [false, true] {
        for batch in [1usize, 16, 256] {
            // A fresh store per case, so earlier cases' data don't weigh on it.
            let dir = tempfile::tempdir().expect("tempdir");
            let store = Store::open(dir.path(), 64 << 20, fsync).expect("store");
            // 16 conversations, messages spread round-robin, as a busy group
            // commit would see them.
            let convs: Vec<ConvId> = (0..16u8)
                .map(|i| {
                    let mut id = ConvId::random();
                    id.0[0] = i;
                    id
                })
                .collect();
            let mut next_seq = 0u64;
            let label = if fsync { "fsync_on" } else { "fsync_off" };
            g.throughput(Throughput::Elements(batch as u64));
            g.bench_function(format!("{label}/batch_{batch}"), |b| {
                b.iter_batched(
                    || {
                        (0..batch)
                            .map(|i| {
                                if i % convs.len() == 0 {
                                    next_seq += 1;
                                }
                                log_entry(convs[i % convs.len()], next_seq)
                            })
                            .collect::<Vec<_>>()
                    },
                    |entries| {
                        store.append_unsynced(&entries, &[]).expect("append");
                        store.flush_durable().expect("flush");
                        entries
                    },
                    BatchSize::LargeInput,
                )
            });
            drop(store);
        }
    }
    g.finish();
}

// ---------------------------------------------------------------- fan-out

/// Outbound items allowed to pile up in receivers between drains.
const FANOUT_BACKLOG: u64 = 64 * 1024;

fn bench_fanout(c: &mut Criterion) {
    let conv = ConvId([0x5a; 12]);
    let out = Outbound::Message(Arc::new(StoredFrame {
        conv,
        seq: 12_345,
        frame: frame::encode(&event_frame_value(conv)).expect("encode"),
        receipt: None,
        chat_room: false,
    }));
    let mut g = c.benchmark_group("fanout");
    configure(&mut g, 30);
    for n in [10usize, 100, 1000] {
        let registry = Registry::default();
        let clients: Vec<String> = (0..n).map(|i| format!("client-{i:05}")).collect();
        let mut rxs = Vec::with_capacity(n);
        for (i, client) in clients.iter().enumerate() {
            let (tx, rx) = mpsc::unbounded_channel();
            let device = DeviceHandle {
                conn_id: i as u64,
                device_id: "default".into(),
                tag: None,
                tx,
                direct: None,
            };
            registry.register(client, device, false).expect("register");
            rxs.push(rx);
        }
        // The sender's own connection is skipped, as in the pipeline; use one
        // that is not among the receivers so every client gets a copy.
        let skip = Some(u64::MAX);
        let chunk = (FANOUT_BACKLOG / n as u64).max(1);
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function(format!("send_to/{n}_clients"), |b| {
            b.iter_custom(|iters| {
                let mut spent = Duration::ZERO;
                let mut left = iters;
                while left > 0 {
                    let k = left.min(chunk);
                    let t = Instant::now();
                    for _ in 0..k {
                        registry.send_to(clients.iter().map(String::as_str), skip, &out);
                    }
                    spent += t.elapsed();
                    // Untimed: keep memory bounded and the channels warm.
                    for rx in &mut rxs {
                        while rx.try_recv().is_ok() {}
                    }
                    left -= k;
                }
                spent
            })
        });
    }
    g.finish();
}

// ---------------------------------------------------------------- metrics

fn bench_metrics(c: &mut Criterion) {
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
    use tidings::metrics::METRICS;

    static BARE: AtomicU64 = AtomicU64::new(0);
    let mut g = c.benchmark_group("metrics");
    configure(&mut g, 50);
    g.bench_function("counter/bare_static_atomic", |b| {
        b.iter(|| BARE.fetch_add(black_box(1), Relaxed))
    });
    g.bench_function("counter/metrics_messages_out", |b| {
        b.iter(|| METRICS.messages_out(black_box(1)))
    });
    let d = Duration::from_micros(1_700);
    g.bench_function("histogram/metrics_delivery", |b| {
        b.iter(|| METRICS.delivery.observe(black_box(d)))
    });
    let crate_histogram = prometheus_client::metrics::histogram::Histogram::new([
        0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
        5.0, 10.0,
    ]);
    g.bench_function("histogram/prometheus_client", |b| {
        b.iter(|| crate_histogram.observe(black_box(d).as_secs_f64()))
    });
    g.finish();
}

criterion_group!(
    benches,
    bench_codec,
    bench_conv_table,
    bench_store_append,
    bench_fanout,
    bench_metrics
);
criterion_main!(benches);
