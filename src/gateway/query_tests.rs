//! Tests for `conv/query`: rows byte for byte, each operator, combinations,
//! sorting and paging, pins, the `$regex` subset, and every refusal.

use super::pattern::Pattern;
use super::*;
use crate::protocol::{ConvId, Message};

/// 2015-07-30T14:37:42.584Z
const T0: u64 = 1_438_267_062_584;
const ID: &str = "abababababababababababab";

fn info() -> ConversationInfo {
    ConversationInfo {
        id: ConvId([0xab; 12]),
        kind: ConvKind::Normal,
        name: Some("a&b".into()),
        attr: Some(r#"{"topic":"movie","level":3}"#.into()),
        creator: "alice".into(),
        members: vec!["alice".into(), "bob".into()],
        managers: vec!["alice".into()],
        muted: false,
        unique: true,
        created_at: T0,
        updated_at: T0 + 1000,
        last_message_at: Some(T0 + 7416),
        last_seq: 3,
    }
}

fn text(row: &Value) -> String {
    serde_json::to_string(row).expect("serializes")
}

fn q(where_json: &str) -> Query {
    Query::parse(Some(where_json), None, None, None, None).expect("parses")
}

fn refused(where_json: &str) -> String {
    let e = Query::parse(Some(where_json), None, None, None, None).expect_err("refused");
    assert_eq!(
        (e.code, e.reason.as_str()),
        (4310, "CONVERSATION_QUERY_FAILED")
    );
    e.detail
}

fn ids(rows: &[Value]) -> Vec<String> {
    rows.iter()
        .map(|r| r["objectId"].as_str().unwrap_or("?").to_string())
        .collect()
}

fn d(ms: u64) -> Value {
    json!({"__type": "Date", "iso": iso_date(ms)})
}

/// Four rows shaped like `row`'s output, with the awkward cases: a float,
/// a string where numbers are, a missing `lm`, a null attribute, an `attr`
/// column.
fn rows() -> Vec<Value> {
    vec![
        json!({"objectId": "1", "name": "Movie night", "m": ["alice", "bob"], "tr": false, "sys": false,
               "level": 3, "topic": "movie", "lm": d(T0 + 1000), "createdAt": iso_date(T0)}),
        json!({"objectId": "2", "name": "movies", "m": ["alice", "carol", "dave"], "tr": false, "sys": false,
               "level": 10, "topic": "music", "lm": d(T0 + 5000), "createdAt": iso_date(T0 + 1)}),
        json!({"objectId": "3", "name": "Lobby", "m": [], "tr": true, "sys": false,
               "level": 3.0, "createdAt": iso_date(T0 + 2)}),
        json!({"objectId": "4", "name": "News", "m": ["bob"], "tr": false, "sys": true, "topic": null,
               "level": "high", "attr": {"color": "red"}, "lm": d(T0 + 3000), "createdAt": iso_date(T0 + 3),
               "meta": {"a": {"b": 1}}}),
    ]
}

fn hits(where_json: &str) -> Vec<String> {
    ids(&q(where_json).apply(rows()))
}

fn sorted(sort: &str) -> Vec<String> {
    let query = Query::parse(None, Some(sort), None, None, None).expect("parses");
    ids(&query.apply(rows()))
}

// ---- row ----

#[test]
fn a_row_is_leanclouds_conversation_row() {
    let r = row(&info(), "alice", None, 0);
    assert_eq!(
        text(&r),
        format!(
            r#"{{"c":"alice","createdAt":"2015-07-30T14:37:42.584Z","level":3,"lm":{{"__type":"Date","iso":"2015-07-30T14:37:50.000Z"}},"m":["alice","bob"],"mu":[],"name":"a&b","objectId":"{ID}","sys":false,"topic":"movie","tr":false,"unique":true,"uniqueId":"{ID}","updatedAt":"2015-07-30T14:37:43.584Z"}}"#
        )
    );
}

#[test]
fn a_compact_muted_chat_room_row() {
    let mut i = info();
    i.kind = ConvKind::ChatRoom;
    i.name = None;
    i.attr = None;
    i.members = Vec::new();
    i.muted = true;
    i.unique = false;
    i.last_message_at = None;
    let r = row(&i, "carol", None, FLAG_COMPACT);
    assert_eq!(
        text(&r),
        format!(
            r#"{{"c":"alice","createdAt":"2015-07-30T14:37:42.584Z","mu":["carol"],"objectId":"{ID}","sys":false,"tr":true,"unique":false,"updatedAt":"2015-07-30T14:37:43.584Z"}}"#
        )
    );
}

#[test]
fn a_system_conversation_row_says_sys() {
    let mut i = info();
    i.kind = ConvKind::System;
    let r = row(&i, "bob", None, 0);
    assert_eq!((&r["sys"], &r["tr"]), (&json!(true), &json!(false)));
}

#[test]
fn the_last_message_in_text_with_its_edit_time_and_mentions() {
    let mut m = Message::new(
        ConvId([0xab; 12]),
        3,
        "bob",
        T0 + 7416,
        Content::Text("hi @carol".into()),
    );
    m.mention_list = vec!["carol".into()];
    m.updated_at = Some(T0 + 9000);
    let mut i = info();
    i.attr = None;
    let r = row(&i, "alice", Some(&m), FLAG_LAST_MESSAGE | FLAG_COMPACT);
    assert_eq!(
        text(&r),
        format!(
            r#"{{"bin":false,"c":"alice","createdAt":"2015-07-30T14:37:42.584Z","lm":{{"__type":"Date","iso":"2015-07-30T14:37:50.000Z"}},"mention_all":false,"mention_pids":["carol"],"msg":"hi @carol","msg_from":"bob","msg_mid":"{mid}","msg_timestamp":1438267070000,"mu":[],"name":"a&b","objectId":"{ID}","patch_timestamp":1438267071584,"sys":false,"tr":false,"unique":true,"uniqueId":"{ID}","updatedAt":"2015-07-30T14:37:43.584Z"}}"#,
            mid = m.msg_id
        )
    );
}

#[test]
fn a_binary_last_message_is_base64_with_bin() {
    let m = Message::new(
        ConvId([0xab; 12]),
        1,
        "bob",
        T0,
        Content::Binary(vec![0, 1, 2, 0xff]),
    );
    let r = row(&info(), "alice", Some(&m), FLAG_LAST_MESSAGE);
    assert_eq!((&r["msg"], &r["bin"]), (&json!("AAEC/w=="), &json!(true)));
    assert!(r.get("patch_timestamp").is_none(), "never edited");
    assert_eq!(r["m"], json!(["alice", "bob"]), "not compact");
}

#[test]
fn the_last_message_needs_the_flag() {
    let m = Message::new(ConvId([0xab; 12]), 1, "bob", T0, Content::Text("x".into()));
    let r = row(&info(), "alice", Some(&m), FLAG_COMPACT);
    for k in [
        "msg",
        "bin",
        "msg_from",
        "msg_mid",
        "msg_timestamp",
        "mention_all",
        "mention_pids",
    ] {
        assert!(r.get(k).is_none(), "{k} without flag 2");
    }
}

#[test]
fn custom_attributes_never_override_reserved_keys() {
    let mut i = info();
    i.attr = Some(
        r#"{"m":["evil"],"objectId":"x","tr":true,"c":"mallory","ttl":5,"temp":true,"msg":"fake","color":"red","attr":{"x":1}}"#
            .into(),
    );
    let r = row(&i, "alice", None, 0);
    assert_eq!(r["m"], json!(["alice", "bob"]));
    assert_eq!(
        (&r["objectId"], &r["tr"], &r["c"]),
        (&json!(ID), &json!(false), &json!("alice"))
    );
    for k in ["ttl", "temp", "msg"] {
        assert!(r.get(k).is_none(), "{k} is reserved");
    }
    // Custom ones stay, `attr` (Swift's and JS 3's column) included.
    assert_eq!((&r["color"], &r["attr"]), (&json!("red"), &json!({"x": 1})));
}

#[test]
fn unreadable_stored_attributes_are_left_out() {
    for attr in ["not json", "[1,2]", "\"s\""] {
        let mut i = info();
        i.attr = Some(attr.into());
        let r = row(&i, "alice", None, 0);
        assert_eq!(
            r.as_object().map(|o| o.len()),
            Some(12),
            "{attr}: only the columns"
        );
    }
}

// ---- parse: page, flag, refusals ----

#[test]
fn limit_skip_and_flag_defaults_and_caps() {
    let p = |l, s, f| Query::parse(None, None, l, s, f).expect("parses");
    let none = p(None, None, None);
    assert_eq!(
        (none.limit(), none.skip, none.flag()),
        (DEFAULT_LIMIT, 0, 0)
    );
    assert_eq!(p(Some(0), None, None).limit(), 10, "0 reads as unset");
    assert_eq!(p(Some(999), None, None).limit(), 999);
    assert_eq!(p(Some(5000), None, None).limit(), 1000);
    let set = p(Some(3), Some(4), Some(3));
    assert_eq!((set.limit(), set.skip, set.flag()), (3, 4, 3));
}

#[test]
fn negative_page_or_flag_is_refused() {
    for (l, s, f, what) in [
        (Some(-1), None, None, "limit"),
        (None, Some(-2), None, "skip"),
        (None, None, Some(-3), "flag"),
    ] {
        let e = Query::parse(None, None, l, s, f).expect_err("refused");
        assert_eq!(e.code, 4310);
        assert!(e.detail.contains(what), "{}", e.detail);
    }
}

#[test]
fn a_blank_where_matches_everything() {
    for w in [None, Some(""), Some("  "), Some("{}")] {
        let query = Query::parse(w, None, None, None, None).expect("parses");
        assert_eq!(ids(&query.apply(rows())), ["1", "2", "3", "4"], "{w:?}");
    }
}

#[test]
fn malformed_where_is_refused_with_a_reason() {
    assert!(refused("{").contains("not JSON"));
    for w in ["[1]", "null", "3", "\"x\""] {
        assert!(refused(w).contains("not a JSON object"), "{w}");
    }
    assert!(refused(r#"{"":1}"#).contains("empty key"));
}

#[test]
fn unknown_operators_are_refused_not_ignored() {
    for (w, op) in [
        (r#"{"$where":"1"}"#, "$where"),
        (r#"{"loc":{"$nearSphere":{"latitude":1}}}"#, "$nearSphere"),
        (r#"{"m":{"$inQuery":{}}}"#, "$inQuery"),
        (r#"{"m":{"$elemMatch":{}}}"#, "$elemMatch"),
        (r#"{"$and":[{"m":{"$not":"x"}}]}"#, "$not"),
    ] {
        let detail = refused(w);
        assert!(
            detail.contains(op) && detail.contains("not supported"),
            "{detail}"
        );
    }
}

#[test]
fn malformed_operands_are_refused() {
    let cases = [
        (r#"{"m":{"$all":["a"],"x":1}}"#, "mixes operators"),
        (r#"{"m":{"$in":"a"}}"#, "where.m.$in is not an array"),
        (r#"{"m":{"$nin":{}}}"#, "not an array"),
        (r#"{"m":{"$all":1}}"#, "not an array"),
        (r#"{"m":{"$size":-1}}"#, "non-negative integer"),
        (r#"{"m":{"$size":1.5}}"#, "non-negative integer"),
        (r#"{"m":{"$exists":1}}"#, "true or false"),
        (r#"{"lm":{"$gt":true}}"#, "a valid Date"),
        (r#"{"lm":{"$lt":null}}"#, "a valid Date"),
        (r#"{"lm":{"$gte":[1]}}"#, "a valid Date"),
        (
            r#"{"lm":{"$lte":{"__type":"Date","iso":"yesterday"}}}"#,
            "a valid Date",
        ),
        (r#"{"name":{"$options":"i"}}"#, "$options without $regex"),
        (
            r#"{"name":{"$regex":"a","$options":1}}"#,
            "$options is not a string",
        ),
        (r#"{"name":{"$regex":"a","$options":"x"}}"#, "option 'x'"),
        (r#"{"name":{"$regex":1}}"#, "$regex is not a string"),
        (r#"{"name":{"$regex":"(a"}}"#, "where.name.$regex: "),
        (r#"{"$and":[]}"#, "where.$and is empty"),
        (r#"{"$or":{"a":1}}"#, "where.$or is not an array"),
        (
            r#"{"$or":[{"a":1},2]}"#,
            "where.$or[1] is not a JSON object",
        ),
    ];
    for (w, want) in cases {
        let detail = refused(w);
        assert!(detail.contains(want), "{w}: {detail}");
    }
}

#[test]
fn malformed_sort_keys_are_refused() {
    for s in ["-", "$x", "--a", "a,-"] {
        let e = Query::parse(None, Some(s), None, None, None).expect_err("refused");
        assert!(
            e.code == 4310 && e.detail.contains("sort key"),
            "{s}: {}",
            e.detail
        );
    }
}

// ---- where: each operator ----

#[test]
fn implicit_equality_on_scalars_arrays_and_null() {
    assert_eq!(hits(r#"{"name":"Lobby"}"#), ["3"]);
    assert_eq!(hits(r#"{"level":3}"#), ["1", "3"], "3 equals 3.0");
    assert_eq!(hits(r#"{"m":"bob"}"#), ["1", "4"], "array contains");
    assert_eq!(hits(r#"{"m":["alice","bob"]}"#), ["1"], "whole array");
    assert_eq!(
        hits(r#"{"m":["bob","alice"]}"#),
        Vec::<String>::new(),
        "order matters"
    );
    assert_eq!(hits(r#"{"tr":true}"#), ["3"]);
    assert_eq!(hits(r#"{"topic":null}"#), ["3", "4"], "null or missing");
    assert_eq!(hits(r#"{"meta":{"a":{"b":1}}}"#), ["4"], "a plain object");
    assert_eq!(hits(r#"{"nope":1}"#), Vec::<String>::new());
}

#[test]
fn eq_and_ne() {
    assert_eq!(hits(r#"{"m":{"$eq":"bob"}}"#), ["1", "4"]);
    assert_eq!(
        hits(r#"{"topic":{"$ne":"movie"}}"#),
        ["2", "3", "4"],
        "missing counts as not equal"
    );
    assert_eq!(
        hits(r#"{"m":{"$ne":"bob"}}"#),
        ["2", "3"],
        "no element equals"
    );
    assert_eq!(hits(r#"{"topic":{"$ne":null}}"#), ["1", "2"]);
}

#[test]
fn in_and_nin() {
    assert_eq!(hits(r#"{"objectId":{"$in":["2","4","9"]}}"#), ["2", "4"]);
    assert_eq!(hits(r#"{"m":{"$in":["carol","zed"]}}"#), ["2"]);
    assert_eq!(hits(r#"{"m":{"$in":[]}}"#), Vec::<String>::new());
    assert_eq!(hits(r#"{"m":{"$nin":["bob"]}}"#), ["2", "3"]);
    assert_eq!(hits(r#"{"topic":{"$in":[null,"music"]}}"#), ["2", "3", "4"]);
    assert_eq!(hits(r#"{"level":{"$nin":[3,"high"]}}"#), ["2"]);
}

#[test]
fn all_and_size_as_the_sdks_send_them() {
    // JS containsMembers / Swift containedAllIn.
    assert_eq!(hits(r#"{"m":{"$all":["alice","carol"]}}"#), ["2"]);
    assert_eq!(hits(r#"{"m":{"$all":["bob"]}}"#), ["1", "4"]);
    assert_eq!(
        hits(r#"{"m":{"$all":[]}}"#),
        Vec::<String>::new(),
        "as MongoDB"
    );
    assert_eq!(hits(r#"{"m":{"$size":0}}"#), ["3"]);
    assert_eq!(
        hits(r#"{"name":{"$size":0}}"#),
        Vec::<String>::new(),
        "not an array"
    );
    // JS withMembers(["alice","bob"]): size and all under one key.
    assert_eq!(hits(r#"{"m":{"$size":2,"$all":["alice","bob"]}}"#), ["1"]);
}

#[test]
fn exists() {
    assert_eq!(hits(r#"{"lm":{"$exists":false}}"#), ["3"]);
    assert_eq!(
        hits(r#"{"topic":{"$exists":true}}"#),
        ["1", "2", "4"],
        "null is there"
    );
    assert_eq!(hits(r#"{"nope":{"$exists":false}}"#), ["1", "2", "3", "4"]);
}

#[test]
fn ranges_on_numbers_and_strings_stay_within_their_type() {
    assert_eq!(
        hits(r#"{"level":{"$gt":3}}"#),
        ["2"],
        "\"high\" is not compared"
    );
    assert_eq!(hits(r#"{"level":{"$gte":3}}"#), ["1", "2", "3"]);
    assert_eq!(hits(r#"{"level":{"$lt":10}}"#), ["1", "3"]);
    assert_eq!(hits(r#"{"level":{"$lte":10,"$gt":3.5}}"#), ["2"]);
    assert_eq!(
        hits(r#"{"name":{"$gte":"a"}}"#),
        ["2"],
        "byte order: uppercase first"
    );
    assert_eq!(hits(r#"{"level":{"$gt":"a"}}"#), ["4"]);
}

#[test]
fn ranges_and_equality_on_dates() {
    let w = |op: &str, ms: u64| format!(r#"{{"lm":{{"{op}":{}}}}}"#, d(ms));
    assert_eq!(hits(&w("$gt", T0 + 2000)), ["2", "4"]);
    assert_eq!(hits(&w("$lt", T0 + 3000)), ["1"]);
    assert_eq!(hits(&w("$lte", T0 + 3000)), ["1", "4"]);
    assert_eq!(hits(&w("$gte", T0 + 5001)), Vec::<String>::new());
    // createdAt is a plain string in the row but a date to LeanCloud.
    let created = format!(r#"{{"createdAt":{{"$gte":{}}}}}"#, d(T0 + 2));
    assert_eq!(hits(&created), ["3", "4"]);
    assert_eq!(hits(&format!(r#"{{"lm":{}}}"#, d(T0 + 5000))), ["2"]);
    // The same instant written with an offset and more digits.
    let iso = "2015-07-30T22:37:47.584000+08:00";
    let offset = format!(r#"{{"lm":{{"__type":"Date","iso":"{iso}"}}}}"#);
    assert_eq!(hits(&offset), ["2"]);
    let as_string = format!(r#"{{"createdAt":{}}}"#, d(T0 + 1));
    assert_eq!(hits(&as_string), ["2"]);
}

#[test]
fn regex_as_the_js_and_swift_sdks_write_it() {
    // JS contains / startsWith / endsWith quote with \Q…\E.
    assert_eq!(hits(r#"{"name":{"$regex":"\\Qie\\E"}}"#), ["1", "2"]);
    assert_eq!(hits(r#"{"name":{"$regex":"^\\QMov\\E"}}"#), ["1"]);
    assert_eq!(
        hits(r#"{"name":{"$regex":"^\\QMov\\E","$options":"i"}}"#),
        ["1", "2"]
    );
    assert_eq!(hits(r#"{"name":{"$regex":"\\Qs\\E$"}}"#), ["2", "4"]);
    // Swift escapes with backslashes; JS matches() sends the source.
    assert_eq!(hits(r#"{"name":{"$regex":"^Movie\\ night$"}}"#), ["1"]);
    assert_eq!(
        hits(r#"{"name":{"$regex":"^(lobby|news)$","$options":"im"}}"#),
        ["3", "4"]
    );
    assert_eq!(
        hits(r#"{"m":{"$regex":"^car"}}"#),
        ["2"],
        "an element matches"
    );
    assert_eq!(
        hits(r#"{"level":{"$regex":"3"}}"#),
        Vec::<String>::new(),
        "not a string"
    );
}

#[test]
fn and_or_nor_and_nesting() {
    // Swift puts every equalTo in $and.
    assert_eq!(hits(r#"{"$and":[{"tr":false},{"m":"alice"}]}"#), ["1", "2"]);
    assert_eq!(hits(r#"{"$or":[{"tr":true},{"sys":true}]}"#), ["3", "4"]);
    assert_eq!(hits(r#"{"$nor":[{"tr":true},{"sys":true}]}"#), ["1", "2"]);
    let nested = r#"{"$or":[{"$and":[{"m":"alice"},{"level":{"$gt":5}}]},{"name":"Lobby"}],"tr":{"$exists":true}}"#;
    assert_eq!(hits(nested), ["2", "3"]);
    assert_eq!(
        hits(r#"{"$or":[{"tr":true}],"$and":[{"sys":true}]}"#),
        Vec::<String>::new()
    );
}

#[test]
fn dotted_keys_and_the_attr_prefix() {
    assert_eq!(hits(r#"{"attr.color":"red"}"#), ["4"], "the attr column");
    assert_eq!(
        hits(r#"{"attr.topic":"movie"}"#),
        ["1"],
        "falls back to the top level"
    );
    assert_eq!(hits(r#"{"attr.level":{"$gte":10}}"#), ["2"]);
    assert_eq!(
        hits(r#"{"attr.m":"bob"}"#),
        Vec::<String>::new(),
        "never a reserved key"
    );
    assert_eq!(hits(r#"{"meta.a.b":1}"#), ["4"]);
    assert_eq!(
        hits(r#"{"meta.a.c":{"$exists":false}}"#),
        ["1", "2", "3", "4"]
    );
}

// ---- sort and page ----

#[test]
fn sort_descending_and_ascending_with_missing_last() {
    assert_eq!(sorted("-lm"), ["2", "4", "1", "3"]);
    assert_eq!(sorted("lm"), ["1", "4", "2", "3"]);
    assert_eq!(sorted(" -lm , name "), ["2", "4", "1", "3"]);
    assert_eq!(sorted("+name"), ["3", "1", "4", "2"]);
    assert_eq!(
        sorted("-attr.color"),
        ["4", "1", "2", "3"],
        "attr prefix; ties keep order"
    );
}

#[test]
fn sort_is_stable_and_multi_key_across_types() {
    assert_eq!(
        sorted("tr"),
        ["1", "2", "4", "3"],
        "ties keep the order given"
    );
    // Numbers before strings; 3 and 3.0 tie and the second key decides.
    assert_eq!(sorted("level,-objectId"), ["3", "1", "2", "4"]);
    assert_eq!(sorted("-createdAt"), ["4", "3", "2", "1"]);
}

#[test]
fn skip_and_limit_page_after_sorting() {
    let page = |skip, limit| {
        let query = Query::parse(None, Some("-lm"), Some(limit), Some(skip), None).expect("parses");
        ids(&query.apply(rows()))
    };
    assert_eq!(page(1, 2), ["4", "1"]);
    assert_eq!(page(3, 5), ["3"]);
    assert_eq!(page(9, 5), Vec::<String>::new());
    let many = |n: usize| {
        (0..n)
            .map(|i| json!({"objectId": i.to_string()}))
            .collect::<Vec<_>>()
    };
    let default = Query::parse(None, None, None, None, None).expect("parses");
    assert_eq!(default.apply(many(25)).len(), 10);
    let capped = Query::parse(None, None, Some(i32::MAX), None, None).expect("parses");
    assert_eq!(capped.apply(many(1500)).len(), 1000);
}

#[test]
fn compact_drops_members_after_filtering_on_them() {
    let query = Query::parse(Some(r#"{"m":"bob"}"#), None, None, None, Some(1)).expect("parses");
    let out = query.apply(rows());
    assert_eq!(ids(&out), ["1", "4"]);
    assert!(out.iter().all(|r| r.get("m").is_none()));
}

#[test]
fn run_filters_full_rows_and_fetches_only_the_pages_last_messages() {
    let mut a = info();
    a.id = ConvId([1; 12]);
    a.last_message_at = Some(T0 + 10);
    let mut b = info();
    b.id = ConvId([2; 12]);
    b.members = vec!["alice".into(), "carol".into()];
    b.last_message_at = Some(T0 + 20);
    let mut c = info();
    c.id = ConvId([3; 12]);
    c.last_message_at = Some(T0 + 30);
    // JS: getQuery().containsMembers(["bob"]).compact().withLastMessagesRefreshed().descending("lm").limit(1)
    let query = Query::parse(
        Some(r#"{"m":{"$all":["bob"]}}"#),
        Some("-lm"),
        Some(1),
        None,
        Some(3),
    )
    .expect("parses");
    let mut asked = Vec::new();
    let out = query
        .run(&[a, b, c], "alice", |i| {
            asked.push(i.id);
            Ok::<_, ()>(Some(Message::new(
                i.id,
                7,
                "bob",
                T0 + 30,
                Content::Text("last".into()),
            )))
        })
        .expect("runs");
    assert_eq!(asked, [ConvId([3; 12])], "only the page");
    assert_eq!(ids(&out), ["030303030303030303030303"]);
    assert!(out[0].get("m").is_none(), "compact");
    assert_eq!(
        (&out[0]["msg"], &out[0]["msg_from"]),
        (&json!("last"), &json!("bob"))
    );
    // Without flag 2 nothing is fetched; an error from the fetch stops the query.
    let plain = q(r#"{"m":"bob"}"#);
    let rows = plain
        .run(&[info()], "alice", |_| Err("unused"))
        .expect("no fetch");
    assert_eq!(rows[0]["m"], json!(["alice", "bob"]));
    let failing = Query::parse(None, None, None, None, Some(2)).expect("parses");
    assert_eq!(
        failing.run(&[info()], "alice", |_| Err("store")),
        Err("store")
    );
}

#[test]
fn a_row_answers_the_js_sdks_get_conversation() {
    // The real SDK's first query (design notes, §10 trace): flag 0, one objectId.
    let w = format!(r#"{{"objectId":"{ID}"}}"#);
    let query = Query::parse(Some(w.as_str()), None, None, None, Some(0)).expect("parses");
    assert_eq!(query.pinned_ids(), Some(vec![ID.to_string()]));
    let out = query.apply(vec![row(&info(), "bob", None, query.flag())]);
    assert_eq!(ids(&out), [ID]);
    let chat_rooms = q(r#"{"tr":true}"#).apply(vec![row(&info(), "bob", None, 0)]);
    assert!(chat_rooms.is_empty());
}

// ---- pins ----

#[test]
fn pinned_ids_from_equality_in_and_and_or() {
    let pins = |w: &str| q(w).pinned_ids();
    let v = |ids: &[&str]| Some(ids.iter().map(|s| s.to_string()).collect::<Vec<_>>());
    assert_eq!(pins(r#"{"objectId":"abc"}"#), v(&["abc"]));
    assert_eq!(pins(r#"{"objectId":{"$eq":"abc"}}"#), v(&["abc"]));
    assert_eq!(
        pins(r#"{"objectId":{"$in":["b","a","b"]}}"#),
        v(&["a", "b"])
    );
    assert_eq!(
        pins(r#"{"$and":[{"objectId":"x"}]}"#),
        v(&["x"]),
        "Swift's equalTo"
    );
    assert_eq!(
        pins(r#"{"objectId":{"$in":["a","b"]},"$and":[{"objectId":"b"}]}"#),
        v(&["b"])
    );
    assert_eq!(pins(r#"{"objectId":"a","tr":true}"#), v(&["a"]));
    assert_eq!(
        pins(r#"{"$or":[{"objectId":"a"},{"objectId":{"$in":["c"]}}]}"#),
        v(&["a", "c"])
    );
    assert_eq!(pins(r#"{"objectId":5}"#), v(&[]), "matches nothing");
    assert_eq!(pins(r#"{"objectId":{"$in":[]}}"#), v(&[]));
    for unpinned in [
        "{}",
        r#"{"m":"alice"}"#,
        r#"{"objectId":{"$ne":"x"}}"#,
        r#"{"objectId":{"$regex":"^a"}}"#,
        r#"{"$or":[{"objectId":"a"},{"tr":true}]}"#,
        r#"{"$nor":[{"objectId":"a"}]}"#,
    ] {
        assert_eq!(pins(unpinned), None, "{unpinned}");
    }
}

// ---- $regex subset ----

fn re(p: &str, opts: &str) -> Pattern {
    Pattern::new(p, opts).expect("compiles")
}

fn m(p: &str, t: &str) -> bool {
    re(p, "").is_match(t)
}

#[test]
fn regex_literals_classes_and_quantifiers() {
    assert!(m("", "anything") && m("", ""));
    assert!(m("b.d", "abcde") && !m("b.d", "bd"));
    assert!(m("^ab", "abc") && !m("^ab", "cab"));
    assert!(m("bc$", "abc") && !m("bc$", "bcd"));
    assert!(m("[a-c]x", "zbx") && !m("[a-c]x", "dx"));
    assert!(m("[^a-c]x", "dx") && !m("[^a-c]x", "ax"));
    assert!(m("[]a]", "]") && m("[a-]", "-") && m("[\\]]", "]"));
    assert!(m("^\\d+$", "2026") && !m("^\\d+$", "20a6"));
    assert!(m("^\\w+\\s\\W$", "ab_9 !") && m("\\D\\S", "a1b"));
    assert!(m("^[\\d.]+$", "1.5") && !m("^[\\d.]+$", "1,5"));
    assert!(m("cat|dog", "hotdog") && !m("^(cat|dog)$", "cats"));
    assert!(m("^(ab)+$", "ababab") && !m("^(ab)+$", "aba"));
    assert!(m("^(?:ab){2}$", "abab") && !m("^(?:ab){2}$", "ab"));
    let counted = |t| m("^a{2,3}$", t);
    assert_eq!(
        ["a", "aa", "aaa", "aaaa"].map(counted),
        [false, true, true, false]
    );
    assert!(m("^a{2,}$", "aaaaa") && !m("^a{2,}$", "a"));
    assert!(m("^ab?c*?$", "acc") && m("^x+?$", "xx"));
    assert!(m("\\.\\(\\)\\*", "a.()*") && !m("\\.", "a"));
    assert!(m("\\x41\\u00e9\\u{1F600}", "Aé😀"));
    assert!(m("\\t\\n", "a\t\nb"));
}

#[test]
fn regex_quoting_as_the_js_sdk_does() {
    assert!(m("\\Q.*\\E", "a.*b") && !m("\\Q.*\\E", "ab"));
    assert!(m("^\\Q(a)\\E$", "(a)"));
    assert!(m("\\Qopen", "reopen"), "an unclosed \\Q runs to the end");
    // ConversationQuery._quote("a\\Eb"): \Qa\E\\E\Qb\E.
    assert!(m("^\\Qa\\E\\\\E\\Qb\\E$", "a\\Eb"));
}

#[test]
fn regex_options_case_lines_dotall() {
    assert!(re("^[a-z]+$", "i").is_match("ABC") && !m("^[a-z]+$", "ABC"));
    assert!(re("ÉTÉ", "i").is_match("été"));
    assert!(re("^b$", "m").is_match("a\nb\nc") && !m("^b$", "a\nb\nc"));
    assert!(re("a.b", "s").is_match("a\nb") && !m("a.b", "a\nb"));
}

#[test]
fn regex_word_boundaries_and_unicode_classes() {
    assert!(m("\\bcat\\b", "a cat!") && !m("\\bcat\\b", "concat"));
    assert!(m("\\Bcat", "concat") && !m("\\Bcat", "cat"));
    // The Objective-C guide's "is Chinese" example, as JS would send its source.
    assert!(m("[\\u4e00-\\u9fa5]", "中文") && !m("[\\u4e00-\\u9fa5]", "abc"));
}

#[test]
fn regex_is_linear_on_patterns_that_make_backtrackers_explode() {
    let long = "a".repeat(20_000);
    assert!(!m("(a*)*b", &long));
    assert!(!m("^(a|a)*c$", &long));
    assert!(!m("(a|aa)+$x", &long));
    assert!(m("(a+)+$", &long));
    assert!(m("()*x", "x") && m("(a*)*", ""));
}

#[test]
fn regex_a_linear_engine_cannot_run_is_refused_with_a_reason() {
    // Malformed, or needing backtracking (backreferences, lookaround).
    for p in [
        "(a", "a)", "[a", "*a", "(a)\\1", "(?=a)", "(?<!a)b", "[z-a]", "a{5,2}", "\\xZZ",
    ] {
        let e = Pattern::new(p, "").expect_err(p);
        assert!(!e.is_empty() && !e.contains('\n'), "{p}: {e}");
    }
    assert!(
        Pattern::new("(a{1000}){1000}", "")
            .expect_err("large")
            .contains("too large")
    );
    assert!(
        Pattern::new(&"a".repeat(1001), "")
            .expect_err("long")
            .contains("over 1000")
    );
    assert!(Pattern::new("a", "g").expect_err("g").contains("'g'"));
    // Unicode classes, which a hand-written subset had to refuse, work.
    assert!(m("^\\p{Han}+$", "中文") && !m("^\\p{Han}+$", "abc"));
}

#[test]
fn iso_dates_parse_as_leanclouds_clients_write_them() {
    assert_eq!(parse_iso("2015-07-30T14:37:42.584Z"), Some(T0 as i64));
    assert_eq!(parse_iso("2015-07-30T14:37:42Z"), Some(T0 as i64 - 584));
    assert_eq!(parse_iso("2015-07-30T14:37:42.5Z"), Some(T0 as i64 - 84));
    assert_eq!(parse_iso("2015-07-30T16:37:42.584+02:00"), Some(T0 as i64));
    assert_eq!(parse_iso("1969-12-31T23:59:59.999Z"), Some(-1));
    assert_eq!(parse_iso("2000-02-29T00:00:00.000Z"), Some(951_782_400_000));
    for bad in [
        "2001-02-29T00:00:00Z",
        "2015-13-01T00:00:00Z",
        "2015-07-30 14:37:42Z",
        "2015-07-30T24:00:00Z",
        "2015-07-30T14:37:42.Z",
        "2015-07-30T14:37:42",
        "2015-07-30T14:37:42+0200",
        "2015-07-30",
        "",
    ] {
        assert_eq!(parse_iso(bad), None, "{bad}");
    }
}
