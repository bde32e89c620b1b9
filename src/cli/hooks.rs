//! `tidings hooks call`: fires a hook by hand against the configured
//! endpoints, like LeanCloud's staging console. No server is needed; the
//! store is not touched, so it also works while the server runs.
//!
//! `tidings hooks dead-letters list|retry|purge`: the after-hook calls the
//! outbox gave up on, through the running server's admin API (the server
//! owns the store).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use tidings::auth::{CREDENTIALS_FILE, Credentials};
use tidings::config::{Config, HookOverride};
use tidings::hooks::{CallError, ChainEnd, Hook, HookClient, Reply};

use reqwest::Method;

use super::admin::{Api, Conn};
use super::output::emit;

#[derive(Debug, clap::Subcommand)]
pub enum HooksCommand {
    /// Call a hook's endpoints with the given params and print each answer as
    /// a JSON line: {"url", "status", "ms", "answer"} or {"url", "status",
    /// "ms", "error"}. A before-hook runs as the server runs it (a chain that
    /// stops at drop/reject or a failure), then a {"outcome": ...} line
    /// follows. Exits non-zero when a call failed.
    Call(CallArgs),
    /// After-hook calls given up on (hooks.outbox_max_attempts,
    /// hooks.outbox_max_age_secs), through the admin API.
    DeadLetters(DeadLettersArgs),
}

