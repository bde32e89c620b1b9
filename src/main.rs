//! The `tidings` binary: command line, config, logging and signals. The
//! server and client themselves live in the library, so this stays thin.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod cli;

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use sd_notify::NotifyState;
use tidings::config::{self, Config, LogFormat};
use tokio::signal::unix::{Signal, SignalKind, signal};
use tracing::{error, info, warn};

/// Runtime failure: the server could not start or did not stop cleanly.
const EXIT_RUNTIME: u8 = 1;
/// Bad configuration; distinct from runtime failures so scripts and systemd
/// (`RestartPreventExitStatus=2`) can tell "fix the config" from "retry".
const EXIT_CONFIG: u8 = 2;

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
    #[command(flatten)]
    Client(cli::ClientCommand),
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Print the documented default config file.
    PrintDefault,
    /// Load and validate the config (file plus environment); print "ok" or
    /// the error.
    Check,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let path = cli.config.as_deref();
    match cli.command {
        Command::Config(ConfigCommand::PrintDefault) => {
            print_stdout(config::DEFAULT_TOML);
            ExitCode::SUCCESS
        }
        Command::Config(ConfigCommand::Check) => match load_config(path) {
            Ok(_) => {
                print_stdout("ok\n");
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Command::Serve => match load_config(path) {
            Ok(config) => serve(config),
            Err(code) => code,
        },
        Command::Client(cmd) => match load_config(path) {
            Ok(config) => client(cmd, config),
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

/// Logs to stderr (the journal, under systemd) with `directive` as the
/// filter unless `RUST_LOG` is set, which wins so one run can be made
/// verbose without editing the config.
fn init_tracing(directive: &str, format: LogFormat) -> anyhow::Result<()> {
    use tracing_subscriber::EnvFilter;
    let filter = match std::env::var("RUST_LOG") {
        Ok(env) if !env.trim().is_empty() => EnvFilter::builder()
            .parse(&env)
            .with_context(|| format!("RUST_LOG={env:?} is not a valid filter"))?,
        _ => EnvFilter::builder()
            .parse(directive)
            .with_context(|| format!("log level {directive:?} is not a valid filter"))?,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let installed = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    installed.map_err(|e| anyhow::anyhow!("cannot install the logger: {e}"))
}

fn serve(config: Config) -> ExitCode {
    if let Err(e) = init_tracing(&config.log.level, config.log.format) {
        eprintln!("tidings: config error: {e:#}");
        return ExitCode::from(EXIT_CONFIG);
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
    let result = runtime.block_on(run_server(config));
    runtime.shutdown_timeout(RUNTIME_SHUTDOWN_TIMEOUT);
    match result {
        Ok(()) => {
            info!("tidings stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            error!(error = %format!("{e:#}"), "tidings failed");
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}

async fn run_server(config: Config) -> anyhow::Result<()> {
    // Installed before start-up: a SIGTERM that arrives while starting then
    // leads to a graceful shutdown instead of killing the process.
    let mut signals = Signals::install().context("installing signal handlers")?;

    let server = tidings::server::Server::start(config)
        .await
        .context("starting the server")?;
    info!(
        addr = %server.local_addr(),
        fingerprint = %server.fingerprint(),
        "tidings listening"
    );
    // A no-op unless NOTIFY_SOCKET is set; failing to notify is not a reason
    // to stop serving.
    let status = format!("listening on {}", server.local_addr());
    let _ = sd_notify::notify(&[NotifyState::Ready, NotifyState::Status(&status)]);

    let name = signals.recv().await;
    info!(signal = name, "shutting down");
    let _ = sd_notify::notify(&[NotifyState::Stopping]);

    let shutdown = server.shutdown();
    tokio::pin!(shutdown);
    tokio::select! {
        result = &mut shutdown => result.context("graceful shutdown")?,
        name = signals.recv() => {
            // Acknowledged messages are already durable, so skipping the rest
            // of the shutdown loses nothing that was promised.
            warn!(signal = name, "second signal: exiting without finishing shutdown");
            std::process::exit(EXIT_RUNTIME.into());
        }
    }
    Ok(())
}

/// SIGTERM (systemd, kill) and SIGINT (Ctrl-C).
struct Signals {
    term: Signal,
    int: Signal,
}

impl Signals {
    fn install() -> std::io::Result<Self> {
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}

fn client(cmd: cli::ClientCommand, config: Config) -> ExitCode {
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
    let result = runtime.block_on(cli::run(cmd, &config));
    // A blocking stdin read would otherwise keep the process alive.
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tidings: {e:#}");
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
    fn config_flag_is_global() {
        let cli = Cli::try_parse_from(["tidings", "serve", "--config", "/x.toml"]).unwrap();
        assert_eq!(cli.config.as_deref(), Some(Path::new("/x.toml")));
        assert!(matches!(cli.command, Command::Serve));
        let cli = Cli::try_parse_from(["tidings", "config", "print-default"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Config(ConfigCommand::PrintDefault)
        ));
    }
}
