use super::*;

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path(), 1 << 20, false).unwrap();
    (dir, s)
}

fn ios(token: &str) -> InstallationChanges {
    InstallationChanges {
        device_type: Some("ios".into()),
        device_token: Some(token.into()),
        apns_team_id: Some("TEAM".into()),
        ..Default::default()
    }
}

fn saved(o: SaveOutcome) -> Saved {
    match o {
        SaveOutcome::Saved(s) => s,
        other => panic!("not saved: {other:?}"),
    }
}

const UPSERT: Lookup<'static> = Lookup::Upsert { object_id: None };

#[test]
fn upsert_by_object_id_then_token_then_installation_id() {
    let (_d, s) = store();
    let a = saved(s.installation_save(UPSERT, &ios("aa"), "id1", 10).unwrap());
    assert!(a.created);
    // Same token, no objectId: the same record.
    let b = saved(s.installation_save(UPSERT, &ios("aa"), "id2", 20).unwrap());
    assert_eq!(
        (b.object_id.as_str(), b.created, b.created_at),
        ("id1", false, 10)
    );
    // By objectId, with a new token: the old token's index goes.
    let by_id = Lookup::Upsert {
        object_id: Some("id1"),
    };
    saved(s.installation_save(by_id, &ios("bb"), "id3", 30).unwrap());
    assert_eq!(s.installation_by_token("aa").unwrap(), None);
    assert_eq!(
        s.installation_by_token("bb").unwrap().unwrap().object_id,
        "id1"
    );
    // Android: by installationId.
    let android = InstallationChanges {
        device_type: Some("android".into()),
        installation_id: Some("iid".into()),
        ..Default::default()
    };
    let c = saved(s.installation_save(UPSERT, &android, "id4", 40).unwrap());
    let fcm = InstallationChanges {
        installation_id: Some("iid".into()),
        vendor: Some("fcm".into()),
        registration_id: Some("fcmtok".into()),
        ..Default::default()
    };
    let d = saved(s.installation_save(UPSERT, &fcm, "id5", 50).unwrap());
    assert_eq!(c.object_id, d.object_id);
    let rec = s.installation_by_token("fcmtok").unwrap().unwrap();
    assert_eq!(
        (rec.device_type.as_str(), rec.vendor.as_deref()),
        ("android", Some("fcm"))
    );
    // A new record needs deviceType; PUT needs an existing record.
    let bare = InstallationChanges {
        device_token: Some("cc".into()),
        ..Default::default()
    };
    assert_eq!(
        s.installation_save(UPSERT, &bare, "x", 1).unwrap(),
        SaveOutcome::NeedsDeviceType
    );
    assert_eq!(
        s.installation_save(Lookup::Exactly("nope"), &bare, "x", 1)
            .unwrap(),
        SaveOutcome::NotFound
    );
}

#[test]
fn a_token_taken_by_a_new_record_removes_the_old_one() {
    let (_d, s) = store();
    saved(s.installation_save(UPSERT, &ios("aa"), "old", 1).unwrap());
    s.installation_bind(&DeviceRef::Token("aa".into()), "alice", 2)
        .unwrap();
    // A reinstall: new installationId and objectId, same APNs token, saved by id.
    let mut c = ios("aa");
    c.installation_id = Some("iid2".into());
    let by_unknown_id = Lookup::Upsert {
        object_id: Some("zzz"),
    };
    let n = saved(s.installation_save(by_unknown_id, &c, "new", 3).unwrap());
    // Found by token: the same row, not a second one.
    assert_eq!(n.object_id, "old");
    // Now an installationId that another record holds moves to this one.
    let other = saved(s.installation_save(UPSERT, &ios("bb"), "other", 4).unwrap());
    let mut steal = ios("bb");
    steal.installation_id = Some("iid2".into());
    let by_other = Lookup::Upsert {
        object_id: Some(&other.object_id),
    };
    saved(s.installation_save(by_other, &steal, "n", 5).unwrap());
    assert_eq!(s.installation("old").unwrap(), None);
    assert!(s.installations_of_client("alice").unwrap().is_empty());
    assert_eq!(
        s.installation_by_installation_id("iid2")
            .unwrap()
            .unwrap()
            .object_id,
        "other"
    );
    assert_eq!(s.installation_by_token("aa").unwrap(), None);
}

#[test]
fn channels_ops_badge_bind_delete_and_sweep() {
    let (_d, s) = store();
    let id = saved(s.installation_save(UPSERT, &ios("aa"), "i1", 1).unwrap()).object_id;
    let ch = |op| InstallationChanges {
        channels: Some(op),
        ..Default::default()
    };
    let v = |x: &[&str]| x.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let put = |c| {
        saved(
            s.installation_save(Lookup::Exactly(&id), &c, "", 2)
                .unwrap(),
        )
    };
    put(ch(ChannelsChange::Set(v(&["a"]))));
    put(ch(ChannelsChange::AddUnique(v(&["a", "b"]))));
    put(ch(ChannelsChange::Add(v(&["b"]))));
    assert_eq!(
        s.installation(&id).unwrap().unwrap().channels,
        v(&["a", "b", "b"])
    );
    put(ch(ChannelsChange::Remove(v(&["b"]))));
    assert_eq!(s.installation(&id).unwrap().unwrap().channels, v(&["a"]));

    assert_eq!(s.installation_badge_increment(&id, 1).unwrap(), Some(1));
    assert_eq!(s.installation_badge_increment(&id, 1).unwrap(), Some(2));
    assert_eq!(s.installation_badge_increment("nope", 1).unwrap(), None);

    let dev = DeviceRef::Token("aa".into());
    assert!(s.installation_bind(&dev, "alice", 3).unwrap());
    assert!(s.installation_bind(&dev, "alice", 3).unwrap());
    assert!(
        !s.installation_bind(&DeviceRef::Token("zz".into()), "alice", 3)
            .unwrap()
    );
    let rec = s.installation(&id).unwrap().unwrap();
    assert_eq!(
        (rec.channels, rec.clients),
        (v(&["a", "alice"]), v(&["alice"]))
    );
    assert_eq!(s.installations_of_client("alice").unwrap().len(), 1);
    assert!(s.installations_of_client("alic").unwrap().is_empty());
    assert!(s.installation_unbind(&dev, "alice", 4).unwrap());
    assert!(s.installations_of_client("alice").unwrap().is_empty());
    assert_eq!(s.installation(&id).unwrap().unwrap().channels, v(&["a"]));

    // The token index deletes; an APNs 410 older than the last save does not.
    assert!(!s.installation_delete_token("aa", Some(3)).unwrap());
    assert!(s.installation_delete_token("aa", Some(5)).unwrap());
    assert_eq!(s.installation(&id).unwrap(), None);
    assert!(!s.installation_delete_token("aa", None).unwrap());

    saved(
        s.installation_save(UPSERT, &ios("old"), "o", 1_000)
            .unwrap(),
    );
    saved(
        s.installation_save(UPSERT, &ios("new"), "n", 9_000)
            .unwrap(),
    );
    assert_eq!(s.installations_sweep(10_000, 5_000).unwrap(), 1);
    let left: Vec<String> = s
        .installations(None, 10)
        .unwrap()
        .into_iter()
        .map(|r| r.object_id)
        .collect();
    assert_eq!(left, v(&["n"]));
    assert_eq!(s.installation_by_token("old").unwrap(), None);
    assert!(s.installation_delete("n").unwrap());
    assert!(s.installations(None, 10).unwrap().is_empty());
}