#[derive(Debug, clap::Args)]
pub struct DeadLettersArgs {
    #[command(flatten)]
    pub conn: Conn,
    #[command(subcommand)]
    pub cmd: DeadLettersCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum DeadLettersCommand {
    /// One JSON line per dead letter, oldest first: {"id", "hook",
    /// "order_key", "params", "enqueued_at", "dead_at", "attempts",
    /// "last_error"}.
    List {
        /// Only ids above this one (to page on).
        #[arg(long, default_value_t = 0)]
        after: u64,
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Queue dead letters for delivery again, at the end of the outbox;
    /// prints {"retried", "ids"} (their new outbox ids).
    Retry(Selection),
    /// Delete dead letters for good; prints {"purged"}.
    Purge(Selection),
}

#[derive(Debug, clap::Args)]
#[group(required = true, multiple = false)]
pub struct Selection {
    /// Dead-letter ids, as `list` prints them.
    pub ids: Vec<u64>,
    /// Every dead letter.
    #[arg(long)]
    pub all: bool,
}

impl Selection {
    fn body(&self) -> Value {
        if self.all {
            json!({ "all": true })
        } else {
            json!({ "ids": self.ids })
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct CallArgs {
    /// LeanCloud's hook name (_messageReceived) or Skygear's (after_message_sent).
    pub name: String,
    /// The params object, as JSON.
    #[arg(long, default_value = "{}", value_name = "JSON")]
    pub params: String,
    /// Data dir of the local server, where the app id and master key are
    /// looked up when the config has none.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

pub async fn run(cmd: HooksCommand, config: &Config) -> anyhow::Result<()> {
    match cmd {
        HooksCommand::Call(args) => call(args, config).await,
        HooksCommand::DeadLetters(args) => dead_letters(args, config).await,
    }
}

const DEAD_LETTERS: &str = "/1.2/rtm/hooks/dead-letters";

async fn dead_letters(args: DeadLettersArgs, config: &Config) -> anyhow::Result<()> {
    let api = Api::new(&args.conn, config)?;
    match args.cmd {
        DeadLettersCommand::List { after, limit } => {
            let path = format!("{DEAD_LETTERS}?after={after}&limit={limit}");
            let answer = api.call(Method::GET, &path, None).await?;
            for row in answer["results"].as_array().into_iter().flatten() {
                emit(row)?;
            }
            Ok(())
        }
        DeadLettersCommand::Retry(sel) => {
            let path = format!("{DEAD_LETTERS}/retry");
            emit(&api.call(Method::POST, &path, Some(sel.body())).await?)
        }
        DeadLettersCommand::Purge(sel) => {
            let path = format!("{DEAD_LETTERS}/purge");
            emit(&api.call(Method::POST, &path, Some(sel.body())).await?)
        }
    }
}

async fn call(args: CallArgs, config: &Config) -> anyhow::Result<()> {
    let Some(hook) = Hook::from_name(&args.name) else {
        bail!("{}", Hook::unknown_reason(&args.name));
    };
    let params: Value = serde_json::from_str(&args.params).context("--params is not JSON")?;
    if !params.is_object() {
        bail!("--params must be a JSON object, like the hook's request.params");
    }
    // By hand, a hook turned off still goes to its endpoints.
    let mut section = config.hooks.clone();
    section.hook.insert(
        hook.name().to_owned(),
        HookOverride {
            enabled: true,
            ..section.override_for(hook).cloned().unwrap_or_default()
        },
    );
    let data_dir = args
        .data_dir
        .clone()
        .unwrap_or_else(|| config.server.data_dir.clone());
    let (app_id, master_key) = credentials(config, &data_dir)?;
    let client = HookClient::new(&section, &app_id, &master_key)?;
    let Some(route) = client.route(hook).cloned() else {
        bail!(
            "{hook} has no endpoint: set hooks.base_url or [hooks.hook.{}] urls",
            hook.name()
        );
    };
    let mut failed = 0usize;
    let mut report = |url: &reqwest::Url, outcome: &Result<Reply, CallError>, took: Duration| {
        if outcome.is_err() {
            failed += 1;
        }
        // A closed stdout is not worth stopping the calls for.
        let _ = emit(&outcome_line(url, outcome, took));
    };
    if hook.is_before() {
        let end = client.chain(hook, params, |_| None, &mut report).await;
        let line = match end {
            ChainEnd::Proceed(result) => json!({"outcome": "proceed", "result": result}),
            ChainEnd::Rejected { code, detail } => {
                json!({"outcome": "rejected", "code": code, "detail": detail})
            }
            ChainEnd::Failed { detail, merged } => json!({
                "outcome": "failed",
                "detail": detail,
                "failPolicy": config.hooks.fail_policy,
                "resultBeforeFailure": merged,
            }),
        };
        emit(&line)?;
    } else {
        let body = serde_json::to_vec(&params).context("encoding --params")?;
        for url in &route.urls {
            let started = Instant::now();
            let outcome = client.call(url, route.timeout, body.clone()).await;
            report(url, &outcome, started.elapsed());
        }
    }
    if failed > 0 {
        bail!("{failed} of the calls to {hook} failed");
    }
    Ok(())
}

fn outcome_line(url: &reqwest::Url, outcome: &Result<Reply, CallError>, took: Duration) -> Value {
    let ms = took.as_millis() as u64;
    match outcome {
        Ok(reply) => {
            json!({"url": url.as_str(), "status": reply.status, "ms": ms, "answer": reply.body})
        }
        Err(e) => {
            json!({"url": url.as_str(), "status": e.status(), "ms": ms, "error": e.to_string()})
        }
    }
}

/// The server's precedence: the config's values, else the data dir's.
fn credentials(config: &Config, data_dir: &std::path::Path) -> anyhow::Result<(String, String)> {
    if let (Some(a), Some(k)) = (&config.auth.app_id, &config.auth.master_key) {
        return Ok((a.clone(), k.clone()));
    }
    let stored = Credentials::load(data_dir).with_context(|| {
        format!(
            "hooks are called with the app id and master key: set auth.app_id and auth.master_key, \
             or start the server once so {} exists (or pass --data-dir)",
            data_dir.join(CREDENTIALS_FILE).display()
        )
    })?;
    Ok((
        config.auth.app_id.clone().unwrap_or(stored.app_id),
        config.auth.master_key.clone().unwrap_or(stored.master_key),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct TestCli {
        #[command(subcommand)]
        cmd: HooksCommand,
    }

    #[test]
    fn call_parses() {
        use clap::CommandFactory;
        TestCli::command().debug_assert();
        let c = TestCli::try_parse_from([
            "t",
            "call",
            "after_message_sent",
            "--params",
            r#"{"convId":"c"}"#,
        ])
        .unwrap();
        let HooksCommand::Call(a) = c.cmd else {
            panic!("call")
        };
        assert_eq!(a.name, "after_message_sent");
        assert_eq!(a.params, r#"{"convId":"c"}"#);
        let c = TestCli::try_parse_from(["t", "call", "_clientOnline"]).unwrap();
        let HooksCommand::Call(a) = c.cmd else {
            panic!("call")
        };
        assert_eq!(a.params, "{}");
    }

    #[test]
    fn dead_letters_parse_and_need_a_selection() {
        let c = TestCli::try_parse_from(["t", "dead-letters", "retry", "3", "9"]).unwrap();
        let HooksCommand::DeadLetters(a) = c.cmd else {
            panic!("dead-letters")
        };
        let DeadLettersCommand::Retry(sel) = a.cmd else {
            panic!("retry")
        };
        assert_eq!(sel.body(), json!({ "ids": [3, 9] }));
        let c = TestCli::try_parse_from(["t", "dead-letters", "purge", "--all"]).unwrap();
        let HooksCommand::DeadLetters(a) = c.cmd else {
            panic!("dead-letters")
        };
        let DeadLettersCommand::Purge(sel) = a.cmd else {
            panic!("purge")
        };
        assert_eq!(sel.body(), json!({ "all": true }));
        assert!(TestCli::try_parse_from(["t", "dead-letters", "purge"]).is_err());
        assert!(TestCli::try_parse_from(["t", "dead-letters", "retry", "1", "--all"]).is_err());
    }

    #[test]
    fn credentials_prefer_config_then_data_dir() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::default();
        assert!(credentials(&config, dir.path()).is_err());
        Credentials::load_or_create(dir.path(), None, None).unwrap();
        let stored = Credentials::load(dir.path()).unwrap();
        assert_eq!(
            credentials(&config, dir.path()).unwrap(),
            (stored.app_id.clone(), stored.master_key.clone())
        );
        config.auth.app_id = Some("mine".into());
        assert_eq!(
            credentials(&config, dir.path()).unwrap(),
            ("mine".to_owned(), stored.master_key)
        );
    }
}
