//! Client subcommands: a chat prompt, and one-shot tools that print JSON
//! lines for scripts. All of them find the local server's address,
//! certificate pin and credentials in its data dir unless told otherwise.

mod actions;
pub mod admin;
mod connect;
mod conversation;
pub mod hooks;
mod output;
pub mod store;

use std::collections::HashSet;
use std::io::IsTerminal;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::json;
use tidings::client::{Client, ClientError, ClientEvent};
use tidings::config::{Config, duration};
use tidings::protocol::{
    Anchor, Content, ConvId, Direction, EditMessage, Event, HistoryQuery, SendMessage, SyncMode,
};
use tokio::io::{AsyncBufReadExt, BufReader};

use actions::{Mentions, TypedArgs};
pub use connect::Common;
use output::emit;

/// Time for a connection closed on purpose (no logout) to tell the server
/// before the process exits.
const ABORT_LINGER: Duration = Duration::from_millis(200);

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
    /// Edit one of your messages (new text, mentions); print it as stored.
    Edit(actions::EditArgs),
    /// Recall one of your messages; print it with the recalled marker.
    Recall(actions::MsgArgs),
    /// Delete a message from history for everyone (its sender or a manager).
    DeleteMessage(actions::MsgArgs),
    /// Delete a conversation and its history (its owner or a manager).
    DeleteConversation(actions::ConvArg),
    /// Print when the other member last received and last read your messages
    /// (conversations of two, messages sent with --receipt).
    Receipts(actions::ConvArg),
    /// Mark a conversation read on all your devices; the sender of a
    /// --receipt message gets a read receipt.
    Read(actions::ReadArgs),
    /// Tell the conversation's online members you started (or, with --stop,
    /// stopped) typing. Best effort, like any typing indicator.
    Typing(actions::TypingArgs),
    /// Create and manage conversations: create, join, leave, add, remove,
    /// update, mute, unmute, members.
    #[command(subcommand)]
    Conversation(conversation::ConversationCommand),
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
    /// Ask for delivery and read receipts on what you send.
    #[arg(long)]
    pub receipt: bool,
    /// A will message: sent to the conversation if this chat drops without
    /// logging out (Ctrl-C, SIGTERM, a closed terminal, a kill -9, network
    /// loss), not on /quit.
    #[arg(long, value_name = "TEXT")]
    pub will: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct SendArgs {
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub target: Target,
    /// Message text.
    pub text: String,
    #[command(flatten)]
    pub mentions: Mentions,
    #[command(flatten)]
    pub typed: TypedArgs,
    /// Ask for delivery and read receipts (conversations of two members).
    #[arg(long)]
    pub receipt: bool,
    /// Not stored; reaches only members online now.
    #[arg(long)]
    pub transient: bool,
    /// Push payload kept with the message, a JSON object.
    #[arg(long, value_name = "JSON")]
    pub push_data: Option<String>,
    /// Make this your will message instead of sending it now: it goes to the
    /// conversation when this connection drops without logging out. The
    /// command stays connected until Ctrl-C, SIGTERM or SIGHUP, then drops
    /// the connection, which sends it.
    #[arg(long, conflicts_with_all = ["transient", "token"])]
    pub will: bool,
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
    #[arg(long, value_name = "MSGID", allow_hyphen_values = true)]
    pub before: Option<String>,
    /// Only typed messages with this _lctype (-1 text, -2 image, …). The
    /// server looks through at most 20,000 messages per query.
    #[arg(long = "type", value_name = "LCTYPE", allow_negative_numbers = true)]
    pub lctype: Option<i32>,
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
    /// Stop after this long: seconds (30, 2.5) or a duration (500ms, 2m).
    #[arg(long, value_name = "DURATION", value_parser = duration::parse)]
    pub timeout: Option<Duration>,
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
        ClientCommand::Edit(a) => actions::edit(a, config).await,
        ClientCommand::Recall(a) => actions::recall(a, config).await,
        ClientCommand::DeleteMessage(a) => actions::delete_message(a, config).await,
        ClientCommand::DeleteConversation(a) => actions::delete_conversation(a, config).await,
        ClientCommand::Receipts(a) => actions::receipts(a, config).await,
        ClientCommand::Read(a) => actions::read(a, config).await,
        ClientCommand::Typing(a) => actions::typing(a, config).await,
        ClientCommand::Conversation(c) => conversation::run(c, config).await,
    }
}

