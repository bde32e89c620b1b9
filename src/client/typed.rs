//! LeanCloud's typed-message convention, for apps that keep LeanCloud SDK
//! message formats while talking to Tidings.
//!
//! A typed message is text content holding a JSON object:
//!
//! | field | meaning |
//! |---|---|
//! | `_lctype` | the type: negative for LeanCloud's built-in types ([`TEXT`], [`IMAGE`], …, [`RECALLED`]), positive for the app's own |
//! | `_lctext` | text: the message itself, or a caption |
//! | `_lcattrs` | custom attributes, an object |
//! | `_lcfile` | image, audio, video and file messages: `url`, `objId`, `metaData` (`name`, `format`, `size`, `width`, `height`, `duration`) |
//! | `_lcloc` | location messages: `latitude`, `longitude` |
//!
//! App types may add fields of their own next to these; [`TypedMessage`]
//! keeps them in [`TypedMessage::fields`], so a message parsed and written
//! back keeps everything it had.
//!
//! The server treats content as opaque. It looks inside typed messages in
//! two places only: the keyword filter masks `_lctext` alone, and a history
//! query can ask for one `_lctype` ([`crate::protocol::HistoryQuery::lctype`]).
//! A recalled message's content becomes `{"_lctype":-127}`.
//!
//! ```
//! use tidings::client::typed::{TypedMessage, IMAGE};
//!
//! let msg = TypedMessage::image("https://example.com/cat.png").with_text("my cat");
//! let content = msg.to_content(); // goes into SendMessage::content
//! let back = TypedMessage::parse(&content).unwrap();
//! assert_eq!(back.lctype, IMAGE);
//! assert_eq!(back.file.unwrap().url, "https://example.com/cat.png");
//! ```

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::protocol::Content;

/// Text message (`TextMessage`).
pub const TEXT: i32 = -1;
/// Image message (`ImageMessage`): `_lcfile`, optional `_lctext` caption.
pub const IMAGE: i32 = -2;
/// Audio message (`AudioMessage`): `_lcfile`.
pub const AUDIO: i32 = -3;
/// Video message (`VideoMessage`): `_lcfile`.
pub const VIDEO: i32 = -4;
/// Location message (`LocationMessage`): `_lcloc`.
pub const LOCATION: i32 = -5;
/// File message (`FileMessage`): `_lcfile`.
pub const FILE: i32 = -6;
/// What a recalled message becomes (`RecalledMessage`).
pub const RECALLED: i32 = -127;

/// The name of a built-in type (`"text"`, `"image"`, …); `None` for the
/// app's own types and unknown negative ones.
pub fn type_name(lctype: i32) -> Option<&'static str> {
    Some(match lctype {
        TEXT => "text",
        IMAGE => "image",
        AUDIO => "audio",
        VIDEO => "video",
        LOCATION => "location",
        FILE => "file",
        RECALLED => "recalled",
        _ => return None,
    })
}

/// One typed message. Field names on the wire are LeanCloud's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TypedMessage {
    #[serde(rename = "_lctype")]
    pub lctype: i32,
    #[serde(rename = "_lctext", default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(rename = "_lcattrs", default, skip_serializing_if = "Option::is_none")]
    pub attrs: Option<Map<String, Value>>,
    #[serde(rename = "_lcfile", default, skip_serializing_if = "Option::is_none")]
    pub file: Option<LcFile>,
    #[serde(rename = "_lcloc", default, skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
    /// Any other top-level fields (an app type's own, like `op`).
    #[serde(flatten)]
    pub fields: Map<String, Value>,
}

/// `_lcfile`: a file stored elsewhere (LeanCloud's file storage, S3, …).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct LcFile {
    #[serde(default)]
    pub url: String,
    /// The file's object id in the app's storage.
    #[serde(rename = "objId", default, skip_serializing_if = "Option::is_none")]
    pub obj_id: Option<String>,
    /// `name`, `format`, `size` (bytes), `width`, `height`, `duration` (seconds), …
    #[serde(rename = "metaData", default, skip_serializing_if = "Option::is_none")]
    pub meta_data: Option<Map<String, Value>>,
    /// Any other fields, kept as they were.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl LcFile {
    pub fn new(url: impl Into<String>) -> Self {
        LcFile {
            url: url.into(),
            ..LcFile::default()
        }
    }

    pub fn with_obj_id(mut self, id: impl Into<String>) -> Self {
        self.obj_id = Some(id.into());
        self
    }

    /// Sets one `metaData` entry (`name`, `size`, `format`, …).
    pub fn with_meta(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.meta_data
            .get_or_insert_with(Map::new)
            .insert(key.into(), value.into());
        self
    }

    /// `metaData.name`, when it is a string.
    pub fn name(&self) -> Option<&str> {
        self.meta_data.as_ref()?.get("name")?.as_str()
    }
}

/// `_lcloc`: a point in degrees.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Location {
    pub latitude: f64,
    pub longitude: f64,
}

