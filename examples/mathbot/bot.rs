//! MathBot's logic, apart from its command line so the tests can run it:
//! the `_SysMessage` webhook receiver (axum), a small arithmetic parser, and
//! answers through the admin API (reqwest), each to the client that asked.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use axum::Router;
use axum::extract::{Json, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use reqwest::Method;
use serde_json::{Value, json};

/// LeanCloud's typed text message: what SDK clients send and render.
const TYPED_TEXT: i64 = -1;

/// Parentheses nested deeper than this are refused, so a long message of
/// `(((…` cannot exhaust the stack.
const MAX_DEPTH: usize = 64;

pub struct Bot {
    http: reqwest::Client,
    /// The admin API's base URL, e.g. `http://127.0.0.1:7451`.
    admin: String,
    app_id: String,
    master_key: String,
    /// Its client id (the sender of its answers) and its conversation's name.
    pub name: String,
    /// When set, webhook calls without this `X-LC-Hook-Key` are refused.
    hook_key: Option<String>,
}

impl Bot {
    pub fn new(
        admin: &str,
        app_id: &str,
        master_key: &str,
        name: &str,
        hook_key: Option<String>,
    ) -> anyhow::Result<Bot> {
        // reqwest is built without a default TLS provider; tidings uses ring.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(10))
            .build()
            .context("building the HTTP client")?;
        Ok(Bot {
            http,
            admin: admin.trim_end_matches('/').to_owned(),
            app_id: app_id.to_owned(),
            master_key: master_key.to_owned(),
            name: name.to_owned(),
            hook_key,
        })
    }

    /// One admin API call with the master key; an error answer is an error.
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.admin);
        let mut req = self
            .http
            .request(method, &url)
            .header("X-LC-Id", &self.app_id)
            .header("X-LC-Key", format!("{},master", self.master_key));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.with_context(|| format!("calling {url}"))?;
        let status = resp.status();
        let text = resp.text().await.context("reading the answer")?;
        let v: Value =
            serde_json::from_str(&text).map_err(|_| anyhow!("HTTP {status}, not JSON: {text}"))?;
        if !status.is_success() {
            bail!("HTTP {status}: {v}");
        }
        Ok(v)
    }

    /// The system conversation named after the bot: found, or created.
    pub async fn conversation(&self) -> anyhow::Result<String> {
        let filter = json!({ "name": self.name }).to_string();
        let path = format!("/1.2/rtm/service-conversations?where={}", encode(&filter));
        let found = self.call(Method::GET, &path, None).await?;
        if let Some(id) = found["results"][0]["objectId"].as_str() {
            return Ok(id.to_owned());
        }
        let created = self
            .call(
                Method::POST,
                "/1.2/rtm/service-conversations",
                Some(json!({ "name": self.name })),
            )
            .await?;
        created["objectId"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("no objectId in {created}"))
    }

    /// Lets `client` write to the bot: only subscribers may send to a
    /// system conversation.
    pub async fn subscribe(&self, conv: &str, client: &str) -> anyhow::Result<()> {
        let path = format!(
            "/1.2/rtm/service-conversations/{}/subscribers",
            encode(conv)
        );
        self.call(Method::POST, &path, Some(json!({ "client_id": client })))
            .await?;
        Ok(())
    }

    /// Answers one `_SysMessage` row, to its sender only.
    pub async fn answer(&self, row: &Value) -> anyhow::Result<()> {
        let (Some(conv), Some(from), Some(data)) = (
            row["conv"]["objectId"].as_str(),
            row["from"].as_str(),
            row["data"].as_str(),
        ) else {
            bail!("not a _SysMessage row: {row}");
        };
        // Binary content holds no arithmetic; our own words need no answer.
        if row["bin"] == json!(true) || from == self.name {
            return Ok(());
        }
        let path = format!("/1.2/rtm/service-conversations/{}/messages", encode(conv));
        let body = json!({
            "from_client": self.name,
            "to_clients": [from],
            "message": reply_to(data),
        });
        self.call(Method::POST, &path, Some(body)).await?;
        Ok(())
    }
}

/// The webhook: `POST /webhook` (or `/`) with a JSON array of rows. It
/// answers 200 once every row was answered; a row that could not be is
/// logged, not retried (the server would send the whole batch again).
pub fn router(bot: Arc<Bot>) -> Router {
    Router::new()
        .route("/", post(webhook))
        .route("/webhook", post(webhook))
        .with_state(bot)
}

