//! What one push says, by LeanCloud's rules, as pure functions: which text
//! wins (the hook's `pushMessage`, then the message's `pushData`, then the
//! static template), the per-platform split, `badge: "Increment"`, the
//! control keys that choose credentials, and Apple's 4 KB cap. The store
//! work (the badge counter) and the I/O stay with the caller.

use serde_json::{Map, Value, json};

use crate::push::{Platform, apns};
use crate::store::installations::Installation;

/// Apple's and Google's limit on a notification's body.
pub const MAX_PAYLOAD_BYTES: usize = 4096;

/// The badge value that makes the server count (case-sensitive, as in
/// LeanCloud's docs).
const INCREMENT: &str = "Increment";

/// A push text as LeanCloud accepts it: a JSON object, a string holding
/// one (the docs' `JSON.stringify({...})`), or plain text, which becomes the
/// alert. Empty text and anything else say nothing.
pub fn payload_of(v: &Value) -> Option<Value> {
    match v {
        Value::Object(_) => Some(v.clone()),
        Value::String(s) => payload_of_text(s),
        _ => None,
    }
}

/// [`payload_of`] for text: `pushData` and the template come as strings.
fn payload_of_text(s: &str) -> Option<Value> {
    match serde_json::from_str::<Value>(s) {
        Ok(o @ Value::Object(_)) => Some(o),
        _ if s.trim().is_empty() => None,
        _ => Some(json!({ "alert": s })),
    }
}

/// The variables of the static template.
#[derive(Debug, Clone, Copy)]
pub struct Vars<'a> {
    pub conv: &'a str,
    pub from: &'a str,
    /// When the push goes out, Unix seconds.
    pub now_secs: u64,
}

/// The payload of a message, in LeanCloud's priority order. The template's
/// variables are filled in its string values after parsing, so a clientId
/// with a quote in it cannot break the template's JSON.
pub fn resolve(
    hook: Option<&Value>,
    push_data: Option<&str>,
    template: &str,
    vars: Vars,
) -> Option<Value> {
    if let Some(p) = hook.and_then(payload_of) {
        return Some(p);
    }
    if let Some(p) = push_data.and_then(payload_of_text) {
        return Some(p);
    }
    let mut p = payload_of_text(template)?;
    fill(&mut p, &vars);
    Some(p)
}

fn fill(v: &mut Value, vars: &Vars) {
    match v {
        Value::String(s) if s.contains("${") => {
            *s = s
                .replace("${convId}", vars.conv)
                .replace("${fromClientId}", vars.from)
                .replace("${timestamp}", &vars.now_secs.to_string());
        }
        Value::Array(a) => a.iter_mut().for_each(|x| fill(x, vars)),
        Value::Object(o) => o.values_mut().for_each(|x| fill(x, vars)),
        _ => {}
    }
}

/// Where a device's pushes go: its platform and token. `None` for a
/// device no provider here can reach: no token yet, a platform other than
/// iOS and Android, or an Android push vendor other than FCM (a Xiaomi or
/// Huawei token sent to FCM would come back invalid and delete the
/// registration).
pub fn target(dev: &Installation) -> Option<(Platform, &str)> {
    fn token(t: &Option<String>) -> Option<&str> {
        t.as_deref().filter(|t| !t.is_empty())
    }
    match dev.device_type.to_ascii_lowercase().as_str() {
        "ios" => Some((Platform::Ios, token(&dev.device_token)?)),
        "android" => {
            let fcm = dev
                .vendor
                .as_deref()
                .is_none_or(|v| v.is_empty() || v.eq_ignore_ascii_case("fcm"));
            fcm.then_some(())?;
            Some((Platform::Android, token(&dev.registration_id)?))
        }
        _ => None,
    }
}

/// The part of a payload for `platform`: `{"ios":{…},"android":{…}}`
/// splits, and a platform with no part gets nothing; any other payload
/// is for every platform.
pub fn for_platform(payload: &Value, platform: Platform) -> Option<Value> {
    let obj = payload.as_object()?;
    let split = ["ios", "android"]
        .iter()
        .any(|k| obj.get(*k).is_some_and(Value::is_object));
    if !split {
        return Some(payload.clone());
    }
    let key = match platform {
        Platform::Ios => "ios",
        Platform::Android => "android",
    };
    obj.get(key).filter(|v| v.is_object()).cloned()
}

/// Whether the server must count this device's badge up: iOS only, as
/// LeanCloud's docs say.
pub fn wants_increment(part: &Value, platform: Platform) -> bool {
    platform == Platform::Ios && part.get("badge").and_then(Value::as_str) == Some(INCREMENT)
}

/// How a payload picks credentials and collapsing; none of it is sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Controls {
    pub sandbox: bool,
    pub team_id: Option<String>,
    pub collapse_id: Option<String>,
    pub apns_priority: Option<u8>,
    pub apns_push_type: Option<String>,
}

/// The payload's control keys, with the device's registration as the
/// fallback (`deviceProfile`, `apnsTeamId`).
pub fn controls(part: &Value, dev: &Installation) -> Controls {
    let text = |k: &str| part.get(k).and_then(Value::as_str).map(str::to_owned);
    let profile = text("_profile").or_else(|| dev.device_profile.clone());
    Controls {
        sandbox: profile.as_deref() == Some("dev"),
        team_id: text("_apns_team_id").or_else(|| dev.apns_team_id.clone()),
        collapse_id: text("collapse-id"),
        // A number or its text: LeanCloud's docs show both.
        apns_priority: part.get("apns-priority").and_then(|v| {
            v.as_u64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
                .and_then(|n| u8::try_from(n).ok())
        }),
        apns_push_type: text("apns-push-type"),
    }
}

/// The body as sent. For APNs, LeanCloud's keys in `aps` with `badge` the
/// counted number when asked to count; for FCM and the gateway, the
/// LeanCloud payload less the control keys, which those providers map
/// themselves. `None` when it cannot be made to fit 4 KB.
pub fn body(part: &Value, badge: Option<i64>, apns: bool) -> Option<Value> {
    let mut part = part.clone();
    if let (Some(n), Some(o)) = (badge, part.as_object_mut()) {
        o.insert("badge".into(), json!(n));
    }
    if !apns {
        if let Some(o) = part.as_object_mut() {
            for k in ["_profile", "_apns_team_id"] {
                o.remove(k);
            }
        }
        return Some(part);
    }
    let mut b = apns::body_from_leancloud(&part);
    fit(&mut b).then_some(b)
}

/// Cuts `aps.alert` (its text, or its `body`) so the body fits Apple's
/// 4 KB, on a UTF-8 boundary; false when even an empty alert is too big.
/// Each pass cuts by the excess; JSON escapes can leave it over, hence the
/// loop, which ends because every pass shortens the text.
fn fit(b: &mut Value) -> bool {
    loop {
        let size = b.to_string().len();
        if size <= MAX_PAYLOAD_BYTES {
            return true;
        }
        let Some(text) = b
            .get_mut("aps")
            .and_then(Value::as_object_mut)
            .and_then(alert_text)
            .filter(|t| !t.is_empty())
        else {
            return false;
        };
        let mut keep = text.len().saturating_sub(size - MAX_PAYLOAD_BYTES);
        while !text.is_char_boundary(keep) {
            keep -= 1;
        }
        text.truncate(keep);
    }
}

fn alert_text(aps: &mut Map<String, Value>) -> Option<&mut String> {
    match aps.get_mut("alert")? {
        Value::String(s) => Some(s),
        Value::Object(a) => match a.get_mut("body")? {
            Value::String(s) => Some(s),
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
#[path = "content_tests.rs"]
mod tests;