/// Runs a one-shot command: logs in, does `work`, and logs out whether the
/// work succeeded or not. One-shot commands log in in pull mode without
/// acking, so they neither receive nor consume the device's missed messages;
/// a later `listen` or `chat` still gets them.
///
/// The logout matters on failure too: a process that just exits leaves its
/// connection to time out on the server, and the client counts as online
/// (receipts go to it instead of waiting for its next login) until then.
async fn one_shot(
    common: &Common,
    config: &Config,
    work: impl AsyncFnOnce(&Client) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let (client, events) = common.connect(config, SyncMode::Pull, false).await?;
    drop(events);
    let result = work(&client).await;
    finish(&client).await;
    result
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

/// What a line typed into `chat` asks for.
#[derive(Debug, PartialEq, Eq)]
enum Input<'a> {
    Send(&'a str),
    Edit(&'a str),
    Recall,
    Help,
    Quit,
    Nothing,
    Unknown(&'a str),
}

const CHAT_HELP: &str = "\
-- lines are sent as messages; @name mentions name, @all everyone --
-- /edit TEXT   replace your last message     /recall  recall it --
-- /quit        log out and leave (Ctrl-C leaves without logging out) --
-- //text       send a line that starts with / --";

fn parse_input(line: &str) -> Input<'_> {
    let text = line.trim_end_matches(['\r', '\n']);
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Input::Nothing;
    }
    // `//text` sends `/text`.
    if let Some(rest) = text.trim_start().strip_prefix('/')
        && rest.starts_with('/')
    {
        return Input::Send(rest);
    }
    let Some(cmd) = trimmed.strip_prefix('/') else {
        return Input::Send(text);
    };
    let (name, arg) = cmd.split_once(char::is_whitespace).unwrap_or((cmd, ""));
    let arg = arg.trim();
    match name {
        "quit" | "exit" => Input::Quit,
        "help" => Input::Help,
        "recall" => Input::Recall,
        "edit" if !arg.is_empty() => Input::Edit(arg),
        _ => Input::Unknown(trimmed),
    }
}

/// `@name` words of a chat line: who it mentions, and whether `@all`.
fn mentions_in(text: &str) -> (Vec<String>, bool) {
    let mut list: Vec<String> = Vec::new();
    let mut all = false;
    for word in text.split_whitespace() {
        let Some(id) = word.strip_prefix('@') else {
            continue;
        };
        let id = id.trim_end_matches([',', '.', ':', ';', '!', '?', ')']);
        if id.is_empty() {
            continue;
        }
        if id == "all" {
            all = true;
        } else if !list.iter().any(|m| m == id) {
            list.push(id.to_owned());
        }
    }
    (list, all)
}

/// A refusal from the server is reported and the chat goes on; anything
/// else (a lost connection) ends it.
fn refused<T>(what: &str, r: Result<T, ClientError>) -> anyhow::Result<Option<T>> {
    match r {
        Ok(t) => Ok(Some(t)),
        Err(e @ ClientError::Server(_)) => {
            eprintln!("{what}: {e}");
            Ok(None)
        }
        Err(e) => Err(e).context(what.to_owned()),
    }
}

/// The chat's line for an event. A delivery receipt no newer than a read
/// receipt already shown says nothing new (read implies delivered; the read
/// can come first, since the chat reads what it shows at once).
fn chat_event(view: &output::ChatView<'_>, ev: &Event, read_upto: &mut u64) -> Option<String> {
    match ev {
        Event::LastReadAt { conv, at, .. } if *conv == view.conv => {
            *read_upto = (*read_upto).max(*at);
        }
        Event::LastDeliveredAt { conv, at, .. } if *conv == view.conv && *at <= *read_upto => {
            return None;
        }
        _ => {}
    }
    view.event(ev)
}

/// What stopped a long-running command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// Ctrl-C: the person at the terminal.
    Interrupt,
    /// SIGTERM (kill, systemd, a supervisor) or SIGHUP (the terminal closed).
    Gone,
}

/// Waits for Ctrl-C, SIGTERM or SIGHUP. Without handlers, SIGTERM and SIGHUP
/// would end the process with the connection still open, and the server
/// would see the client online (and hold its will) until the peer timed out.
/// The handlers are installed by the caller before it connects, so a signal
/// that comes during the login is not lost.
struct StopSignals {
    term: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl StopSignals {
    fn install() -> anyhow::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(StopSignals {
            term: signal(SignalKind::terminate()).context("installing a SIGTERM handler")?,
            hup: signal(SignalKind::hangup()).context("installing a SIGHUP handler")?,
        })
    }

    async fn next(&mut self) -> anyhow::Result<Stop> {
        tokio::select! {
            r = tokio::signal::ctrl_c() => r.context("waiting for Ctrl-C").map(|()| Stop::Interrupt),
            _ = self.term.recv() => Ok(Stop::Gone),
            _ = self.hup.recv() => Ok(Stop::Gone),
        }
    }
}

/// Leaves without logging out, as a device dropping off would: the QUIC
/// close reaches the server at once, so it sees the client offline now and
/// sends the will message set on this connection, if any.
async fn drop_connection(client: &Client) {
    client.abort();
    tokio::time::sleep(ABORT_LINGER).await;
}