async fn webhook(
    State(bot): State<Arc<Bot>>,
    headers: HeaderMap,
    Json(rows): Json<Vec<Value>>,
) -> StatusCode {
    if let Some(key) = &bot.hook_key {
        let given = headers.get("x-lc-hook-key").and_then(|v| v.to_str().ok());
        if given != Some(key.as_str()) {
            return StatusCode::UNAUTHORIZED;
        }
    }
    for row in &rows {
        if let Err(e) = bot.answer(row).await {
            eprintln!("{}: cannot answer {row}: {e:#}", bot.name);
        }
    }
    StatusCode::OK
}

/// The answer to a message: plain text gets plain text; a LeanCloud typed
/// text message (`{"_lctype": -1, "_lctext": …}`) gets one back.
pub fn reply_to(data: &str) -> String {
    if let Ok(Value::Object(o)) = serde_json::from_str::<Value>(data)
        && let Some(text) = o.get("_lctext").and_then(Value::as_str)
    {
        return json!({ "_lctype": TYPED_TEXT, "_lctext": answer_text(text) }).to_string();
    }
    answer_text(data)
}

/// `1+2*3 = 7`, or why not.
pub fn answer_text(expr: &str) -> String {
    match eval(expr) {
        Ok(v) => format!("{} = {}", expr.trim(), show(v)),
        Err(e) => format!(
            "I cannot compute {:?}: {e}. Try + - * / and parentheses, like (1+2)*3.",
            expr.trim()
        ),
    }
}

/// Whole numbers without a fraction; others as Rust prints them.
pub fn show(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum EvalError {
    Empty,
    Unexpected { at: usize, found: char },
    UnexpectedEnd,
    DivisionByZero,
    TooDeep,
    NotFinite,
}

impl fmt::Display for EvalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EvalError::Empty => write!(f, "there is nothing to compute"),
            EvalError::Unexpected { at, found } => write!(f, "unexpected {found:?} at {at}"),
            EvalError::UnexpectedEnd => write!(f, "it ends too soon"),
            EvalError::DivisionByZero => write!(f, "division by zero"),
            EvalError::TooDeep => write!(f, "parentheses nested over {MAX_DEPTH} deep"),
            EvalError::NotFinite => write!(f, "the result is too large"),
        }
    }
}

/// Evaluates `+ - * /`, unary signs and parentheses over decimal numbers,
/// with the usual precedence, left to right.
pub fn eval(text: &str) -> Result<f64, EvalError> {
    let mut p = Parser {
        text,
        pos: 0,
        depth: 0,
    };
    if p.peek().is_none() {
        return Err(EvalError::Empty);
    }
    let v = p.expr()?;
    if let Some(found) = p.peek() {
        return Err(EvalError::Unexpected { at: p.pos, found });
    }
    if v.is_finite() {
        Ok(v)
    } else {
        Err(EvalError::NotFinite)
    }
}

/// Recursive descent: expr = term (('+'|'-') term)*, term = factor
/// (('*'|'/') factor)*, factor = ('+'|'-') factor | number | '(' expr ')'.
struct Parser<'a> {
    text: &'a str,
    /// Byte offset of the next character.
    pos: usize,
    depth: usize,
}

