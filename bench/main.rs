//! `tidings-bench`: drives a Tidings server over real QUIC through
//! `tidings::client` with open-loop load, and reports latency from each
//! message's scheduled send time, loss, duplicates, and what the server
//! spent in CPU and memory. Usage and the scenarios: bench/README.md.

mod apns;
mod baseline;
mod broadcast;
mod hooks;
mod im;
mod load;
mod mqtt;
mod push;
mod report;
mod sys;
mod target;
mod ws;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use serde::Serialize;
use serde_json::{Value, json};
use tidings::config::duration;

use report::Measured;
use target::Target;

/// Load generator and measurement tool for Tidings.
#[derive(Debug, Parser)]
#[command(name = "tidings-bench", version)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Login storm: QUIC handshake + signed login at --rate logins/s; server CPU per login.
    Connect(LoadArgs),
    /// --connections logged-in connections held idle; server RSS per connection and idle CPU.
    Idle(LoadArgs),
    /// --pairs one-to-one conversations, a→b, --rate msgs/s in total.
    Direct(LoadArgs),
    /// The `direct` load over the LeanCloud door: WebSocket, lc.protobuf2.3, as the SDKs speak it.
    WsDirect(LoadArgs),
    /// Groups of --group-size members out of --connections clients; every member sends.
    Group(LoadArgs),
    /// One chat room of --room-members members; every member sends.
    Room(LoadArgs),
    /// --rate history queries/s against one conversation of --history-size messages.
    History(LoadArgs),
    /// The `direct` load through a bare QUIC relay with no IM logic: the transport's limit.
    Baseline(LoadArgs),
    /// Group-committed store appends alone at --rate, as the server commits them: the storage limit.
    BaselineStore(LoadArgs),
    /// The `direct` load twice: without hooks, then with a no-op `_messageReceived` hook served locally.
    Hooks(LoadArgs),
    /// --clients online clients, --count broadcasts at --rate/s through the admin API, with a small `direct` load alongside.
    Broadcast(LoadArgs),
    /// The `direct` load against an MQTT broker, QoS 1 (see bench/compare-mosquitto.sh).
    Mqtt(MqttArgs),
    /// --receivers offline clients with an iOS device each; --rate msgs/s to them become pushes through one APNs connection to a local stand-in.
    Push(LoadArgs),
    /// The relay `baseline` runs as a child; prints its address and pin, relays until SIGTERM.
    #[command(hide = true)]
    BaselineRelayServer {
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
    },
    /// Prints key figures of several --json files side by side.
    #[command(hide = true)]
    CompareJson {
        files: Vec<PathBuf>,
        /// Repeated runs: medians per offered rate and scenario, and their ratios.
        #[arg(long)]
        medians: bool,
        /// One Markdown table: a row per load (direct, baseline, mqtt at each rate; room against mqtt --room), a group of columns per system.
        #[arg(long, conflicts_with = "medians")]
        table: bool,
    },
}

