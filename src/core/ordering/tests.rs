//! `plan` on a virtual clock: facts in, entries and answers out, no store.

use super::*;
use crate::core::conversation::test_record;
use crate::protocol::ConvKind;

fn conv(n: u8, members: &[&str], last_seq: u64, last_ts: u64) -> Arc<Conv> {
    let rec = test_record(ConvId([n; 12]), ConvKind::Normal, members);
    Arc::new(Conv::new(rec, last_seq, last_ts))
}

fn draft(c: &Arc<Conv>, from: &str, text: &str, token: Option<&str>) -> Draft {
    let mut send = SendMessage::text(c.id, text);
    send.token = token.map(str::to_owned);
    Draft {
        conv: c.clone(),
        send,
        from: from.into(),
        origin_device: "dev".into(),
        origin_conn: 7,
        from_ip: "127.0.0.1".into(),
        to_peers: None,
        inbound: false,
    }
}

fn patch_of(c: &Arc<Conv>, seq: u64, by: &str, change: Change) -> PatchDraft {
    PatchDraft {
        conv: c.clone(),
        seq,
        change,
        by: by.into(),
        sender_only: true,
        origin_conn: 9,
        reason: None,
        to_peers: None,
    }
}

fn edit(text: &str) -> Change {
    Change::Edit {
        content: Content::Text(text.into()),
        mention_list: Vec::new(),
        mention_all: false,
    }
}

/// Appends with no token facts (none stored).
fn appends(drafts: &mut [Draft], now: u64) -> Plan {
    plan(
        drafts.iter_mut().map(|d| Step::Append {
            draft: d,
            stored: Some(Ok(None)),
        }),
        None,
        now,
    )
}

fn stored_row(c: &Arc<Conv>, seq: u64, from: &str, text: &str) -> LogEntry {
    let msg = Message::new(c.id, seq, from, 50, Content::Text(text.into()));
    LogEntry::new(msg, "dev", "ip")
}

fn ok() -> Result<(), ErrorBody> {
    Ok(())
}

#[test]
fn seqs_follow_each_conversation_without_gaps() {
    let (a, b) = (conv(1, &["x", "y"], 10, 100), conv(2, &["x", "y"], 0, 0));
    let mut ds = vec![
        draft(&a, "x", "1", None),
        draft(&b, "x", "2", None),
        draft(&a, "y", "3", None),
        draft(&a, "x", "4", None),
        draft(&b, "y", "5", None),
    ];
    let p = appends(&mut ds, 200);
    let seqs: Vec<(ConvId, u64)> = p.entries.iter().map(|e| (e.msg.conv, e.msg.seq)).collect();
    assert_eq!(
        seqs,
        [(a.id, 11), (b.id, 1), (a.id, 12), (a.id, 13), (b.id, 2)]
    );
    assert_eq!(p.heads[&a.id].1, 13);
    assert_eq!(p.heads[&b.id].1, 2);
    assert_eq!(
        p.outcomes,
        (0..5).map(Outcome::New).collect::<Vec<_>>(),
        "one outcome per step, in step order"
    );
    assert_eq!(
        p.notices.iter().map(|n| n.entry).collect::<Vec<_>>(),
        [0, 1, 2, 3, 4]
    );
    assert!(p.notices.iter().all(|n| n.origin_conn == 7));
    // Content moved into the entry, nothing left behind to clone.
    assert_eq!(p.entries[3].msg.content, Content::Text("4".into()));
    assert_eq!(p.entries[3].msg.msg_id, crate::protocol::msg_id(a.id, 13));
    // The conversation itself moves only once the shell says it is durable.
    assert_eq!(a.last_seq(), 10);
}

#[test]
fn timestamps_never_go_backwards_when_the_clock_does() {
    let c = conv(1, &["x", "y"], 3, 1_000);
    let mut ds = vec![draft(&c, "x", "a", None), draft(&c, "x", "b", None)];
    // The clock went back below the last stored message's time.
    let p = appends(&mut ds, 400);
    let ts: Vec<u64> = p.entries.iter().map(|e| e.msg.timestamp).collect();
    assert_eq!(ts, [1_000, 1_000]);
    let (_, seq, last) = p.heads[&c.id];
    c.advance(seq, last);

    // Later batch: the clock is ahead again, then behind again.
    let mut ds = vec![draft(&c, "x", "c", None)];
    let p = appends(&mut ds, 1_500);
    assert_eq!(p.entries[0].msg.timestamp, 1_500);
    let (_, seq, last) = p.heads[&c.id];
    c.advance(seq, last);
    let mut ds = vec![draft(&c, "x", "d", None)];
    let p = appends(&mut ds, 1_200);
    assert_eq!(p.entries[0].msg.timestamp, 1_500);
    assert_eq!(p.entries[0].msg.seq, 7);
}

