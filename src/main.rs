//! The `tidings` binary: command line, config, logging and signals. The
//! server and client themselves live in the library, so this stays thin.

#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc asks for transparent huge pages for its arenas. Measured here,
/// they cost ~37 MiB at start and ~1.3 KiB per idle connection and bought
/// no speed (docs/PERFORMANCE.md), so this process opts out before it grows.
fn no_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: prctl with PR_SET_THP_DISABLE only sets a flag on this process.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

mod cli;

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use sd_notify::NotifyState;
use tidings::config::{self, Config, LogFormat};
use tidings::hub::Hub;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tracing::{error, info, warn};

/// Runtime failure: the server did not stop cleanly, or a client command failed.
const EXIT_RUNTIME: u8 = 1;
/// Bad configuration, or a server that could not start (a port in use, a
/// data dir locked by another server, an unreadable file the config names);
/// distinct from runtime failures so scripts and systemd
/// (`RestartPreventExitStatus=2`) can tell "fix the config" from "retry".
const EXIT_CONFIG: u8 = 2;
/// The store failed (a write or flush error, `store::health`): the process
/// stops so that a restart recovers from what is on disk. EX_TEMPFAIL, and
/// not 2, so `Restart=on-failure` restarts it.
const EXIT_STORE_FAILED: u8 = 75;
/// The store's files are damaged (sled cannot open them, `store::check`),
/// or `tidings store check` found damage. A restart will not mend them, so
/// the unit does not restart on it (`RestartPreventExitStatus=`).
const EXIT_STORE_DAMAGED: u8 = 3;

/// How long to wait, after the server has shut down, for stray tasks before
/// the process exits anyway. Everything acknowledged is on disk by then.
const RUNTIME_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// A self-hosted instant-messaging server over QUIC, following LeanCloud IM
/// conventions.
#[derive(Debug, Parser)]
#[command(name = "tidings", version)]
struct Cli {
    /// Config file (TOML). Without it: built-in defaults, then TIDINGS_<SECTION>_<KEY>
    /// environment variables.
    #[arg(long, global = true, env = config::CONFIG_PATH_ENV, value_name = "PATH")]
    config: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

// Parsed once per process; boxing the client variant would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server until SIGTERM or SIGINT, then shut down gracefully.
    Serve,
    /// Print or check the configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Call the app server's hooks by hand, as the server would.
    #[command(subcommand)]
    Hooks(cli::hooks::HooksCommand),
    /// Call the admin REST API: system conversations, history, presence, kick, stats.
    Admin(cli::admin::AdminArgs),
    /// Check a stopped server's store for damage, or salvage it into a new data dir.
    #[command(subcommand)]
    Store(cli::store::StoreCommand),
    #[command(flatten)]
    Client(cli::ClientCommand),
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Print the documented default config file.
    PrintDefault,
    /// Load and validate the config (file plus environment) and the files
    /// it names, as `serve` would; print "ok" or the error.
    Check,
}

