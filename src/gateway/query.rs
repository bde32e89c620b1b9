//! STUB (replaced by the h-query branch at merge).
use crate::protocol::{ConversationInfo, ErrorBody, Message};
use serde_json::{Value, json};

pub struct Query {
    flag: u32,
    pinned: Option<Vec<String>>,
}

pub fn row(info: &ConversationInfo, _caller: &str, _last: Option<&Message>, _flag: u32) -> Value {
    json!({"objectId": info.id.to_string(), "m": info.members, "name": info.name, "c": info.creator})
}

impl Query {
    pub fn parse(
        where_json: Option<&str>,
        _sort: Option<&str>,
        _limit: Option<i32>,
        _skip: Option<i32>,
        flag: Option<i32>,
    ) -> Result<Query, ErrorBody> {
        let w: Value = where_json
            .and_then(|w| serde_json::from_str(w).ok())
            .unwrap_or(Value::Null);
        let pinned = match &w["objectId"] {
            Value::String(s) => Some(vec![s.clone()]),
            v => v["$in"].as_array().map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(String::from))
                    .collect()
            }),
        };
        Ok(Query {
            flag: flag.unwrap_or(0) as u32,
            pinned,
        })
    }
    pub fn pinned_ids(&self) -> Option<Vec<String>> {
        self.pinned.clone()
    }
    pub fn apply(&self, rows: Vec<Value>) -> Vec<Value> {
        rows
    }
    pub fn flag(&self) -> u32 {
        self.flag
    }
}
