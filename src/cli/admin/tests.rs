use super::*;
use clap::Parser;

#[derive(Debug, Parser)]
struct TestCli {
    #[command(flatten)]
    args: AdminArgs,
}

#[test]
fn commands_parse() {
    use clap::CommandFactory;
    TestCli::command().debug_assert();
    let c = TestCli::try_parse_from([
        "t", "service", "send", "abc", "--from", "Bot", "--to", "a,b", "--to", "c", "hi",
    ])
    .unwrap();
    match c.args.cmd {
        AdminCommand::Service(ServiceCommand::Send { to, text, .. }) => {
            assert_eq!(to, ["a", "b", "c"]);
            assert_eq!(text, "hi");
        }
        other => panic!("{other:?}"),
    }
    let c = TestCli::try_parse_from([
        "t",
        "broadcast",
        "send",
        "--conv",
        "c",
        "--from",
        "Bot",
        "--ttl",
        "60",
        "hi",
    ])
    .unwrap();
    match c.args.cmd {
        AdminCommand::Broadcast(BroadcastCommand::Send {
            ttl, subscribers, ..
        }) => {
            assert_eq!(ttl, Some(Duration::from_secs(60)));
            assert!(!subscribers);
        }
        other => panic!("{other:?}"),
    }
    let c = TestCli::try_parse_from([
        "t",
        "broadcast",
        "send",
        "--conv",
        "c",
        "--from",
        "Bot",
        "--ttl",
        "1h",
        "hi",
    ])
    .unwrap();
    assert!(matches!(
        c.args.cmd,
        AdminCommand::Broadcast(BroadcastCommand::Send { ttl: Some(t), .. })
            if t == Duration::from_secs(3600)
    ));
    // Message ids are URL-safe base64 and may start with '-'.
    let c = TestCli::try_parse_from(["t", "broadcast", "delete", "-Kx"]).unwrap();
    assert!(matches!(
        c.args.cmd,
        AdminCommand::Broadcast(BroadcastCommand::Delete { msg_id }) if msg_id == "-Kx"
    ));
    assert!(
        TestCli::try_parse_from([
            "t",
            "broadcast",
            "send",
            "--conv",
            "c",
            "--from",
            "B",
            "--subscribers",
            "--transient",
            "hi",
        ])
        .is_err(),
        "a subscribers' broadcast is never transient"
    );
    assert!(TestCli::try_parse_from(["t", "sys-messages", "--newest-first"]).is_ok());
    let c = TestCli::try_parse_from(["t", "--data-dir", "/d", "history", "--conv", "x"]).unwrap();
    assert_eq!(c.args.conn.data_dir.as_deref(), Some(Path::new("/d")));
    assert!(TestCli::try_parse_from(["t", "history"]).is_err());
    assert!(TestCli::try_parse_from(["t", "history", "--service", "x"]).is_err());
    assert!(TestCli::try_parse_from(["t", "service", "send", "x", "--from", "b", "hi"]).is_err());
}

#[test]
fn segments_and_queries_are_encoded() {
    assert_eq!(seg("Tom"), "Tom");
    assert_eq!(seg("a b/c?"), "a%20b%2Fc%3F");
    assert_eq!(seg("é"), "%C3%A9");
    assert_eq!(query(&[("a", None)]), "");
    assert_eq!(
        query(&[
            ("limit", Some("2".into())),
            ("x", None),
            ("client_id", Some("a&b".into()))
        ]),
        "?limit=2&client_id=a%26b"
    );
}

#[test]
fn address_and_credentials_come_from_the_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::default();
    let conn = Conn {
        url: None,
        app_id: None,
        master_key: None,
        data_dir: Some(dir.path().to_path_buf()),
    };
    assert_eq!(
        admin_addr(dir.path(), &config).unwrap(),
        config.admin.listen
    );
    assert!(credentials(&conn, &config, dir.path()).is_err());
    std::fs::write(dir.path().join(ADDR_FILE), "0.0.0.0:9451\n").unwrap();
    assert_eq!(
        admin_addr(dir.path(), &config).unwrap(),
        "127.0.0.1:9451".parse::<SocketAddr>().unwrap()
    );
    let creds = Credentials::load_or_create(dir.path(), None, None).unwrap();
    assert_eq!(
        credentials(&conn, &config, dir.path()).unwrap(),
        (creds.app_id, creds.master_key)
    );
}