fn main() -> ExitCode {
    no_transparent_huge_pages();
    let cli = Cli::parse();
    let path = cli.config.as_deref();
    match cli.command {
        Command::Config(ConfigCommand::PrintDefault) => {
            print_stdout(config::DEFAULT_TOML);
            ExitCode::SUCCESS
        }
        Command::Config(ConfigCommand::Check) => match load_config(path).and_then(preflight) {
            Ok(_) => {
                print_stdout("ok\n");
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Command::Serve => match load_config(path).and_then(preflight) {
            Ok(config) => serve(config, path.map(Path::to_path_buf)),
            Err(code) => code,
        },
        Command::Client(cmd) => match load_config(path) {
            Ok(config) => run_cli(async move { cli::run(cmd, &config).await }),
            Err(code) => code,
        },
        Command::Hooks(cmd) => match load_config(path) {
            Ok(config) => run_cli(async move { cli::hooks::run(cmd, &config).await }),
            Err(code) => code,
        },
        Command::Admin(args) => match load_config(path) {
            Ok(config) => run_cli(async move { cli::admin::run(args, &config).await }),
            Err(code) => code,
        },
        Command::Store(cmd) => match load_config(path) {
            Ok(config) => match cli::store::run(cmd, &config) {
                Ok(cli::store::Outcome::Clean) => ExitCode::SUCCESS,
                Ok(cli::store::Outcome::Damaged) => ExitCode::from(EXIT_STORE_DAMAGED),
                Err(e) => {
                    eprintln!("tidings: {e:#}");
                    ExitCode::from(EXIT_RUNTIME)
                }
            },
            Err(code) => code,
        },
    }
}

/// Writes to stdout, ignoring errors: a closed pipe (`| head`) is not worth
/// a panic or an error message.
fn print_stdout(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

/// Loads and validates the config, reporting any error on stderr (logging is
/// not set up yet: its settings come from the config).
fn load_config(path: Option<&Path>) -> Result<Config, ExitCode> {
    Config::load(path).map_err(|e| {
        eprintln!("tidings: config error: {e}");
        ExitCode::from(EXIT_CONFIG)
    })
}

/// What `serve` would refuse in the config before creating anything
/// (`server::preflight`), reported like a config error.
fn preflight(config: Config) -> Result<Config, ExitCode> {
    match tidings::server::preflight(&config) {
        Ok(()) => Ok(config),
        Err(e) => {
            let hint = e.hint().map(|h| format!(" ({h})")).unwrap_or_default();
            eprintln!("tidings: config error: {}{hint}", causes(&e));
            Err(ExitCode::from(EXIT_CONFIG))
        }
    }
}

/// An error and its causes on one line, each said once. Errors here often
/// print their source inside their own message too (`bind ADDR: {source}`),
/// so `{:#}` would repeat the same words once per layer.
fn causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let part = cause.to_string();
        if !part.is_empty() && !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = cause.source();
    }
    text
}

/// [`causes`] for an anyhow chain.
fn anyhow_causes(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let part = cause.to_string();
        if part.is_empty() || text.contains(&part) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    text
}

/// Logs to stderr (the journal, under systemd) with `directive` as the
/// filter unless `RUST_LOG` is set, which wins so one run can be made
/// verbose without editing the config. The filter sits behind a reload
/// handle so SIGHUP can change the level without a restart.
fn init_tracing(directive: &str, format: LogFormat) -> anyhow::Result<LogControl> {
    use tracing_subscriber::{Layer, fmt, layer::SubscriberExt, reload, util::SubscriberInitExt};
    let rust_log = std::env::var("RUST_LOG").ok();
    let (filter, env_override) = match env_directive(rust_log.as_deref()) {
        Some(env) => (
            parse_filter(env).with_context(|| format!("RUST_LOG={env:?} is not a valid filter"))?,
            true,
        ),
        None => (
            parse_filter(directive)
                .with_context(|| format!("log level {directive:?} is not a valid filter"))?,
            false,
        ),
    };
    let (filter, handle) = reload::Layer::new(filter);
    let ansi = std::io::stderr().is_terminal();
    let output = match format {
        LogFormat::Text => fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(ansi)
            .boxed(),
        LogFormat::Json => fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .with_ansi(ansi)
            .boxed(),
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(output)
        .try_init()
        .map_err(|e| anyhow::anyhow!("cannot install the logger: {e}"))?;
    Ok(LogControl {
        filter: handle,
        env_override,
    })
}

/// `RUST_LOG` if it holds a directive; an empty one counts as unset.
fn env_directive(rust_log: Option<&str>) -> Option<&str> {
    rust_log.filter(|v| !v.trim().is_empty())
}

fn parse_filter(directive: &str) -> anyhow::Result<tracing_subscriber::EnvFilter> {
    Ok(tracing_subscriber::EnvFilter::builder().parse(directive)?)
}

/// What a config reload can change about logging.
struct LogControl {
    filter: tracing_subscriber::reload::Handle<
        tracing_subscriber::EnvFilter,
        tracing_subscriber::Registry,
    >,
    /// `RUST_LOG` was set at start: it keeps overriding `log.level`.
    env_override: bool,
}

impl LogControl {
    fn set_level(&self, directive: &str) -> anyhow::Result<()> {
        let filter = parse_filter(directive)
            .with_context(|| format!("log level {directive:?} is not a valid filter"))?;
        self.filter
            .reload(filter)
            .context("replacing the log filter")
    }
}

fn serve(config: Config, path: Option<PathBuf>) -> ExitCode {
    let log = match init_tracing(&config.log.level, config.log.format) {
        Ok(log) => log,
        Err(e) => {
            eprintln!("tidings: config error: {e:#}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if let Some(advice) = tidings::transport::udp::buffer_advice() {
        warn!("{advice}");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("tidings")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            error!(error = %e, "cannot start the tokio runtime");
            return ExitCode::from(EXIT_RUNTIME);
        }
    };
    let result = runtime.block_on(run_server(config, path, log));
    runtime.shutdown_timeout(RUNTIME_SHUTDOWN_TIMEOUT);
    match result {
        Ok(()) => {
            info!("tidings stopped");
            ExitCode::SUCCESS
        }
        // Nothing was served and nothing is left behind (`Server::start`);
        // a restart would fail the same way until the operator acts.
        Err(Failed::Start(e)) => {
            match e.hint() {
                Some(hint) => error!(error = %causes(&e), hint, "tidings could not start"),
                None => error!(error = %causes(&e), "tidings could not start"),
            }
            if is_damage(&e) {
                return ExitCode::from(EXIT_STORE_DAMAGED);
            }
            ExitCode::from(EXIT_CONFIG)
        }
        Err(Failed::Run(e)) => {
            error!(error = %anyhow_causes(&e), "tidings failed");
            let server_error = e.downcast_ref::<tidings::server::ServerError>();
            if server_error.is_some_and(|e| e.is_store_failure()) {
                return ExitCode::from(EXIT_STORE_FAILED);
            }
            if server_error.is_some_and(is_damage) {
                return ExitCode::from(EXIT_STORE_DAMAGED);
            }
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}

/// How `run_server` ended badly: at start-up (exit 2) or later.
/// Damaged store files: their own exit code, which the unit does not restart.
fn is_damage(e: &tidings::server::ServerError) -> bool {
    matches!(e, tidings::server::ServerError::Store(s) if s.is_damage())
}

enum Failed {
    Start(tidings::server::ServerError),
    Run(anyhow::Error),
}

impl From<anyhow::Error> for Failed {
    fn from(e: anyhow::Error) -> Self {
        Failed::Run(e)
    }
}

async fn run_server(config: Config, path: Option<PathBuf>, log: LogControl) -> Result<(), Failed> {
    // Installed before start-up: a SIGTERM that arrives while starting then
    // leads to a graceful shutdown instead of killing the process, and a
    // SIGHUP waits for the loop below instead of killing it.
    let mut signals = Signals::install().context("installing signal handlers")?;

    // Kept apart from the server's copy: it is what reloads compare against.
    let mut running = config.clone();
    let server = tidings::server::Server::start(config)
        .await
        .map_err(Failed::Start)?;
    info!(
        addr = %server.local_addr(),
        fingerprint = %server.fingerprint(),
        "tidings listening"
    );
    // A no-op unless NOTIFY_SOCKET is set; failing to notify is not a reason
    // to stop serving.
    let status = format!("listening on {}", server.local_addr());
    let _ = sd_notify::notify(&[NotifyState::Ready, NotifyState::Status(&status)]);

    let draining = Arc::new(AtomicBool::new(false));
    let watchdog = sd_notify::watchdog_enabled()
        .and_then(watchdog_timing)
        .map(|timing| {
            info!(
                every = ?timing.period,
                "pinging the systemd watchdog while the commit pipeline answers"
            );
            tokio::spawn(watchdog_loop(
                server.hub().clone(),
                timing,
                draining.clone(),
            ))
        });

    let name = loop {
        let event = tokio::select! {
            e = signals.next() => e,
            () = server.store_failed() => SignalEvent::Stop("store failure"),
        };
        match event {
            SignalEvent::Stop(name) => break name,
            SignalEvent::Reload => {
                reload_config(path.as_deref(), &mut running, &log, server.hub());
                let _ = sd_notify::notify(&[NotifyState::Ready, NotifyState::Status(&status)]);
            }
        }
    };
    info!(signal = name, "shutting down");
    let _ = sd_notify::notify(&[NotifyState::Stopping]);
    // The pipeline stops answering during shutdown; the watchdog keeps
    // pinging on runtime liveness alone so a slow drain is not killed.
    draining.store(true, Ordering::Relaxed);

    let shutdown = server.shutdown();
    tokio::pin!(shutdown);
    tokio::select! {
        result = &mut shutdown => result.context("graceful shutdown")?,
        name = signals.stop() => {
            // Acknowledged messages are already durable, so skipping the rest
            // of the shutdown loses nothing that was promised.
            warn!(signal = name, "second signal: exiting without finishing shutdown");
            std::process::exit(EXIT_RUNTIME.into());
        }
    }
    if let Some(task) = watchdog {
        task.abort();
    }
    Ok(())
}

/// Re-reads the config (file plus environment, as at start) and applies the
/// keys that can change live. An invalid file changes nothing: a typo during
/// a reload must not take a running server down.
fn reload_config(path: Option<&Path>, running: &mut Config, log: &LogControl, hub: &Hub) {
    // Tells systemd a reload is under way; it requires the timestamp with it.
    if let Ok(now) = NotifyState::monotonic_usec_now() {
        let _ = sd_notify::notify(&[NotifyState::Reloading, now]);
    }
    let new = match Config::load(path) {
        Ok(new) => new,
        Err(e) => {
            error!(error = %e, "config reload failed; keeping the running config");
            return;
        }
    };
    let (live, restart) = running.live_changes(&new);
    let mut changed = Vec::new();
    // All of [hooks] is swapped at once, whichever of its keys changed.
    let hooks_changed = live.iter().any(|k| k.starts_with("hooks."));
    let hooks_applied = hooks_changed && {
        match hub.hooks.reload(&new.hooks) {
            Ok(()) => true,
            Err(e) => {
                error!(error = %e, "could not apply [hooks]; the running hook config stays");
                false
            }
        }
    };
    // The word list is re-read on every reload: its file changes, not the key.
    match hub.filter.reload(new.messages.keyword_file.as_deref()) {
        Ok(words) if new.messages.keyword_file.is_some() => {
            info!(words, "keyword list reloaded");
        }
        Ok(_) => {}
        Err(e) => error!(error = %e, "could not reload the keyword list; the old one stays"),
    }
    for key in live {
        if key.starts_with("hooks.") && !hooks_applied {
            continue;
        }
        if key == "log.level" {
            if log.env_override {
                warn!(
                    level = %new.log.level,
                    "log.level changed, but RUST_LOG was set at start and keeps winning until a restart without it"
                );
                continue;
            }
            if let Err(e) = log.set_level(&new.log.level) {
                error!(error = %format!("{e:#}"), "could not apply log.level");
                continue;
            }
        }
        changed.push(key);
    }
    let kept_hooks = running.hooks.clone();
    running.apply_live(&new);
    if hooks_changed && !hooks_applied {
        // Still pending, so the next reload tries again.
        running.hooks = kept_hooks;
    }
    info!(changed = ?changed, "config reloaded");
    if !restart.is_empty() {
        warn!(keys = ?restart, "changed keys need a restart to take effect");
    }
}

/// When to ping the systemd watchdog and how long the health check may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct WatchdogTiming {
    period: Duration,
    check_timeout: Duration,
}

/// Pings at half of `WatchdogSec` as systemd recommends; the check gets a
/// quarter, so one slow check still leaves time for the next ping before the
/// deadline, and two failed checks in a row let systemd restart us.
fn watchdog_timing(interval: Duration) -> Option<WatchdogTiming> {
    let period = interval / 2;
    // A zero period would make tokio's interval panic; systemd never sends
    // one, but the value comes from the environment.
    (!period.is_zero()).then(|| WatchdogTiming {
        period,
        check_timeout: interval / 4,
    })
}

/// Pings `WATCHDOG=1` while the server is healthy: this task runs on the
/// server's runtime, so a wedged runtime stops the pings, and before each
/// ping the commit pipeline must answer a barrier (a durable flush), so a
/// stuck commit thread or disk does too. systemd then restarts the service.
async fn watchdog_loop(hub: Arc<Hub>, timing: WatchdogTiming, draining: Arc<AtomicBool>) {
    let mut ticks = tokio::time::interval(timing.period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if !draining.load(Ordering::Relaxed) {
            match tokio::time::timeout(timing.check_timeout, hub.pipeline.barrier()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    warn!(error = ?e, "commit pipeline failed a barrier; skipping the watchdog ping");
                    continue;
                }
                Err(_) => {
                    warn!(
                        timeout = ?timing.check_timeout,
                        "commit pipeline did not answer a barrier; skipping the watchdog ping"
                    );
                    continue;
                }
            }
        }
        let _ = sd_notify::notify(&[NotifyState::Watchdog]);
    }
}

/// SIGTERM (systemd, kill) and SIGINT (Ctrl-C) stop the server; SIGHUP
/// (`systemctl reload`) reloads the config.
struct Signals {
    term: Signal,
    int: Signal,
    hup: Signal,
}

impl Signals {
    fn install() -> std::io::Result<Self> {
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    /// The next signal of any kind.
    async fn next(&mut self) -> SignalEvent {
        tokio::select! {
            _ = self.term.recv() => SignalEvent::Stop("SIGTERM"),
            _ = self.int.recv() => SignalEvent::Stop("SIGINT"),
            _ = self.hup.recv() => SignalEvent::Reload,
        }
    }

    /// The next stop signal; a SIGHUP meanwhile stays queued and ignored.
    async fn stop(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}

enum SignalEvent {
    Stop(&'static str),
    Reload,
}

/// Runs a client-side command on its own runtime; an error exits with 1.
fn run_cli(command: impl Future<Output = anyhow::Result<()>>) -> ExitCode {
    // Quiet by default: client output is for people and scripts, not logs.
    if let Err(e) = init_tracing("warn", LogFormat::Text) {
        eprintln!("tidings: config error: {e:#}");
        return ExitCode::from(EXIT_CONFIG);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tidings: cannot start the tokio runtime: {e}");
            return ExitCode::from(EXIT_RUNTIME);
        }
    };
    let result = runtime.block_on(command);
    // A blocking stdin read would otherwise keep the process alive.
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tidings: {}", anyhow_causes(&e));
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn watchdog_pings_at_half_the_interval() {
        let t = watchdog_timing(Duration::from_secs(30)).unwrap();
        assert_eq!(t.period, Duration::from_secs(15));
        assert_eq!(t.check_timeout, Duration::from_millis(7500));
        // A slow check plus the period still lands before the deadline.
        assert!(t.period + t.check_timeout < Duration::from_secs(30));
        assert_eq!(watchdog_timing(Duration::ZERO), None);
        assert_eq!(watchdog_timing(Duration::from_nanos(1)), None);
    }

    #[test]
    fn empty_rust_log_does_not_override() {
        assert_eq!(env_directive(None), None);
        assert_eq!(env_directive(Some("")), None);
        assert_eq!(env_directive(Some("  ")), None);
        assert_eq!(env_directive(Some("debug")), Some("debug"));
    }

    #[test]
    fn config_flag_is_global() {
        let cli = Cli::try_parse_from(["tidings", "serve", "--config", "/x.toml"]).unwrap();
        assert_eq!(cli.config.as_deref(), Some(Path::new("/x.toml")));
        assert!(matches!(cli.command, Command::Serve));
        let cli = Cli::try_parse_from(["tidings", "config", "print-default"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Config(ConfigCommand::PrintDefault)
        ));
        let cli = Cli::try_parse_from([
            "tidings",
            "hooks",
            "call",
            "_messageReceived",
            "--params",
            "{}",
        ])
        .unwrap();
        assert!(matches!(cli.command, Command::Hooks(_)));
    }
}