#[test]
fn a_token_twice_in_one_batch_is_stored_once() {
    let c = conv(1, &["x", "y"], 0, 0);
    let mut ds = vec![
        draft(&c, "x", "first", Some("t1")),
        draft(&c, "x", "again", Some("t1")),
        // Same token from another client is another message.
        draft(&c, "y", "other", Some("t1")),
    ];
    let mut p = appends(&mut ds, 10);
    assert_eq!(
        p.outcomes,
        [Outcome::New(0), Outcome::DuplicateOf(0), Outcome::New(1)]
    );
    assert_eq!(p.entries.len(), 2);
    assert_eq!(p.tokens.len(), 2);
    assert_eq!(p.tokens[&("x".to_owned(), "t1".to_owned())], 0);
    let outcomes = std::mem::take(&mut p.outcomes);
    let answers: Vec<_> = outcomes
        .into_iter()
        .map(|o| p.answer(&ok(), Some(o)).expect("answered"))
        .collect();
    assert_eq!(answers[0].sent, answers[1].sent);
    assert!(!answers[0].duplicate && answers[1].duplicate);
    assert_eq!(answers[2].sent.seq, 2);
}

#[test]
fn a_token_already_stored_answers_the_first_answer() {
    let c = conv(1, &["x", "y"], 4, 40);
    let first = SentRecord {
        conv: c.id,
        msg_id: crate::protocol::msg_id(c.id, 2),
        seq: 2,
        timestamp: 20,
    };
    let mut d = draft(&c, "x", "resend", Some("t"));
    let p = plan(
        [Step::Append {
            draft: &mut d,
            stored: Some(Ok(Some(first.clone()))),
        }],
        None,
        50,
    );
    assert_eq!(p.outcomes, [Outcome::Duplicate(first.clone())]);
    assert!(p.entries.is_empty() && p.tokens.is_empty() && p.heads.is_empty());
    assert!(p.notices.is_empty(), "nothing new to fan out");
    let answer = p
        .answer(&ok(), Some(Outcome::Duplicate(first.clone())))
        .expect("answered");
    assert_eq!(
        answer,
        Committed {
            sent: first,
            duplicate: true
        }
    );
}

#[test]
fn a_failed_token_read_fails_only_that_send() {
    let c = conv(1, &["x", "y"], 0, 0);
    let broken = ErrorBody::new(ErrorCode::InternalError, "storage failure");
    let (mut d1, mut d2) = (
        draft(&c, "x", "a", Some("t")),
        draft(&c, "x", "b", Some("u")),
    );
    let p = plan(
        [
            Step::Append {
                draft: &mut d1,
                stored: Some(Err(broken.clone())),
            },
            Step::Append {
                draft: &mut d2,
                stored: None,
            },
        ],
        None,
        5,
    );
    assert_eq!(p.outcomes, [Outcome::Failed(broken), Outcome::New(0)]);
    assert_eq!(p.entries[0].msg.seq, 1, "no seq spent on the failed one");
}

#[test]
fn a_patch_of_a_message_appended_in_the_same_batch_rewrites_the_batched_entry() {
    let c = conv(1, &["x", "y"], 0, 0);
    let mut d = draft(&c, "x", "typo", None);
    let fix = patch_of(&c, 1, "x", edit("fixed"));
    let p = plan(
        [
            Step::Append {
                draft: &mut d,
                stored: None,
            },
            // The store has no such row yet: the batch's copy is used.
            Step::Patch {
                draft: &fix,
                row: Some(Ok(None)),
            },
        ],
        None,
        70,
    );
    assert_eq!(p.outcomes, [Outcome::New(0), Outcome::Patched(0)]);
    assert_eq!(p.entries.len(), 1, "one row, written once");
    assert_eq!(p.entries[0].msg.content, Content::Text("fixed".into()));
    assert_eq!(p.entries[0].msg.updated_at, Some(70));
    assert_eq!(p.entries[0].patched_by.as_deref(), Some("x"));
    assert!(p.stale.is_empty(), "no older patch key to replace");
}

#[test]
fn a_patch_of_a_stored_row_replaces_its_patch_key_and_moves_it_forward() {
    let c = conv(1, &["x", "y"], 5, 100);
    let mut row = stored_row(&c, 2, "x", "hello");
    row.msg.updated_at = Some(900);
    let recall = patch_of(&c, 2, "x", Change::Recall);
    let delete = patch_of(&c, 2, "y", Change::Delete);
    let p = plan(
        [
            Step::Patch {
                draft: &recall,
                row: Some(Ok(Some(row.clone()))),
            },
            // A second patch of the same row in the batch sees the first.
            Step::Patch {
                draft: &PatchDraft {
                    sender_only: false,
                    ..delete
                },
                row: Some(Ok(Some(row))),
            },
        ],
        None,
        // The clock is behind the last edit.
        500,
    );
    assert_eq!(p.outcomes, [Outcome::Patched(0), Outcome::Patched(0)]);
    assert_eq!(p.stale, [(900, c.id, 2)]);
    let e = &p.entries[0];
    assert!(e.deleted && e.msg.recalled);
    assert_eq!(e.msg.content, Content::Text(String::new()));
    assert_eq!(
        e.msg.updated_at,
        Some(902),
        "strictly increasing per message"
    );
    assert!(p.heads.is_empty() && p.notices.is_empty());
}

