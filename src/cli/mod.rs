//! Client subcommands: a chat prompt, and one-shot tools that print JSON
//! lines for scripts. All of them find the local server's address,
//! certificate pin and credentials in its data dir unless told otherwise.

mod connect;
pub mod hooks;
mod output;

use std::collections::HashSet;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::json;
use tidings::client::{Client, ClientEvent};
use tidings::config::Config;
use tidings::protocol::{Anchor, ConvId, Direction, Event, HistoryQuery, SendMessage, SyncMode};
use tokio::io::{AsyncBufReadExt, BufReader};

pub use connect::Common;
use output::emit;

/// Messages of history shown when a chat starts.
const CHAT_BACKLOG: u32 = 10;

/// Client subcommands, flattened into the top-level `tidings` command.
#[derive(Debug, clap::Subcommand)]
pub enum ClientCommand {
    /// Chat interactively: each stdin line is sent; incoming messages are printed.
    Chat(ChatArgs),
    /// Send one message and print its receipt as a JSON line.
    Send(SendArgs),
    /// Print a conversation's history as JSON lines, oldest first.
    History(HistoryArgs),
    /// List your conversations as JSON lines, most recently active first.
    Conversations(ConvArgs),
    /// Print events as JSON lines until Ctrl-C, --count messages or --timeout.
    Listen(ListenArgs),
}

/// Who to talk to: a person (their unique conversation with you) or a conversation id.
#[derive(Debug, clap::Args)]
#[group(required = true, multiple = false)]
pub struct Target {
    /// The other client of a one-to-one conversation, created if needed.
    #[arg(long, value_name = "CLIENT_ID")]
    pub to: Option<String>,
    /// A conversation id (24 hex digits).
    #[arg(long, value_name = "ID")]
    pub conv: Option<ConvId>,
}

#[derive(Debug, clap::Args)]
pub struct ChatArgs {
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub target: Target,
}