async fn chat(args: ChatArgs, config: &Config) -> anyhow::Result<()> {
    let mut signals = StopSignals::install()?;
    let (client, mut events) = args.common.connect(config, SyncMode::Push, true).await?;
    let conv = resolve_target(&client, &args.target).await?;
    let view = output::ChatView {
        conv,
        me: client.client_id(),
        color: std::io::stdout().is_terminal(),
    };
    let (backlog, _) = client
        .history(latest(conv, CHAT_BACKLOG))
        .await
        .context("loading recent messages")?;
    emit(&format!(
        "-- conversation {conv}; /help for commands, /quit to leave --"
    ))?;
    // Push sync may deliver again what the backlog already showed.
    let shown: HashSet<String> = backlog.iter().map(|m| m.msg_id.clone()).collect();
    for m in &backlog {
        emit(&view.line(m))?;
    }
    let _ = client.read(conv, None).await;
    if let Some(text) = &args.will {
        client
            .set_will(SendMessage::text(conv, text.clone()))
            .await
            .context("setting the will message")?;
    }

    let mut last_sent: Option<String> = None;
    let mut read_upto = 0;
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    loop {
        tokio::select! {
            // Ctrl-C leaves without logging out too, as the help says: /quit is the way out.
            r = signals.next() => {
                r?;
                drop_connection(&client).await;
                return Ok(());
            }
            line = lines.next_line() => {
                let Some(line) = line.context("reading stdin")? else { break };
                match parse_input(&line) {
                    Input::Nothing => {}
                    Input::Quit => break,
                    Input::Help => eprintln!("{CHAT_HELP}"),
                    Input::Unknown(cmd) => eprintln!("unknown command {cmd:?}; /help lists them"),
                    Input::Send(text) => {
                        let (mention_list, mention_all) = mentions_in(text);
                        let msg = SendMessage {
                            mention_list,
                            mention_all,
                            receipt: args.receipt,
                            ..SendMessage::text(conv, text)
                        };
                        if let Some(sent) = refused("not sent", client.send(msg).await)? {
                            last_sent = Some(sent.msg_id);
                        }
                    }
                    Input::Edit(text) => {
                        let Some(msg_id) = last_sent.clone() else {
                            eprintln!("nothing of yours to edit in this chat yet");
                            continue;
                        };
                        let (mention_list, mention_all) = mentions_in(text);
                        let edit = EditMessage {
                            conv,
                            msg_id,
                            content: Content::Text(text.to_owned()),
                            mention_list,
                            mention_all,
                        };
                        if let Some(m) = refused("not edited", client.edit(edit).await)? {
                            emit(&view.line(&m))?;
                        }
                    }
                    Input::Recall => {
                        let Some(msg_id) = last_sent.clone() else {
                            eprintln!("nothing of yours to recall in this chat yet");
                            continue;
                        };
                        if let Some(m) = refused("not recalled", client.recall(conv, &msg_id).await)? {
                            last_sent = None;
                            emit(&view.line(&m))?;
                        }
                    }
                }
            }
            ev = events.recv() => match ev {
                Some(ClientEvent::Server(Event::Message { msg, .. })) => {
                    if msg.conv == conv && !shown.contains(&msg.msg_id) {
                        emit(&view.line(&msg))?;
                        // Shown is read: a sender who asked gets a read receipt.
                        if msg.seq > 0 && msg.from != client.client_id() {
                            let _ = client.read(conv, Some(msg.seq)).await;
                        }
                    }
                }
                Some(ClientEvent::Server(Event::Conflict { code, reason })) => {
                    eprintln!("-- logged in elsewhere ({code} {reason}) --");
                }
                Some(ClientEvent::Server(ev)) => {
                    if let Some(line) = chat_event(&view, &ev, &mut read_upto) {
                        emit(&line)?;
                    }
                    let gone = matches!(ev, Event::ConversationDeleted { conv: c, .. } | Event::Kicked { conv: c, .. } if c == conv);
                    if gone {
                        finish(&client).await;
                        return Ok(());
                    }
                }
                Some(ClientEvent::Closed { code, reason }) => {
                    let code = code.map(|c| format!(" ({c})")).unwrap_or_default();
                    bail!("connection closed{code}: {reason}");
                }
                None => bail!("connection closed"),
            },
        }
    }
    let _ = client.read(conv, None).await;
    finish(&client).await;
    Ok(())
}

