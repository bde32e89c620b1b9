use super::*;
use crate::core::conversation::test_record;
use crate::protocol::ConvId;

fn v(s: &[&str]) -> Vec<String> {
    s.iter().map(|x| x.to_string()).collect()
}

/// Owner "a", manager "m", members "b", "c".
fn state(kind: ConvKind) -> ConvState {
    let mut rec = test_record(ConvId([9; 12]), kind, &["a", "b", "c", "m"]);
    rec.managers = v(&["m"]);
    ConvState {
        rec,
        room: ["a", "b", "m"].iter().map(|x| x.to_string()).collect(),
        moderation: Moderation::default(),
    }
}

fn failed_for(v: &Verdict, client: &str) -> Option<u16> {
    v.failed
        .iter()
        .find(|f| f.clients.iter().any(|c| c == client))
        .map(|f| f.error.code)
}

#[test]
fn roles_map_onto_creator_and_managers() {
    let st = state(ConvKind::Normal);
    assert_eq!(role_of(&st.rec, "a"), MemberRole::Owner);
    assert_eq!(role_of(&st.rec, "m"), MemberRole::Manager);
    assert_eq!(role_of(&st.rec, "b"), MemberRole::Member);
    let roles = member_roles(&st);
    let flat: Vec<(&str, MemberRole)> = roles.iter().map(|i| (i.client.as_str(), i.role)).collect();
    assert_eq!(
        flat,
        [
            ("a", MemberRole::Owner),
            ("m", MemberRole::Manager),
            ("b", MemberRole::Member),
            ("c", MemberRole::Member),
        ]
    );
}

#[test]
fn a_plain_member_may_not_moderate_at_all() {
    let st = state(ConvKind::Normal);
    let e = judge(&st, "b", List::Shutup, &v(&["c"])).unwrap_err();
    assert_eq!(e.code, ErrorCode::NeedOwner as u16);
    let e = judge(&st, "stranger", List::Blocked, &v(&["c"])).unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidMessagingTarget as u16);
}

#[test]
fn the_owner_may_target_managers_and_members_but_not_itself() {
    let st = state(ConvKind::Normal);
    let verdict = judge(&st, "a", List::Shutup, &v(&["m", "b", "a", "b", "x"])).unwrap();
    assert_eq!(verdict.allowed, v(&["m", "b"]));
    assert_eq!(
        failed_for(&verdict, "a"),
        Some(ErrorCode::ConvNotAllowed as u16)
    );
    // Muting needs a member; "x" is not one.
    assert_eq!(
        failed_for(&verdict, "x"),
        Some(ErrorCode::InvalidMessagingTarget as u16)
    );
}

#[test]
fn a_manager_may_target_plain_members_only() {
    let st = state(ConvKind::Normal);
    let verdict = judge(&st, "m", List::Blocked, &v(&["a", "b", "outsider", "m"])).unwrap();
    // Blocking an outsider is what a blacklist is for.
    assert_eq!(verdict.allowed, v(&["b", "outsider"]));
    assert_eq!(
        failed_for(&verdict, "a"),
        Some(ErrorCode::ConvNotAllowed as u16)
    );
    assert_eq!(
        failed_for(&verdict, "m"),
        Some(ErrorCode::ConvNotAllowed as u16)
    );
    let mut st2 = state(ConvKind::Normal);
    st2.rec.managers.push("b".into());
    let verdict = judge(&st2, "m", List::Shutup, &v(&["b", "c"])).unwrap();
    assert_eq!(verdict.allowed, v(&["c"]));
    assert_eq!(failed_for(&verdict, "b"), Some(ErrorCode::NeedOwner as u16));
}

#[test]
fn failures_with_one_reason_share_one_entry() {
    let st = state(ConvKind::Normal);
    let verdict = judge(&st, "a", List::Shutup, &v(&["x", "y", "b"])).unwrap();
    assert_eq!(verdict.allowed, v(&["b"]));
    assert_eq!(verdict.failed.len(), 1);
    assert_eq!(verdict.failed[0].clients, v(&["x", "y"]));
}

#[test]
fn chat_rooms_may_mute_whoever_is_not_in_the_room_now() {
    let st = state(ConvKind::ChatRoom);
    let verdict = judge(&st, "a", List::Shutup, &v(&["c", "z"])).unwrap();
    assert_eq!(verdict.allowed, v(&["c", "z"]));
}

#[test]
fn system_conversations_have_no_moderation() {
    let st = state(ConvKind::System);
    assert!(judge(&st, "a", List::Blocked, &v(&["b"])).is_err());
}

#[test]
fn apply_reports_only_changes_and_refusals_follow_the_lists() {
    let mut m = Moderation::default();
    assert_eq!(
        apply(&mut m, List::Shutup, &v(&["b", "c"]), true),
        v(&["b", "c"])
    );
    assert_eq!(
        apply(&mut m, List::Shutup, &v(&["b"]), true),
        Vec::<String>::new()
    );
    assert!(refuse_shutup(&m, "b").is_err_and(|e| e.code == 4308));
    assert!(refuse_shutup(&m, "d").is_ok());
    assert_eq!(
        apply(&mut m, List::Shutup, &v(&["b", "x"]), false),
        v(&["b"])
    );
    assert!(refuse_shutup(&m, "b").is_ok());
    apply(&mut m, List::Blocked, &v(&["z"]), true);
    assert!(refuse_blocked(&m, &v(&["y", "z"])).is_err_and(|e| e.code == 4315));
    assert!(refuse_blocked(&m, &v(&["y"])).is_ok());
    assert_eq!(m.which(List::Blocked, &v(&["z", "y", "z"])), v(&["z"]));
}

#[test]
fn pages_walk_the_list_in_order_without_gaps() {
    let mut m = Moderation::default();
    let all: Vec<String> = (0..25).map(|i| format!("c{i:02}")).collect();
    apply(&mut m, List::Blocked, &all, true);
    let (p1, n1) = m.page(List::Blocked, None, 0);
    assert_eq!(p1, all[..10]);
    assert_eq!(n1.as_deref(), Some("c09"));
    let (p2, n2) = m.page(List::Blocked, n1.as_deref(), 10);
    assert_eq!(p2, all[10..20]);
    let (p3, n3) = m.page(List::Blocked, n2.as_deref(), 10);
    assert_eq!(p3, all[20..]);
    assert_eq!(n3, None);
    // A limit over the cap is the cap; an exact last page says no more.
    let (big, none) = m.page(List::Blocked, None, 1000);
    assert_eq!(big.len(), 25);
    assert_eq!(none, None);
    let (empty, none) = m.page(List::Shutup, None, 5);
    assert!(empty.is_empty() && none.is_none());
}

#[test]
fn role_updates_never_make_or_unmake_an_owner() {
    let st = state(ConvKind::Normal);
    let e = check_role_update(&st.rec, "b", MemberRole::Owner).unwrap_err();
    assert_eq!(e.code, 5130);
    let e = check_role_update(&st.rec, "a", MemberRole::Member).unwrap_err();
    assert_eq!(e.code, ErrorCode::ConvNotAllowed as u16);
    assert!(check_role_update(&st.rec, "b", MemberRole::Manager).is_ok());
}