#[test]
fn patch_rules_refuse_what_changed_while_it_waited() {
    let c = conv(1, &["x", "y"], 5, 100);
    let mut recalled = stored_row(&c, 1, "x", "r");
    recalled.msg.recalled = true;
    let mut gone = stored_row(&c, 2, "x", "g");
    gone.deleted = true;
    let mine = stored_row(&c, 3, "x", "m");
    let code = |p: &Plan, i: usize| match &p.outcomes[i] {
        Outcome::Failed(e) => e.code,
        o => panic!("expected a refusal, got {o:?}"),
    };
    let (edit1, edit2, edit3, edit4) = (
        patch_of(&c, 1, "x", edit("e")),
        patch_of(&c, 2, "x", edit("e")),
        patch_of(&c, 3, "y", edit("e")),
        patch_of(&c, 4, "x", edit("e")),
    );
    let p = plan(
        [
            Step::Patch {
                draft: &edit1,
                row: Some(Ok(Some(recalled.clone()))),
            },
            Step::Patch {
                draft: &edit2,
                row: Some(Ok(Some(gone))),
            },
            Step::Patch {
                draft: &edit3,
                row: Some(Ok(Some(mine))),
            },
            Step::Patch {
                draft: &edit4,
                row: Some(Ok(None)),
            },
        ],
        None,
        1,
    );
    let not_found = ErrorCode::MessageNotFound as u16;
    assert_eq!(code(&p, 0), not_found, "recalled");
    assert_eq!(code(&p, 1), not_found, "deleted");
    assert_eq!(code(&p, 2), ErrorCode::OwnershipRequired as u16);
    assert_eq!(code(&p, 3), not_found, "no such message");
    // A recalled message may still be deleted.
    let del = patch_of(&c, 1, "x", Change::Delete);
    let p = plan(
        [Step::Patch {
            draft: &del,
            row: Some(Ok(Some(recalled))),
        }],
        None,
        1,
    );
    assert_eq!(p.outcomes, [Outcome::Patched(0)]);
}

#[test]
fn a_deleted_conversation_is_refused_before_any_fact_is_used() {
    let c = conv(1, &["x", "y"], 5, 100);
    c.mark_deleted();
    let mut d = draft(&c, "x", "late", Some("t"));
    let fix = patch_of(&c, 2, "x", edit("e"));
    let p = plan(
        [
            Step::Append {
                draft: &mut d,
                stored: None,
            },
            Step::Patch {
                draft: &fix,
                row: None,
            },
        ],
        None,
        1,
    );
    let conv_gone = ErrorCode::ConvNotFound as u16;
    assert!(
        p.outcomes
            .iter()
            .all(|o| matches!(o, Outcome::Failed(e) if e.code == conv_gone))
    );
    assert!(p.entries.is_empty() && p.heads.is_empty() && p.tokens.is_empty());
}

#[test]
fn a_refusing_store_fails_every_append_and_patch_but_not_barriers() {
    let c = conv(1, &["x", "y"], 0, 0);
    let refused = ErrorBody::new(ErrorCode::InternalError, "disk full");
    let mut d = draft(&c, "x", "a", None);
    let fix = patch_of(&c, 1, "x", Change::Recall);
    let p = plan(
        [
            Step::Append {
                draft: &mut d,
                stored: None,
            },
            Step::Other,
            Step::Patch {
                draft: &fix,
                row: None,
            },
        ],
        Some(&refused),
        1,
    );
    assert_eq!(
        p.outcomes,
        [
            Outcome::Failed(refused.clone()),
            Outcome::Failed(refused.clone())
        ]
    );
    assert!(p.entries.is_empty());
}

#[test]
fn the_receipt_flag_needs_the_ask_and_two_members() {
    let two = conv(1, &["x", "y"], 0, 0);
    let three = conv(2, &["x", "y", "z"], 0, 0);
    let mut ds = vec![
        draft(&two, "x", "a", None),
        draft(&two, "x", "b", None),
        draft(&three, "x", "c", None),
    ];
    ds[0].send.receipt = true;
    ds[2].send.receipt = true;
    let p = appends(&mut ds, 1);
    let flags: Vec<bool> = p.entries.iter().map(|e| e.msg.receipt).collect();
    assert_eq!(flags, [true, false, false]);
}

#[test]
fn answers_wait_for_the_write() {
    let c = conv(1, &["x", "y"], 0, 0);
    let mut ds = vec![draft(&c, "x", "a", Some("t"))];
    let p = appends(&mut ds, 1);
    let failed = Err(ErrorBody::new(ErrorCode::ServerShutdown, "unknown"));
    assert_eq!(p.answer(&failed, Some(Outcome::New(0))).map(|_| ()), failed);
    assert_eq!(
        p.answer(&failed, Some(Outcome::DuplicateOf(0))).map(|_| ()),
        Err(ErrorBody::new(ErrorCode::ServerShutdown, "unknown"))
    );
    assert_eq!(p.answer(&ok(), None), Err(lost_outcome()));
    assert_eq!(
        p.answer(&ok(), Some(Outcome::New(0))),
        Ok(Committed {
            sent: sent_of(&p.entries[0]),
            duplicate: false
        })
    );
}