impl Parser<'_> {
    /// The next character after whitespace, not consumed.
    fn peek(&mut self) -> Option<char> {
        let rest = &self.text[self.pos..];
        let trimmed = rest.trim_start();
        self.pos += rest.len() - trimmed.len();
        trimmed.chars().next()
    }

    fn bump(&mut self, c: char) {
        self.pos += c.len_utf8();
    }

    fn expr(&mut self) -> Result<f64, EvalError> {
        let mut v = self.term()?;
        loop {
            match self.peek() {
                Some(c @ '+') => {
                    self.bump(c);
                    v += self.term()?;
                }
                Some(c @ '-') => {
                    self.bump(c);
                    v -= self.term()?;
                }
                _ => return Ok(v),
            }
        }
    }

    fn term(&mut self) -> Result<f64, EvalError> {
        let mut v = self.factor()?;
        loop {
            match self.peek() {
                Some(c @ '*') => {
                    self.bump(c);
                    v *= self.factor()?;
                }
                Some(c @ '/') => {
                    self.bump(c);
                    let d = self.factor()?;
                    if d == 0.0 {
                        return Err(EvalError::DivisionByZero);
                    }
                    v /= d;
                }
                _ => return Ok(v),
            }
        }
    }

    fn factor(&mut self) -> Result<f64, EvalError> {
        if self.depth >= MAX_DEPTH {
            return Err(EvalError::TooDeep);
        }
        self.depth += 1;
        let v = self.unit();
        self.depth -= 1;
        v
    }

    fn unit(&mut self) -> Result<f64, EvalError> {
        match self.peek() {
            None => Err(EvalError::UnexpectedEnd),
            Some(c @ '+') => {
                self.bump(c);
                self.factor()
            }
            Some(c @ '-') => {
                self.bump(c);
                Ok(-self.factor()?)
            }
            Some(c @ '(') => {
                self.bump(c);
                let v = self.expr()?;
                match self.peek() {
                    Some(c @ ')') => {
                        self.bump(c);
                        Ok(v)
                    }
                    Some(found) => Err(EvalError::Unexpected {
                        at: self.pos,
                        found,
                    }),
                    None => Err(EvalError::UnexpectedEnd),
                }
            }
            Some(c) if c.is_ascii_digit() || c == '.' => self.number(),
            Some(found) => Err(EvalError::Unexpected {
                at: self.pos,
                found,
            }),
        }
    }

    fn number(&mut self) -> Result<f64, EvalError> {
        let start = self.pos;
        let len = self.text[start..]
            .bytes()
            .take_while(|b| b.is_ascii_digit() || *b == b'.')
            .count();
        self.pos += len;
        self.text[start..self.pos]
            .parse()
            .map_err(|_| EvalError::Unexpected {
                at: start,
                found: '.',
            })
    }
}

/// Percent-encodes a path segment or query value.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_follows_precedence_and_parentheses() {
        assert_eq!(eval("1+2*3"), Ok(7.0));
        assert_eq!(eval(" (1 + 2) * 3 "), Ok(9.0));
        assert_eq!(eval("10/4"), Ok(2.5));
        assert_eq!(eval("8-3-2"), Ok(3.0), "left to right");
        assert_eq!(eval("2*-3"), Ok(-6.0));
        assert_eq!(eval("-(2+3)*+2"), Ok(-10.0));
        assert_eq!(eval(".5+1.25"), Ok(1.75));
        assert_eq!(eval(""), Err(EvalError::Empty));
        assert_eq!(eval("1/(2-2)"), Err(EvalError::DivisionByZero));
        assert_eq!(eval("(1+2"), Err(EvalError::UnexpectedEnd));
        assert_eq!(eval("1+"), Err(EvalError::UnexpectedEnd));
        assert_eq!(
            eval("2^3"),
            Err(EvalError::Unexpected { at: 1, found: '^' })
        );
        assert_eq!(
            eval("1 é"),
            Err(EvalError::Unexpected { at: 2, found: 'é' })
        );
        assert_eq!(
            eval("1..2"),
            Err(EvalError::Unexpected { at: 0, found: '.' })
        );
        assert_eq!(eval(&"(".repeat(5000)), Err(EvalError::TooDeep));
        assert_eq!(
            eval("1*1e"),
            Err(EvalError::Unexpected { at: 3, found: 'e' })
        );
        assert_eq!(
            eval(&format!("9{}", "9".repeat(400))),
            Err(EvalError::NotFinite)
        );
    }

    #[test]
    fn answers_are_text_or_typed_like_the_question() {
        assert_eq!(reply_to("1+2*3"), "1+2*3 = 7");
        assert_eq!(reply_to("1/3"), format!("1/3 = {}", 1.0 / 3.0));
        assert!(reply_to("1/0").contains("division by zero"));
        let typed: Value =
            serde_json::from_str(&reply_to(r#"{"_lctype":-1,"_lctext":"2*(3+4)"}"#)).unwrap();
        assert_eq!(typed, json!({"_lctype": -1, "_lctext": "2*(3+4) = 14"}));
        assert_eq!(show(-0.0), "0");
        assert_eq!(show(1e20), "100000000000000000000");
    }
}
