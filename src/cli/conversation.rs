//! `tidings conversation …`: make and manage groups from the command line,
//! so a newcomer can get a conversation id for `chat --conv` and try what
//! README describes (join, leave, add, remove, update, mute). Each command
//! logs in like `send` (pull mode, no acks), does one thing and prints JSON
//! lines: the conversation as it stands afterwards, or what was done.

use anyhow::Context;
use serde_json::json;
use tidings::client::Client;
use tidings::config::Config;
use tidings::protocol::{ConvId, ConvKind, CreateConversation};

use super::output::{self, emit};
use super::{Common, actions, one_shot};

#[derive(Debug, clap::Subcommand)]
pub enum ConversationCommand {
    /// Create a conversation (you are its creator and a member); print it.
    Create(CreateArgs),
    /// Join a conversation (or enter a chat room); print it.
    Join(ConvOnly),
    /// Leave a conversation; its members are told.
    Leave(ConvOnly),
    /// Add members; print the conversation.
    Add(MembersArgs),
    /// Remove members (the creator or a manager); print the conversation.
    Remove(MembersArgs),
    /// Change the name or the custom attributes; print the conversation.
    Update(UpdateArgs),
    /// Mute the conversation for you (`muted: true`; push hooks see it); print it.
    Mute(ConvOnly),
    /// Undo `mute`; print the conversation.
    Unmute(ConvOnly),
    /// Print one JSON line per member, with its role.
    Members(ConvOnly),
}

#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    #[command(flatten)]
    pub common: Common,
    /// Another member (repeatable); you are always added.
    #[arg(long = "member", value_name = "CLIENT_ID")]
    pub members: Vec<String>,
    #[arg(long)]
    pub name: Option<String>,
    /// Custom attributes, a JSON object.
    #[arg(long, value_name = "JSON")]
    pub attr: Option<String>,
    /// Reuse the conversation of exactly these members if there is one.
    #[arg(long, conflicts_with = "chatroom")]
    pub unique: bool,
    /// A chat room: no stored member list, whoever is in it gets messages,
    /// no offline delivery.
    #[arg(long)]
    pub chatroom: bool,
}

/// A command on one conversation.
#[derive(Debug, clap::Args)]
pub struct ConvOnly {
    #[command(flatten)]
    pub common: Common,
    /// Conversation id (24 hex digits).
    #[arg(value_name = "CONV")]
    pub conv: ConvId,
}

#[derive(Debug, clap::Args)]
pub struct MembersArgs {
    #[command(flatten)]
    pub common: Common,
    /// Conversation id (24 hex digits).
    #[arg(value_name = "CONV")]
    pub conv: ConvId,
    /// Client ids.
    #[arg(value_name = "CLIENT_ID", required = true)]
    pub members: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct UpdateArgs {
    #[command(flatten)]
    pub common: Common,
    /// Conversation id (24 hex digits).
    #[arg(value_name = "CONV")]
    pub conv: ConvId,
    #[arg(long, required_unless_present = "attr")]
    pub name: Option<String>,
    /// Custom attributes, a JSON object; replaces the old ones whole.
    #[arg(long, value_name = "JSON")]
    pub attr: Option<String>,
}

pub async fn run(cmd: ConversationCommand, config: &Config) -> anyhow::Result<()> {
    match cmd {
        ConversationCommand::Create(a) => create(a, config).await,
        ConversationCommand::Join(a) => {
            on_conv(&a, config, "joining", async |c, conv| c.join(conv).await).await
        }
        ConversationCommand::Leave(a) => {
            one_shot(&a.common, config, async |client| {
                client.leave(a.conv).await.context("leaving")?;
                emit(&json!({"convId": a.conv.to_string(), "left": true}))
            })
            .await
        }
        ConversationCommand::Add(a) => change_members(a, config, true).await,
        ConversationCommand::Remove(a) => change_members(a, config, false).await,
        ConversationCommand::Update(a) => {
            if let Some(attr) = &a.attr {
                actions::json_object(attr, "--attr")?;
            }
            let (name, attr) = (a.name.clone(), a.attr.clone());
            let args = ConvOnly {
                common: a.common,
                conv: a.conv,
            };
            on_conv(&args, config, "updating", async |c, conv| {
                c.update(conv, name, attr).await
            })
            .await
        }
        ConversationCommand::Mute(a) => {
            on_conv(&a, config, "muting", async |c, conv| c.mute(conv).await).await
        }
        ConversationCommand::Unmute(a) => {
            on_conv(&a, config, "unmuting", async |c, conv| c.unmute(conv).await).await
        }
        ConversationCommand::Members(a) => members(a, config).await,
    }
}

/// Does `change`, then prints the conversation as the server now has it.
/// `conversation add` and `conversation remove`: one shape, two calls.
async fn change_members(a: MembersArgs, config: &Config, add: bool) -> anyhow::Result<()> {
    let MembersArgs {
        common,
        conv,
        members,
    } = a;
    let what = if add {
        "adding members"
    } else {
        "removing members"
    };
    on_conv(&ConvOnly { common, conv }, config, what, async |c, conv| {
        if add {
            c.add_members(conv, members).await
        } else {
            c.remove_members(conv, members).await
        }
    })
    .await
}

async fn on_conv(
    args: &ConvOnly,
    config: &Config,
    what: &str,
    change: impl AsyncFnOnce(&Client, ConvId) -> Result<(), tidings::client::ClientError>,
) -> anyhow::Result<()> {
    one_shot(&args.common, config, async |client| {
        change(client, args.conv)
            .await
            .with_context(|| format!("{what} {}", args.conv))?;
        let info = client
            .get_conversation(args.conv)
            .await
            .context("reading the conversation back")?;
        emit(&output::conversation(&info))
    })
    .await
}

async fn create(args: CreateArgs, config: &Config) -> anyhow::Result<()> {
    if let Some(attr) = &args.attr {
        actions::json_object(attr, "--attr")?;
    }
    let req = CreateConversation {
        members: args.members,
        name: args.name,
        attr: args.attr,
        unique: args.unique,
        kind: if args.chatroom {
            ConvKind::ChatRoom
        } else {
            ConvKind::Normal
        },
        sig: None,
        ttl_secs: None,
    };
    one_shot(&args.common, config, async |client| {
        let info = client
            .create_conversation(req)
            .await
            .context("creating the conversation")?;
        emit(&output::conversation(&info))
    })
    .await
}

async fn members(args: ConvOnly, config: &Config) -> anyhow::Result<()> {
    one_shot(&args.common, config, async |client| {
        let info = client
            .get_conversation(args.conv)
            .await
            .context("reading the conversation")?;
        for m in &info.members {
            let role = if *m == info.creator {
                "creator"
            } else if info.managers.contains(m) {
                "manager"
            } else {
                "member"
            };
            emit(&json!({"convId": info.id.to_string(), "clientId": m, "role": role}))?;
        }
        Ok(())
    })
    .await
}