impl TypedMessage {
    /// A message of type `lctype` with nothing else set.
    pub fn new(lctype: i32) -> Self {
        TypedMessage {
            lctype,
            text: None,
            attrs: None,
            file: None,
            location: None,
            fields: Map::new(),
        }
    }

    /// A text message.
    pub fn text(text: impl Into<String>) -> Self {
        TypedMessage::new(TEXT).with_text(text)
    }

    /// An image message pointing at `url`.
    pub fn image(url: impl Into<String>) -> Self {
        TypedMessage::with_lcfile(IMAGE, LcFile::new(url))
    }

    /// An audio message pointing at `url`.
    pub fn audio(url: impl Into<String>) -> Self {
        TypedMessage::with_lcfile(AUDIO, LcFile::new(url))
    }

    /// A video message pointing at `url`.
    pub fn video(url: impl Into<String>) -> Self {
        TypedMessage::with_lcfile(VIDEO, LcFile::new(url))
    }

    /// A file message; build `file` with [`LcFile::new`] and its `with_*` methods.
    pub fn file(file: LcFile) -> Self {
        TypedMessage::with_lcfile(FILE, file)
    }

    /// A message of any type carrying `file` as `_lcfile` (an image with
    /// its metaData, say).
    pub fn with_lcfile(lctype: i32, file: LcFile) -> Self {
        TypedMessage {
            file: Some(file),
            ..TypedMessage::new(lctype)
        }
    }

    /// A location message.
    pub fn location(latitude: f64, longitude: f64) -> Self {
        TypedMessage {
            location: Some(Location {
                latitude,
                longitude,
            }),
            ..TypedMessage::new(LOCATION)
        }
    }

    /// One of the app's own types (LeanCloud reserves negative numbers for
    /// built-in types; positive ones are the app's), with its own fields.
    pub fn custom(lctype: i32, fields: Map<String, Value>) -> Self {
        TypedMessage {
            fields,
            ..TypedMessage::new(lctype)
        }
    }

    /// What a recalled message's content is.
    pub fn recalled() -> Self {
        TypedMessage::new(RECALLED)
    }

    /// Sets `_lctext`.
    pub fn with_text(mut self, text: impl Into<String>) -> Self {
        self.text = Some(text.into());
        self
    }

    /// Replaces `_lcattrs` whole.
    pub fn with_attrs(mut self, attrs: Map<String, Value>) -> Self {
        self.attrs = Some(attrs);
        self
    }

    /// Sets one entry of `_lcattrs`.
    pub fn with_attr(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.attrs
            .get_or_insert_with(Map::new)
            .insert(key.into(), value.into());
        self
    }

    /// Sets one of the app type's own top-level fields. A key the
    /// convention owns (`_lctype`, `_lctext`, …) belongs in its own field
    /// instead; [`TypedMessage::to_json`] would write it twice.
    pub fn with_field(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.fields.insert(key.into(), value.into());
        self
    }