async fn send(args: SendArgs, config: &Config) -> anyhow::Result<()> {
    let content = args.typed.content(args.text)?;
    let push_data = match &args.push_data {
        Some(p) => {
            actions::json_object(p, "--push-data")?;
            Some(p.clone())
        }
        None => None,
    };
    let msg = |conv| SendMessage {
        conv,
        content,
        mention_list: args.mentions.mention,
        mention_all: args.mentions.mention_all,
        receipt: args.receipt,
        transient: args.transient,
        will: false,
        push_data,
        token: args.token,
    };
    if args.will {
        return send_will(&args.common, &args.target, msg, config).await;
    }
    let (client, mut events) = args.common.connect(config, SyncMode::Pull, false).await?;
    let result = async {
        let conv = resolve_target(&client, &args.target).await?;
        let sent = client.send(msg(conv)).await.context("sending")?;
        emit(&json!({
            "convId": conv.to_string(),
            "msgId": sent.msg_id,
            "timestamp": sent.timestamp,
            "seq": sent.seq,
        }))?;
        anyhow::Ok(sent.msg_id)
    }
    .await;
    finish(&client).await;
    let msg_id = result?;
    // The server writes a MESSAGE_UPDATE (keyword filter -4408, or a hook
    // changed the content) right after the send's answer, so it is read
    // before the logout's answer: everything it could say is queued now.
    while let Some(ev) = events.try_recv() {
        if let ClientEvent::Server(Event::MessageUpdated { msg, .. }) = &ev
            && msg.msg_id == msg_id
        {
            emit(&output::event(&ev))?;
        }
    }
    Ok(())
}

/// `send --will`: sets the will, then holds the connection until Ctrl-C or
/// SIGTERM and drops it without logging out, which is what sends the will.
async fn send_will(
    common: &Common,
    target: &Target,
    msg: impl FnOnce(ConvId) -> SendMessage,
    config: &Config,
) -> anyhow::Result<()> {
    let mut signals = StopSignals::install()?;
    let (client, mut events) = common.connect(config, SyncMode::Pull, false).await?;
    let set = async {
        let conv = resolve_target(&client, target).await?;
        let sent = client
            .set_will(msg(conv))
            .await
            .context("setting the will message")?;
        anyhow::Ok((conv, sent))
    };
    let (conv, sent) = match set.await {
        Ok(r) => r,
        Err(e) => {
            finish(&client).await;
            return Err(e);
        }
    };
    emit(&json!({
        "convId": conv.to_string(),
        "msgId": sent.msg_id,
        "timestamp": sent.timestamp,
        "will": true,
    }))?;
    loop {
        tokio::select! {
            r = signals.next() => {
                r?;
                drop_connection(&client).await;
                return Ok(());
            }
            ev = events.recv() => match ev {
                Some(ClientEvent::Closed { code, reason }) => {
                    let code = code.map(|c| format!(" ({c})")).unwrap_or_default();
                    bail!("connection closed{code}: {reason}");
                }
                Some(_) => {}
                None => bail!("connection closed"),
            },
        }
    }
}

async fn history(args: HistoryArgs, config: &Config) -> anyhow::Result<()> {
    let query = match args.before {
        Some(id) => HistoryQuery {
            conv: args.conv,
            anchor: Anchor::MsgId(id),
            direction: Direction::Before,
            inclusive: false,
            limit: args.limit,
            lctype: args.lctype,
        },
        None => HistoryQuery {
            lctype: args.lctype,
            ..latest(args.conv, args.limit)
        },
    };
    one_shot(&args.common, config, async |client| {
        let (messages, _more) = client.history(query).await.context("reading history")?;
        for m in &messages {
            emit(&output::message(m))?;
        }
        Ok(())
    })
    .await
}

async fn conversations(args: ConvArgs, config: &Config) -> anyhow::Result<()> {
    one_shot(&args.common, config, async |client| {
        let list = client
            .conversations(args.limit)
            .await
            .context("listing conversations")?;
        for c in &list {
            emit(&output::conversation(c))?;
        }
        Ok(())
    })
    .await
}

async fn listen(args: ListenArgs, config: &Config) -> anyhow::Result<()> {
    let sync = match args.sync {
        SyncArg::Push => SyncMode::Push,
        SyncArg::Pull => SyncMode::Pull,
    };
    let mut signals = StopSignals::install()?;
    let (client, mut events) = args.common.connect(config, sync, true).await?;
    // A timeout past what an Instant can hold is no deadline at all.
    let deadline = args
        .timeout
        .and_then(|d| tokio::time::Instant::now().checked_add(d));
    let sleep = tokio::time::sleep_until(deadline.unwrap_or_else(tokio::time::Instant::now));
    tokio::pin!(sleep);
    let mut messages = 0u64;
    if args.count == Some(0) {
        finish(&client).await;
        return Ok(());
    }
    loop {
        tokio::select! {
            stop = signals.next() => match stop? {
                // The person at the terminal is done: log out.
                Stop::Interrupt => break,
                // Killed or hung up: close at once, as a dropped device.
                Stop::Gone => {
                    drop_connection(&client).await;
                    return Ok(());
                }
            },
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
mod tests;