#[derive(Debug, clap::Args)]
pub struct SendArgs {
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub target: Target,
    /// Message text.
    pub text: String,
    /// Not stored; reaches only members online now.
    #[arg(long)]
    pub transient: bool,
    /// Idempotency token: resending with the same token returns the first receipt.
    #[arg(long)]
    pub token: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct HistoryArgs {
    #[command(flatten)]
    pub common: Common,
    #[arg(long, value_name = "ID")]
    pub conv: ConvId,
    #[arg(long, default_value_t = 20)]
    pub limit: u32,
    /// Only messages older than this one.
    #[arg(long, value_name = "MSGID")]
    pub before: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct ConvArgs {
    #[command(flatten)]
    pub common: Common,
    #[arg(long, default_value_t = 50)]
    pub limit: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SyncArg {
    /// Missed messages are pushed at login.
    Push,
    /// Only unread counts are sent at login.
    Pull,
}

#[derive(Debug, clap::Args)]
pub struct ListenArgs {
    #[command(flatten)]
    pub common: Common,
    /// Stop after this many message events.
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
    /// Stop after this many seconds.
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<u64>,
    #[arg(long, value_enum, default_value_t = SyncArg::Push)]
    pub sync: SyncArg,
}

/// Runs one client subcommand.
pub async fn run(cmd: ClientCommand, config: &Config) -> anyhow::Result<()> {
    match cmd {
        ClientCommand::Chat(a) => chat(a, config).await,
        ClientCommand::Send(a) => send(a, config).await,
        ClientCommand::History(a) => history(a, config).await,
        ClientCommand::Conversations(a) => conversations(a, config).await,
        ClientCommand::Listen(a) => listen(a, config).await,
    }
}

/// One-shot commands log in in pull mode without acking, so they neither
/// receive nor consume the device's missed messages; a later `listen` or
/// `chat` still gets them.
async fn one_shot(common: &Common, config: &Config) -> anyhow::Result<Client> {
    let (client, _events) = common.connect(config, SyncMode::Pull, false).await?;
    Ok(client)
}

/// Logging out is a courtesy once the work is done; its failure changes nothing.
async fn finish(client: &Client) {
    if let Err(e) = client.logout().await {
        tracing::debug!("logout: {e}");
    }
}

async fn resolve_target(client: &Client, target: &Target) -> anyhow::Result<ConvId> {
    match (&target.conv, &target.to) {
        (Some(conv), _) => Ok(*conv),
        (None, Some(to)) => {
            let info = client
                .create_unique(vec![to.clone()])
                .await
                .with_context(|| format!("opening the conversation with {to}"))?;
            Ok(info.id)
        }
        (None, None) => bail!("pass --to CLIENT_ID or --conv ID"),
    }
}

fn latest(conv: ConvId, limit: u32) -> HistoryQuery {
    HistoryQuery {
        conv,
        anchor: Anchor::Latest,
        direction: Direction::Before,
        inclusive: true,
        limit,
        lctype: None,
    }
}

async fn chat(args: ChatArgs, config: &Config) -> anyhow::Result<()> {
    let (client, mut events) = args.common.connect(config, SyncMode::Push, true).await?;
    let conv = resolve_target(&client, &args.target).await?;
    let (backlog, _) = client
        .history(latest(conv, CHAT_BACKLOG))
        .await
        .context("loading recent messages")?;
    emit(&format!("-- conversation {conv}; /quit to leave --"))?;
    // Push sync may deliver again what the backlog already showed.
    let shown: HashSet<String> = backlog.iter().map(|m| m.msg_id.clone()).collect();
    for m in &backlog {
        emit(&output::chat_line(m))?;
    }
    let _ = client.read(conv, None).await;

    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    loop {
        tokio::select! {
            line = lines.next_line() => {
                let Some(line) = line.context("reading stdin")? else { break };
                let text = line.trim_end_matches(['\r', '\n']);
                if text.trim() == "/quit" {
                    break;
                }
                if text.trim().is_empty() {
                    continue;
                }
                match client.send_text(conv, text).await {
                    Ok(_) => {}
                    Err(e @ tidings::client::ClientError::Server(_)) => eprintln!("not sent: {e}"),
                    Err(e) => return Err(e).context("sending"),
                }
            }
            ev = events.recv() => match ev {
                Some(ClientEvent::Server(Event::Message { msg, .. })) => {
                    if msg.conv == conv && !shown.contains(&msg.msg_id) {
                        emit(&output::chat_line(&msg))?;
                    }
                }
                Some(ClientEvent::Server(Event::Conflict { code, reason })) => {
                    eprintln!("-- logged in elsewhere ({code} {reason}) --");
                }
                Some(ClientEvent::Closed { code, reason }) => {
                    let code = code.map(|c| format!(" ({c})")).unwrap_or_default();
                    bail!("connection closed{code}: {reason}");
                }
                Some(_) => {}
                None => bail!("connection closed"),
            },
        }
    }
    let _ = client.read(conv, None).await;
    finish(&client).await;
    Ok(())
}

async fn send(args: SendArgs, config: &Config) -> anyhow::Result<()> {
    let client = one_shot(&args.common, config).await?;
    let conv = resolve_target(&client, &args.target).await?;
    let mut msg = SendMessage::text(conv, args.text);
    msg.transient = args.transient;
    msg.token = args.token;
    let sent = client.send(msg).await.context("sending")?;
    emit(&json!({
        "convId": conv.to_string(),
        "msgId": sent.msg_id,
        "timestamp": sent.timestamp,
        "seq": sent.seq,
    }))?;
    finish(&client).await;
    Ok(())
}

async fn history(args: HistoryArgs, config: &Config) -> anyhow::Result<()> {
    let client = one_shot(&args.common, config).await?;
    let query = match args.before {
        Some(id) => HistoryQuery {
            conv: args.conv,
            anchor: Anchor::MsgId(id),
            direction: Direction::Before,
            inclusive: false,
            limit: args.limit,
            lctype: None,
        },
        None => latest(args.conv, args.limit),
    };
    let (messages, _more) = client.history(query).await.context("reading history")?;
    for m in &messages {
        emit(&output::message(m))?;
    }
    finish(&client).await;
    Ok(())
}

async fn conversations(args: ConvArgs, config: &Config) -> anyhow::Result<()> {
    let client = one_shot(&args.common, config).await?;
    let list = client
        .conversations(args.limit)
        .await
        .context("listing conversations")?;
    for c in &list {
        emit(&output::conversation(c))?;
    }
    finish(&client).await;
    Ok(())
}

async fn listen(args: ListenArgs, config: &Config) -> anyhow::Result<()> {
    let sync = match args.sync {
        SyncArg::Push => SyncMode::Push,
        SyncArg::Pull => SyncMode::Pull,
    };
    let (client, mut events) = args.common.connect(config, sync, true).await?;
    let deadline = args
        .timeout
        .map(|s| tokio::time::Instant::now() + Duration::from_secs(s));
    let sleep = tokio::time::sleep_until(deadline.unwrap_or_else(tokio::time::Instant::now));
    tokio::pin!(sleep);
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut messages = 0u64;
    if args.count == Some(0) {
        finish(&client).await;
        return Ok(());
    }
    loop {
        tokio::select! {
            _ = &mut ctrl_c => break,
            _ = &mut sleep, if deadline.is_some() => break,
            ev = events.recv() => {
                let Some(ev) = ev else { return Ok(()) };
                emit(&output::event(&ev))?;
                match ev {
                    ClientEvent::Closed { .. } => return Ok(()),
                    ClientEvent::Server(Event::Message { .. }) => {
                        messages += 1;
                        if args.count.is_some_and(|n| messages >= n) {
                            break;
                        }
                    }
                    ClientEvent::Server(_) => {}
                }
            }
        }
    }
    finish(&client).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct TestCli {
        #[command(subcommand)]
        cmd: ClientCommand,
    }

    #[test]
    fn commands_parse() {
        use clap::CommandFactory;
        TestCli::command().debug_assert();
        let c =
            TestCli::try_parse_from(["t", "send", "--as", "Tom", "--to", "Jerry", "hi"]).unwrap();
        match c.cmd {
            ClientCommand::Send(a) => {
                assert_eq!(a.common.client_id, "Tom");
                assert_eq!(a.target.to.as_deref(), Some("Jerry"));
                assert_eq!(a.text, "hi");
            }
            other => panic!("{other:?}"),
        }
        assert!(TestCli::try_parse_from(["t", "send", "--as", "Tom", "hi"]).is_err());
        assert!(
            TestCli::try_parse_from([
                "t",
                "send",
                "--as",
                "Tom",
                "--to",
                "J",
                "--conv",
                "abababababababababababab",
                "hi"
            ])
            .is_err()
        );
        let c = TestCli::try_parse_from([
            "t", "listen", "--as", "Jerry", "--sync", "pull", "--count", "2",
        ])
        .unwrap();
        assert!(matches!(
            c.cmd,
            ClientCommand::Listen(ListenArgs {
                sync: SyncArg::Pull,
                count: Some(2),
                ..
            })
        ));
        assert!(
            TestCli::try_parse_from(["t", "history", "--as", "J", "--conv", "nothex"]).is_err()
        );
    }
}
