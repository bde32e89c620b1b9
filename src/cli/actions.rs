//! One-shot commands on messages and conversations that already exist:
//! edit, recall, delete, receipts, read, typing. Each logs in like `send`
//! (pull mode, no acks), does one thing and prints one JSON line.

use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::{Map, Value, json};
use tidings::client::typed::{self, TypedMessage};
use tidings::config::Config;
use tidings::protocol::{Content, ConvId, EditMessage};

use super::output::{self, emit};
use super::{Common, one_shot};

/// How long `typing` stays connected after sending its datagram, so the
/// server has it before the logout closes the connection.
const TYPING_LINGER: Duration = Duration::from_millis(250);

/// Mentions of a message: who gets it with `mentioned` set.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Mentions {
    /// Mention this client (repeatable): it receives the message with `mentioned` set.
    #[arg(long = "mention", value_name = "CLIENT_ID")]
    pub mention: Vec<String>,
    /// Mention everyone in the conversation.
    #[arg(long)]
    pub mention_all: bool,
}

/// Wrapping text as a LeanCloud typed message.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TypedArgs {
    /// Send the text as a LeanCloud typed message ({"_lctype":N,"_lctext":TEXT}):
    /// -1 text, -2 image, -3 audio, -4 video, -5 location, -6 file; positive
    /// numbers are your app's own types.
    #[arg(long = "type", value_name = "LCTYPE", allow_negative_numbers = true)]
    pub lctype: Option<i32>,
    /// The typed message's _lcattrs, a JSON object; without --type the
    /// message is a typed text message (-1).
    #[arg(long, value_name = "JSON")]
    pub attrs: Option<String>,
}

impl TypedArgs {
    /// `text` as content: plain, or typed when --type or --attrs was given.
    pub fn content(&self, text: String) -> anyhow::Result<Content> {
        if self.lctype.is_none() && self.attrs.is_none() {
            return Ok(Content::Text(text));
        }
        let mut msg = TypedMessage::new(self.lctype.unwrap_or(typed::TEXT)).with_text(text);
        if let Some(attrs) = &self.attrs {
            msg = msg.with_attrs(json_object(attrs, "--attrs")?);
        }
        Ok(msg.to_content())
    }
}

/// Parses a flag's value as a JSON object.
pub fn json_object(text: &str, flag: &str) -> anyhow::Result<Map<String, Value>> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => bail!("{flag} must be a JSON object, like {{\"key\": \"value\"}}"),
        Err(e) => bail!("{flag} is not JSON: {e}"),
    }
}

#[derive(Debug, clap::Args)]
pub struct EditArgs {
    #[command(flatten)]
    pub common: Common,
    /// Conversation id (24 hex digits).
    #[arg(value_name = "CONV")]
    pub conv: ConvId,
    /// The message's id (msgId, as `send` and `history` print it).
    #[arg(value_name = "MSG_ID", allow_hyphen_values = true)]
    pub msg_id: String,
    /// The new text; it replaces the content whole.
    pub text: String,
    #[command(flatten)]
    pub mentions: Mentions,
    #[command(flatten)]
    pub typed: TypedArgs,
}

/// A command on one message.
#[derive(Debug, clap::Args)]
pub struct MsgArgs {
    #[command(flatten)]
    pub common: Common,
    /// Conversation id (24 hex digits).
    #[arg(value_name = "CONV")]
    pub conv: ConvId,
    /// The message's id (msgId, as `send` and `history` print it).
    #[arg(value_name = "MSG_ID", allow_hyphen_values = true)]
    pub msg_id: String,
}

/// A command on one conversation.
#[derive(Debug, clap::Args)]
pub struct ConvArg {
    #[command(flatten)]
    pub common: Common,
    /// Conversation id (24 hex digits).
    #[arg(value_name = "CONV")]
    pub conv: ConvId,
}

#[derive(Debug, clap::Args)]
pub struct ReadArgs {
    #[command(flatten)]
    pub common: Common,
    /// Conversation id (24 hex digits).
    #[arg(value_name = "CONV")]
    pub conv: ConvId,
    /// Read up to this seq (default: the newest message).
    #[arg(long)]
    pub seq: Option<u64>,
}

#[derive(Debug, clap::Args)]
pub struct TypingArgs {
    #[command(flatten)]
    pub common: Common,
    /// Conversation id (24 hex digits).
    #[arg(value_name = "CONV")]
    pub conv: ConvId,
    /// Say you stopped typing (default: started).
    #[arg(long)]
    pub stop: bool,
}