    /// The JSON text that goes on the wire.
    pub fn to_json(&self) -> String {
        // Only maps with string keys and plain values: serializing cannot fail.
        serde_json::to_string(self).unwrap_or_else(|_| format!(r#"{{"_lctype":{}}}"#, self.lctype))
    }

    /// The message as content for [`crate::protocol::SendMessage`] or an edit.
    pub fn to_content(&self) -> Content {
        Content::Text(self.to_json())
    }

    /// Reads a typed message from JSON text: an object with an integer
    /// `_lctype`. Anything else is `None`.
    pub fn from_json(text: &str) -> Option<TypedMessage> {
        if !text.trim_start().starts_with('{') {
            return None;
        }
        serde_json::from_str(text).ok()
    }

    /// Reads a typed message from content; `None` for binary content, plain
    /// text, or JSON that is not a typed message.
    pub fn parse(content: &Content) -> Option<TypedMessage> {
        match content {
            Content::Text(t) => TypedMessage::from_json(t),
            Content::Binary(_) => None,
        }
    }

    /// LeanCloud's recalled marker.
    pub fn is_recalled(&self) -> bool {
        self.lctype == RECALLED
    }

    /// A LeanCloud built-in type (negative), as opposed to the app's own.
    pub fn is_builtin(&self) -> bool {
        self.lctype < 0
    }
}

impl From<TypedMessage> for Content {
    fn from(m: TypedMessage) -> Content {
        m.to_content()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn value(c: &Content) -> Value {
        match c {
            Content::Text(t) => serde_json::from_str(t).expect("JSON"),
            Content::Binary(_) => panic!("binary"),
        }
    }

    #[test]
    fn a_leancloud_js_sdk_text_message_parses() {
        // `_messageReceived`'s example in LeanCloud's hook docs.
        let c = Content::Text(r#"{"_lctext":"Holy crap!","_lctype":-1}"#.into());
        let m = TypedMessage::parse(&c).expect("typed");
        assert_eq!(m, TypedMessage::text("Holy crap!"));
        assert!(m.is_builtin() && !m.is_recalled());
        assert_eq!(type_name(m.lctype), Some("text"));
        assert_eq!(
            value(&m.to_content()),
            json!({"_lctext": "Holy crap!", "_lctype": -1})
        );
    }

    #[test]
    fn constructors_write_leanclouds_field_names() {
        let img = TypedMessage::image("https://x/cat.png")
            .with_text("cat")
            .with_attr("city", "Montreal");
        assert_eq!(
            value(&img.to_content()),
            json!({
                "_lctype": -2,
                "_lctext": "cat",
                "_lcattrs": {"city": "Montreal"},
                "_lcfile": {"url": "https://x/cat.png"},
            })
        );
        let loc = TypedMessage::location(31.5, -121.25);
        assert_eq!(
            value(&loc.to_content()),
            json!({"_lctype": -5, "_lcloc": {"latitude": 31.5, "longitude": -121.25}})
        );
        let file = TypedMessage::file(
            LcFile::new("https://x/a.pdf")
                .with_obj_id("5a1b")
                .with_meta("name", "a.pdf")
                .with_meta("size", 1234),
        );
        assert_eq!(
            value(&file.to_content()),
            json!({"_lctype": -6, "_lcfile": {
                "url": "https://x/a.pdf",
                "objId": "5a1b",
                "metaData": {"name": "a.pdf", "size": 1234},
            }})
        );
        assert_eq!(file.file.as_ref().and_then(LcFile::name), Some("a.pdf"));
        assert_eq!(TypedMessage::audio("u").lctype, AUDIO);
        assert_eq!(TypedMessage::video("u").lctype, VIDEO);
        let mut fields = Map::new();
        fields.insert("op".into(), json!("kick"));
        let op = TypedMessage::custom(1, fields).with_field("target", "Jerry");
        assert!(!op.is_builtin());
        assert_eq!(type_name(op.lctype), None);
        assert_eq!(
            value(&op.to_content()),
            json!({"_lctype": 1, "op": "kick", "target": "Jerry"})
        );
    }

    #[test]
    fn round_trips_keep_every_field() {
        let messages = [
            TypedMessage::text("hi").with_attrs(
                json!({"a": [1, 2], "b": {"c": null}})
                    .as_object()
                    .cloned()
                    .unwrap(),
            ),
            TypedMessage::image("https://x/i.png"),
            TypedMessage::location(0.0, 180.0).with_text("here"),
            TypedMessage::file(LcFile::new("u").with_meta("format", "pdf")),
            TypedMessage::custom(123, Map::new()).with_field("Ecode", "smile"),
            TypedMessage::recalled(),
        ];
        for m in messages {
            assert_eq!(TypedMessage::parse(&m.to_content()).as_ref(), Some(&m));
        }
        // Fields nobody here knows, at the top and inside _lcfile, survive.
        let text = r#"{"_lctype":-3,"_lcfile":{"url":"u","objId":"o","metaData":{"duration":2.5},"bucket":"b"},"op":7}"#;
        let m = TypedMessage::from_json(text).expect("typed");
        assert_eq!(
            m.file.as_ref().map(|f| f.extra["bucket"].clone()),
            Some(json!("b"))
        );
        assert_eq!(m.fields["op"], json!(7));
        assert_eq!(
            serde_json::from_str::<Value>(&m.to_json()).unwrap(),
            serde_json::from_str::<Value>(text).unwrap()
        );
    }

    #[test]
    fn the_recalled_marker_is_a_recalled_message() {
        let c = Content::Text(crate::protocol::RECALLED_CONTENT.to_owned());
        let m = TypedMessage::parse(&c).expect("typed");
        assert!(m.is_recalled());
        assert_eq!(m, TypedMessage::recalled());
        assert_eq!(m.to_content(), c);
    }

    #[test]
    fn other_content_is_not_typed() {
        for text in [
            "hello",
            "",
            "{",
            "[1,2]",
            r#"{"_lctext":"no type"}"#,
            r#"{"_lctype":"-1"}"#,
            r#"{"_lctype":-1.5}"#,
            r#"{"_lctype":-1,"_lcattrs":[1]}"#,
            "-1",
        ] {
            assert_eq!(
                TypedMessage::parse(&Content::Text(text.into())),
                None,
                "{text}"
            );
        }
        let bin = Content::Binary(br#"{"_lctype":-1}"#.to_vec());
        assert_eq!(TypedMessage::parse(&bin), None);
    }

    #[test]
    fn agrees_with_the_servers_history_filter() {
        for m in [
            TypedMessage::text("x"),
            TypedMessage::location(1.0, 2.0),
            TypedMessage::custom(42, Map::new()),
        ] {
            assert_eq!(crate::message::lctype_of(&m.to_content()), Some(m.lctype));
        }
        assert_eq!(
            crate::message::lctype_of(&Content::Text(" {\"_lctext\":\"a\",\"_lctype\":-1}".into())),
            TypedMessage::from_json(" {\"_lctext\":\"a\",\"_lctype\":-1}").map(|m| m.lctype)
        );
    }
}