/// Parameters shared by every scenario; each uses the ones that apply to it.
#[derive(Debug, Clone, Args, Serialize)]
pub struct LoadArgs {
    /// Measured window: seconds (10, 2.5) or a duration (5s, 500ms, 2m).
    #[arg(long, default_value_t = 10.0, value_name = "DURATION", value_parser = duration::parse_secs)]
    pub duration: f64,
    /// Load before the window that is not counted: seconds or a duration.
    #[arg(long, default_value_t = 2.0, value_name = "DURATION", value_parser = duration::parse_secs)]
    pub warmup: f64,
    /// Longest wait after the window for answers and receipts still on their way: seconds or a duration.
    #[arg(long, default_value_t = 5.0, value_name = "DURATION", value_parser = duration::parse_secs)]
    pub drain: f64,
    /// Most messages (logins, queries, appends) in the window.
    #[arg(long)]
    pub messages: Option<u64>,
    /// Offered load per second, in total [default: 1000 msgs; history 500 queries; connect 200 logins].
    #[arg(long)]
    pub rate: Option<f64>,
    /// Message content size, bytes (at least 16: the send time and message number).
    #[arg(long, default_value_t = 100)]
    pub payload: usize,
    /// Clients: idle [1000], group [10 × group size], history [10]; connect: most logins.
    #[arg(long)]
    pub connections: Option<usize>,
    /// One-to-one pairs (direct, baseline, baseline-store conversations, mqtt).
    #[arg(long, default_value_t = 100)]
    pub pairs: usize,
    /// Members per group (2 to 500).
    #[arg(long, default_value_t = 10)]
    pub group_size: usize,
    /// Members of the chat room.
    #[arg(long, default_value_t = 100)]
    pub room_members: usize,
    /// Messages the history conversation is filled with.
    #[arg(long, default_value_t = 1000)]
    pub history_size: u64,
    /// Messages per history page.
    #[arg(long, default_value_t = 20)]
    pub history_limit: u32,
    /// connect: keep every connection open after its login.
    #[arg(long)]
    pub hold: bool,
    /// fdatasync after each group commit: TIDINGS_STORE_FSYNC for a spawned server, and baseline-store [default: true].
    #[arg(long, value_name = "true|false")]
    pub fsync: Option<bool>,
    /// Extra environment for the spawned server, e.g. TIDINGS_STORE_GROUP_COMMIT_MAX=256.
    #[arg(long = "server-env", value_name = "KEY=VALUE")]
    pub server_env: Vec<String>,
    /// Use this running server instead of spawning one.
    #[arg(long)]
    pub server: Option<SocketAddr>,
    /// The running server's data dir: its address, certificate pin and credentials.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Certificate SHA-256 of the running server (instead of --data-dir).
    #[arg(long)]
    pub pin: Option<String>,
    #[arg(long)]
    pub app_id: Option<String>,
    #[arg(long)]
    #[serde(skip)]
    pub master_key: Option<String>,
    /// The running server's LeanCloud door, for ws-direct [default: 127.0.0.1:7452, the config's default].
    #[arg(long)]
    pub gateway: Option<SocketAddr>,
    /// The running server's pid, for CPU and RSS samples.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Pin the server to these CPUs (as taskset -c writes them: 0, 0,2, 0-3): a spawned server or relay from its start, an existing one (--server-pid, --broker-pid) thread by thread.
    #[arg(long, value_name = "CPUS", value_parser = sys::cpu_list_arg)]
    pub server_cpus: Option<sys::CpuList>,
    /// Pin this generator (every thread of it) to these CPUs; best apart from --server-cpus.
    #[arg(long, value_name = "CPUS", value_parser = sys::cpu_list_arg)]
    pub generator_cpus: Option<sys::CpuList>,
    /// The server binary to spawn [default: `tidings` next to this executable].
    #[arg(long)]
    pub tidings_bin: Option<PathBuf>,
    /// Where scratch data dirs go [default: the system temp dir].
    #[arg(long)]
    pub tmp_dir: Option<PathBuf>,
    /// Clients sharing one UDP socket.
    #[arg(long, default_value_t = 200)]
    pub clients_per_endpoint: usize,
    /// Connections being set up at once.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Generator worker threads; it shares the machine with the server, so keep it small.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// broadcast: clients online to receive the broadcasts [default: 2000; at most 100000].
    #[arg(long)]
    pub clients: Option<usize>,
    /// broadcast: broadcasts in the window [default: 20], sent at --rate per second [default: 2].
    #[arg(long)]
    pub count: Option<u64>,
    /// broadcast: subscribe the clients to the service conversation and broadcast to its subscribers, instead of a global broadcast.
    #[arg(long)]
    pub subscribe: bool,
    /// broadcast: one-to-one pairs of the `direct` load run alongside (0 for none).
    #[arg(long, default_value_t = 50)]
    pub direct_pairs: usize,
    /// broadcast: offered rate of that `direct` load, msgs/s.
    #[arg(long, default_value_t = 500.0)]
    pub direct_rate: f64,
    /// The running server's admin API (broadcast) [default: admin.addr in --data-dir].
    #[arg(long)]
    pub admin: Option<SocketAddr>,
    /// push: offline receivers, each with an iOS device [default: 1000].
    #[arg(long)]
    pub receivers: Option<usize>,
    /// push: offline receivers per conversation: 1 for one-to-one conversations, more for groups of one sender and that many receivers.
    #[arg(long, default_value_t = 1)]
    pub fanout: usize,
    /// push: the server's `push.queue_capacity` [default: twice the pushes the run schedules, at least 10000].
    #[arg(long)]
    pub queue_capacity: Option<u64>,
    /// push: first send the same load to offline members without devices, and report the server's CPU per push net of messaging.
    #[arg(long)]
    pub compare_no_push: bool,
    /// direct: also run baseline and baseline-store with the same parameters and print the ratio.
    #[arg(long)]
    pub compare_baseline: bool,
    /// Write every figure and parameter here as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Debug, Clone, Args, Serialize)]
pub struct MqttArgs {
    /// Broker address.
    #[arg(long)]
    pub broker: SocketAddr,
    /// CA certificate (PEM) for a TLS listener; without it, plain TCP.
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// The broker's pid, for CPU and RSS samples (and --server-cpus).
    #[arg(long)]
    pub broker_pid: Option<u32>,
    /// The room against a topic: one topic with --room-members subscribers, so every message
    /// reaches all of them, published by --publishers connections in turn.
    #[arg(long)]
    pub room: bool,
    /// With --room: publisher connections (they do not subscribe).
    #[arg(long, default_value_t = 1)]
    pub publishers: usize,
    #[command(flatten)]
    pub load: LoadArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The generator's own diagnostics (its QUIC stack's, too) on stderr,
    // only when asked for: `RUST_LOG=quinn_proto=debug tidings-bench ...`.
    if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_env("RUST_LOG") {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init();
    }
    load::base();
    // Before the runtime (or anything else) starts a thread, so every
    // thread of the generator inherits the mask.
    if let Err(e) = pin(&cli.cmd) {
        eprintln!("tidings-bench: {e:#}");
        return ExitCode::from(2);
    }
    match run(cli.cmd) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("tidings-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

impl Cmd {
    fn load_args(&self) -> Option<&LoadArgs> {
        match self {
            Cmd::Connect(a)
            | Cmd::Idle(a)
            | Cmd::Direct(a)
            | Cmd::WsDirect(a)
            | Cmd::Group(a)
            | Cmd::Room(a)
            | Cmd::History(a)
            | Cmd::Baseline(a)
            | Cmd::BaselineStore(a)
            | Cmd::Hooks(a)
            | Cmd::Broadcast(a)
            | Cmd::Push(a) => Some(a),
            Cmd::Mqtt(m) => Some(&m.load),
            Cmd::BaselineRelayServer { .. } | Cmd::CompareJson { .. } => None,
        }
    }
}

/// `--server-cpus` and `--generator-cpus`: checks both against the CPUs
/// this process may use, pins this process, and records both for the
/// reports. The server is pinned where it is started or attached.
fn pin(cmd: &Cmd) -> Result<()> {
    let Some(args) = cmd.load_args() else {
        return Ok(());
    };
    let server = args.server_cpus.as_ref().map(|c| c.0.clone());
    let generator = args.generator_cpus.as_ref().map(|c| c.0.clone());
    if server.is_none() && generator.is_none() {
        return Ok(());
    }
    let machine = sys::allowed_cpus().context("reading this process's CPU affinity")?;
    for (flag, cpus) in [("--server-cpus", &server), ("--generator-cpus", &generator)] {
        if let Some(cpus) = cpus
            && let Some(c) = cpus.iter().find(|c| !machine.contains(c))
        {
            bail!(
                "{flag} {}: CPU {c} is not available here (this process may use CPUs {})",
                sys::fmt_cpu_list(cpus),
                sys::fmt_cpu_list(&machine)
            );
        }
    }
    if let (Some(s), Some(g)) = (&server, &generator) {
        let shared: Vec<usize> = s.iter().copied().filter(|c| g.contains(c)).collect();
        if !shared.is_empty() {
            eprintln!(
                "note: server and generator share CPU {}",
                sys::fmt_cpu_list(&shared)
            );
        }
    }
    let is_store = matches!(cmd, Cmd::BaselineStore(_));
    if server.is_some() && is_store {
        eprintln!(
            "note: baseline-store runs the store inside this process: --server-cpus is not used"
        );
    }
    if let Some(g) = &generator {
        sys::pin_process(None, g).context("pinning the generator")?;
    }
    sys::set_pinning(sys::Pinning {
        server: if is_store { None } else { server },
        generator,
        machine,
    });
    Ok(())
}

fn runtime(threads: usize) -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()?)
}