pub async fn edit(args: EditArgs, config: &Config) -> anyhow::Result<()> {
    let edit = EditMessage {
        conv: args.conv,
        msg_id: args.msg_id,
        content: args.typed.content(args.text)?,
        mention_list: args.mentions.mention,
        mention_all: args.mentions.mention_all,
    };
    one_shot(&args.common, config, async |client| {
        let msg = client.edit(edit).await.context("editing")?;
        emit(&output::message(&msg))
    })
    .await
}

pub async fn recall(args: MsgArgs, config: &Config) -> anyhow::Result<()> {
    one_shot(&args.common, config, async |client| {
        let msg = client
            .recall(args.conv, &args.msg_id)
            .await
            .context("recalling")?;
        emit(&output::message(&msg))
    })
    .await
}

pub async fn delete_message(args: MsgArgs, config: &Config) -> anyhow::Result<()> {
    one_shot(&args.common, config, async |client| {
        client
            .delete_message(args.conv, &args.msg_id)
            .await
            .context("deleting the message")?;
        emit(&json!({
            "convId": args.conv.to_string(),
            "msgId": args.msg_id,
            "deleted": true,
        }))
    })
    .await
}

pub async fn delete_conversation(args: ConvArg, config: &Config) -> anyhow::Result<()> {
    one_shot(&args.common, config, async |client| {
        client
            .delete_conversation(args.conv)
            .await
            .context("deleting the conversation")?;
        emit(&json!({"convId": args.conv.to_string(), "deleted": true}))
    })
    .await
}

pub async fn receipts(args: ConvArg, config: &Config) -> anyhow::Result<()> {
    one_shot(&args.common, config, async |client| {
        let (delivered, read) = client
            .receipts(args.conv)
            .await
            .context("reading receipts")?;
        emit(&json!({
            "convId": args.conv.to_string(),
            "lastDeliveredAt": delivered,
            "lastReadAt": read,
        }))
    })
    .await
}

pub async fn read(args: ReadArgs, config: &Config) -> anyhow::Result<()> {
    one_shot(&args.common, config, async |client| {
        client
            .read(args.conv, args.seq)
            .await
            .context("marking read")?;
        emit(&json!({"convId": args.conv.to_string(), "read": true, "seq": args.seq}))
    })
    .await
}

pub async fn typing(args: TypingArgs, config: &Config) -> anyhow::Result<()> {
    one_shot(&args.common, config, async |client| {
        // The server drops typing from non-members silently; ask first so a
        // mistake is reported.
        client
            .get_conversation(args.conv)
            .await
            .context("looking up the conversation")?;
        client
            .typing(args.conv, !args.stop)
            .context("sending the typing state")?;
        tokio::time::sleep(TYPING_LINGER).await;
        emit(&json!({"convId": args.conv.to_string(), "typing": !args.stop}))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_stays_plain() {
        let t = TypedArgs::default();
        assert_eq!(t.content("hi".into()).unwrap(), Content::Text("hi".into()));
    }

    #[test]
    fn type_and_attrs_make_a_typed_message() {
        let t = TypedArgs {
            lctype: Some(-2),
            attrs: None,
        };
        let m = TypedMessage::parse(&t.content("cat".into()).unwrap()).unwrap();
        assert_eq!((m.lctype, m.text.as_deref()), (-2, Some("cat")));
        let t = TypedArgs {
            lctype: None,
            attrs: Some(r#"{"city":"Montreal"}"#.into()),
        };
        let m = TypedMessage::parse(&t.content("cold".into()).unwrap()).unwrap();
        assert_eq!(m, TypedMessage::text("cold").with_attr("city", "Montreal"));
        let bad = TypedArgs {
            lctype: Some(1),
            attrs: Some("[1]".into()),
        };
        let err = bad.content("x".into()).unwrap_err().to_string();
        assert!(err.contains("--attrs must be a JSON object"), "{err}");
    }

    #[test]
    fn json_objects_only() {
        assert!(json_object(r#"{"a":1}"#, "--push-data").is_ok());
        let err = json_object("nope", "--push-data").unwrap_err().to_string();
        assert!(err.starts_with("--push-data is not JSON"), "{err}");
        assert!(json_object("3", "--push-data").is_err());
    }
}
