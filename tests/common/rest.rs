//! A REST caller of the LeanCloud door (`[gateway]`) with the app's
//! headers, and the bodies the SDKs send to register a device.

use serde_json::{Value, json};

use super::TestServer;

/// A REST caller with the app's headers; [`Rest::master`] sends the master key.
pub struct Rest {
    pub http: reqwest::Client,
    pub base: String,
    pub app_id: String,
    pub key: String,
}

impl Rest {
    pub fn app(s: &TestServer) -> Rest {
        let c = s.running().credentials();
        Rest::with_key(s, &c.app_key)
    }

    pub fn master(s: &TestServer) -> Rest {
        let c = s.running().credentials();
        Rest::with_key(s, &format!("{},master", c.master_key))
    }

    pub fn with_key(s: &TestServer, key: &str) -> Rest {
        let addr = s.running().gateway_addr().expect("gateway on");
        Rest {
            http: super::admin::http_client(),
            base: format!("http://{addr}"),
            app_id: s.running().credentials().app_id.clone(),
            key: key.to_owned(),
        }
    }

    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut r = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("X-LC-Id", &self.app_id)
            .header("X-LC-Key", &self.key);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().await.expect("request");
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn put(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::PUT, path, Some(body)).await
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, path, None).await
    }
}

/// Android (java-unified-sdk `LCInstallation`): the whole object, then the
/// FCM service adds vendor and registrationId with a PUT.
pub fn android_body(iid: &str) -> Value {
    json!({
        "deviceType": "android",
        "installationId": iid,
        "timeZone": "Asia/Shanghai",
        "channels": [],
    })
}

/// Swift (`LCInstallation` through `batch/save`): every save is a POST;
/// the answer holds the objectId under `internal`.
pub fn swift_batch(token: &str, team: &str, internal: &str) -> Value {
    json!({"requests": [{
        "method": "POST",
        "path": "/1.1/installations",
        "body": {
            "deviceType": "ios",
            "deviceToken": token,
            "apnsTeamId": team,
            "apnsTopic": "com.example.app",
            "timeZone": "Asia/Shanghai",
            "badge": 0,
            "channels": {"__op": "AddUnique", "objects": ["news"]},
            "__internalId": internal,
        }
    }]})
}