fn run(cmd: Cmd) -> Result<ExitCode> {
    let (name, args) = match cmd {
        Cmd::BaselineRelayServer { listen } => {
            baseline::relay_server(listen)?;
            return Ok(ExitCode::SUCCESS);
        }
        Cmd::CompareJson {
            files,
            medians,
            table,
        } => {
            if table {
                print!("{}", report::table(&report::read_docs(&files)?));
            } else if medians {
                print!("{}", report::medians(&files)?);
            } else {
                print!("{}", report::compare(&files)?);
            }
            return Ok(ExitCode::SUCCESS);
        }
        Cmd::Hooks(a) => return hooks_main(a),
        Cmd::Broadcast(a) => return broadcast::main(a),
        Cmd::Mqtt(m) => return mqtt_main(m),
        Cmd::Push(a) => return push::main(a),
        Cmd::Connect(a) => ("connect", a),
        Cmd::Idle(a) => ("idle", a),
        Cmd::Direct(a) => ("direct", a),
        Cmd::WsDirect(a) => ("ws-direct", a),
        Cmd::Group(a) => ("group", a),
        Cmd::Room(a) => ("room", a),
        Cmd::History(a) => ("history", a),
        Cmd::Baseline(a) => ("baseline", a),
        Cmd::BaselineStore(a) => ("baseline-store", a),
    };
    if args.payload < load::HEADER {
        bail!("--payload must be at least {} bytes", load::HEADER);
    }
    sys::raise_nofile();
    let rt = runtime(args.threads)?;
    let (m, setup, target) = match name {
        "baseline" => {
            let (m, s) = rt.block_on(baseline::relay(&args))?;
            (m, s, json!({"relay": "spawned"}))
        }
        "baseline-store" => {
            let (m, s) = baseline::store(&args)?;
            (
                m,
                s,
                json!({"store": "in-process", "fsync": args.fsync.unwrap_or(true)}),
            )
        }
        _ => against_server(name, &args, &rt)?,
    };
    print!("{}", report::summary(&m, &setup));
    let mut results = report::to_json(&m);
    if args.compare_baseline {
        if name == "direct" {
            results["baseline"] = compare_baseline(&rt, &args, &m)?;
        } else {
            eprintln!("note: --compare-baseline applies to `direct` only");
        }
    }
    rt.shutdown_timeout(Duration::from_secs(1));
    if let Some(path) = &args.json {
        let doc = report::document(name, params(&args), target, results);
        report::write_json(path, &doc)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs an IM scenario against a spawned or existing server, stopping a
/// spawned one whatever happens. Returns the figures, the setup line and
/// the target's description.
fn against_server(
    name: &str,
    args: &LoadArgs,
    rt: &tokio::runtime::Runtime,
) -> Result<(Measured, String, Value)> {
    let target = Target::open(args)?;
    let described = target.describe();
    let res = rt.block_on(async {
        match name {
            "connect" => im::connect(args, &target).await,
            "idle" => im::idle(args, &target).await,
            "history" => im::history(args, &target).await,
            "ws-direct" => ws::direct(args, &target).await,
            _ => im::messages(name, args, &target).await,
        }
    });
    // Stopped whatever happened, so no server outlives the tool.
    let stopped = target.stop();
    let (m, s) = res?;
    stopped?;
    let where_ = match described["spawned"].as_bool() {
        Some(true) => format!(
            "spawned server, fsync {}",
            described["fsync"].as_bool().unwrap_or(true)
        ),
        _ => format!("server at {}", described["addr"].as_str().unwrap_or("?")),
    };
    Ok((m, format!("{s}; {where_}"), described))
}

/// `hooks`: the `direct` load on a fresh spawned server without hooks, then
/// on another with `TIDINGS_HOOKS_BASE_URL` pointing at a local no-op hook
/// endpoint; prints both side by side and checks the endpoint saw one
/// `_messageReceived` per message sent.
fn hooks_main(args: LoadArgs) -> Result<ExitCode> {
    if args.server.is_some() || args.data_dir.is_some() || args.pin.is_some() {
        eprintln!(
            "tidings-bench: the hooked run needs a spawned server (it sets TIDINGS_HOOKS_BASE_URL); drop --server, --data-dir and --pin"
        );
        return Ok(ExitCode::from(2));
    }
    if args.payload < load::HEADER {
        bail!("--payload must be at least {} bytes", load::HEADER);
    }
    if args.compare_baseline {
        eprintln!("note: --compare-baseline applies to `direct` only");
    }
    if args
        .server_env
        .iter()
        .any(|kv| kv.starts_with("TIDINGS_HOOKS_"))
    {
        eprintln!("note: TIDINGS_HOOKS_* from --server-env apply to both runs");
    }
    sys::raise_nofile();
    let rt = runtime(args.threads)?;

    let (mut plain, plain_setup, plain_target) = against_server("direct", &args, &rt)?;
    plain.scenario = "hooks: no hook".into();
    print!("{}", report::summary(&plain, &plain_setup));

    let hook_server = hooks::HookServer::start()?;
    let mut hooked_args = args.clone();
    hooked_args
        .server_env
        .push(format!("TIDINGS_HOOKS_BASE_URL={}", hook_server.base_url()));
    let (mut hooked, hooked_setup, hooked_target) = against_server("direct", &hooked_args, &rt)?;
    hooked.scenario = "hooks: _messageReceived".into();
    let calls = hook_server.counts();
    let received_calls = hook_server.calls(RECEIVED_HOOK);
    drop(hook_server);
    let hooked_setup = format!("{hooked_setup}; no-op hooks at 127.0.0.1");
    print!("{}", report::summary(&hooked, &hooked_setup));
    rt.shutdown_timeout(Duration::from_secs(1));

    let sent = hooked.sent_total;
    let calls_ok = received_calls == sent;
    print!("{}", hooks_table(&plain, &hooked));
    let others: Vec<String> = calls
        .iter()
        .filter(|(k, _)| k.as_str() != RECEIVED_HOOK)
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    println!(
        "hook calls: {RECEIVED_HOOK} {received_calls} for {sent} messages sent (warm-up included): {}",
        if calls_ok { "ok" } else { "MISMATCH" }
    );
    if !others.is_empty() {
        println!("other hook calls: {}", others.join(", "));
    }

    if let Some(path) = &args.json {
        let results = json!({
            "no_hook": report::to_json(&plain),
            "hooked": report::to_json(&hooked),
            "hook_server": {
                "calls": calls,
                "message_received_calls": received_calls,
                "messages_sent": sent,
                "calls_match": calls_ok,
            },
        });
        let target = json!({"no_hook": plain_target, "hooked": hooked_target});
        let doc = report::document("hooks", params(&args), target, results);
        report::write_json(path, &doc)?;
    }
    Ok(if calls_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

const RECEIVED_HOOK: &str = "_messageReceived";

/// The two `hooks` runs' key figures side by side.
fn hooks_table(plain: &Measured, hooked: &Measured) -> String {
    use std::fmt::Write as _;
    let rate = |m: &Measured| {
        let n = m.delivered.unwrap_or(m.ok);
        let span = m.span_s.max(m.window_s);
        if span > 0.0 {
            format!("{:.0}", n as f64 / span)
        } else {
            "-".into()
        }
    };
    let q = |m: &Measured, q: f64| {
        m.latency
            .as_ref()
            .map_or("-".into(), |(_, h)| report::fmt_us(h.value_at_quantile(q)))
    };
    let cpu = |m: &Measured| {
        m.server_us_per_unit()
            .map_or("-".into(), |x| format!("{x:.1}"))
    };
    let mut s = String::new();
    let _ = writeln!(s, "{:<22}{:>14}{:>18}", "", "no hook", "_messageReceived");
    let rows: [(&str, String, String); 4] = [
        ("delivered msgs/s", rate(plain), rate(hooked)),
        ("latency p50", q(plain, 0.5), q(hooked, 0.5)),
        ("latency p99", q(plain, 0.99), q(hooked, 0.99)),
        ("server CPU µs/msg", cpu(plain), cpu(hooked)),
    ];
    for (what, a, b) in rows {
        let _ = writeln!(s, "{what:<22}{a:>14}{b:>18}");
    }
    s
}

fn params(args: &impl Serialize) -> Value {
    serde_json::to_value(args).unwrap_or(Value::Null)
}

/// Runs the relay and store baselines with `direct`'s parameters, prints
/// our cost as a multiple of theirs, and returns both results.
fn compare_baseline(
    rt: &tokio::runtime::Runtime,
    args: &LoadArgs,
    direct: &Measured,
) -> Result<Value> {
    let (relay, relay_setup) = rt.block_on(baseline::relay(args))?;
    print!("{}", report::summary(&relay, &relay_setup));
    let (store, store_setup) = baseline::store(args)?;
    print!("{}", report::summary(&store, &store_setup));
    let ours = direct.server_us_per_unit();
    let r = relay.server_us_per_unit();
    let s = store.server_us_per_unit();
    let ratio = match (ours, r, s) {
        (Some(o), Some(r), Some(s)) if r + s > 0.0 => {
            let x = o / (r + s);
            println!("server CPU µs/msg: {o:.1} = {x:.1}x (relay {r:.1} + store {s:.1})");
            Some(x)
        }
        _ => {
            println!("server CPU µs/msg: not comparable (the server's CPU was not sampled)");
            None
        }
    };
    let p99 = |m: &Measured, ack: bool| {
        let h = if ack { &m.ack_latency } else { &m.latency };
        h.as_ref().map(|(_, h)| h.value_at_quantile(0.99))
    };
    if let (Some(o), Some(r), Some(s)) = (p99(direct, false), p99(&relay, false), p99(&store, true))
    {
        println!(
            "p99 latency: {} (relay {}, store commit {})",
            report::fmt_us(o),
            report::fmt_us(r),
            report::fmt_us(s)
        );
    }
    Ok(json!({
        "relay": report::to_json(&relay),
        "store": report::to_json(&store),
        "server_cpu_ratio": ratio,
    }))
}

fn mqtt_main(m: MqttArgs) -> Result<ExitCode> {
    if m.load.payload < load::HEADER {
        bail!("--payload must be at least {} bytes", load::HEADER);
    }
    sys::raise_nofile();
    let rt = runtime(m.load.threads)?;
    let (r, setup, target) = rt.block_on(mqtt::run(&m))?;
    print!("{}", report::summary(&r, &setup));
    rt.shutdown_timeout(Duration::from_secs(1));
    if let Some(path) = &m.load.json {
        let doc = report::document(&r.scenario, params(&m), target, report::to_json(&r));
        report::write_json(path, &doc)?;
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn direct(args: &[&str]) -> LoadArgs {
        let argv = ["tidings-bench", "direct"].iter().chain(args);
        match Cli::try_parse_from(argv).expect("parses").cmd {
            Cmd::Direct(a) => a,
            other => panic!("{other:?}"),
        }
    }

    /// Scripts pass bare seconds; people type `5s`. Both mean seconds here.
    #[test]
    fn windows_take_seconds_or_human_durations() {
        let a = direct(&[]);
        assert_eq!((a.duration, a.warmup, a.drain), (10.0, 2.0, 5.0));
        let a = direct(&["--duration", "2.5", "--warmup", "1", "--drain", "0"]);
        assert_eq!((a.duration, a.warmup, a.drain), (2.5, 1.0, 0.0));
        let a = direct(&["--duration", "5s", "--warmup", "500ms", "--drain", "2m"]);
        assert_eq!((a.duration, a.warmup, a.drain), (5.0, 0.5, 120.0));
        let argv = ["tidings-bench", "direct", "--duration", "soon"];
        let err = Cli::try_parse_from(argv).unwrap_err().to_string();
        assert!(err.contains("--duration") && err.contains("5s"), "{err}");
    }
}
