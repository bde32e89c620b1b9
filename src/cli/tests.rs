use super::*;
use clap::Parser;

#[derive(Debug, Parser)]
struct TestCli {
    #[command(subcommand)]
    cmd: ClientCommand,
}

#[test]
fn commands_parse() {
    use clap::CommandFactory;
    TestCli::command().debug_assert();
    let c = TestCli::try_parse_from(["t", "send", "--as", "Tom", "--to", "Jerry", "hi"]).unwrap();
    match c.cmd {
        ClientCommand::Send(a) => {
            assert_eq!(a.common.client_id, "Tom");
            assert_eq!(a.target.to.as_deref(), Some("Jerry"));
            assert_eq!(a.text, "hi");
        }
        other => panic!("{other:?}"),
    }
    assert!(TestCli::try_parse_from(["t", "send", "--as", "Tom", "hi"]).is_err());
    assert!(
        TestCli::try_parse_from([
            "t",
            "send",
            "--as",
            "Tom",
            "--to",
            "J",
            "--conv",
            "abababababababababababab",
            "hi"
        ])
        .is_err()
    );
    let c = TestCli::try_parse_from([
        "t", "listen", "--as", "Jerry", "--sync", "pull", "--count", "2",
    ])
    .unwrap();
    assert!(matches!(
        c.cmd,
        ClientCommand::Listen(ListenArgs {
            sync: SyncArg::Pull,
            count: Some(2),
            ..
        })
    ));
    assert!(TestCli::try_parse_from(["t", "history", "--as", "J", "--conv", "nothex"]).is_err());
    // Message ids are URL-safe base64 and may start with '-'.
    let c = TestCli::try_parse_from(["t", "recall", "--as", "J", CONV, "-Kx"]).unwrap();
    assert!(matches!(c.cmd, ClientCommand::Recall(a) if a.msg_id == "-Kx"));
}

const CONV: &str = "abababababababababababab";

/// Durations take bare seconds, as scripts pass them, or `500ms`, `2m`.
#[test]
fn duration_flags_take_seconds_or_human_forms() {
    let timeout = |v: &str| match parse(&["listen", "--as", "J", "--timeout", v]) {
        ClientCommand::Listen(a) => a.timeout,
        other => panic!("{other:?}"),
    };
    assert_eq!(timeout("30"), Some(Duration::from_secs(30)));
    assert_eq!(timeout("2.5"), Some(Duration::from_millis(2500)));
    assert_eq!(timeout("2m"), Some(Duration::from_secs(120)));
    let connect = |v: &[&str]| {
        let mut argv = vec!["send", "--as", "Tom", "--to", "J"];
        argv.extend_from_slice(v);
        argv.push("hi");
        match parse(&argv) {
            ClientCommand::Send(a) => a.common.connect_timeout,
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(connect(&[]), Duration::from_secs(2));
    assert_eq!(
        connect(&["--connect-timeout", "0.5"]),
        Duration::from_millis(500)
    );
    assert_eq!(
        connect(&["--connect-timeout", "750ms"]),
        Duration::from_millis(750)
    );
    for bad in ["0", "0s", "2h", "soon"] {
        let argv = [
            "t",
            "send",
            "--as",
            "T",
            "--to",
            "J",
            "--connect-timeout",
            bad,
            "hi",
        ];
        assert!(TestCli::try_parse_from(argv).is_err(), "{bad}");
    }
}

fn parse(args: &[&str]) -> ClientCommand {
    let mut argv = vec!["t"];
    argv.extend_from_slice(args);
    match TestCli::try_parse_from(argv) {
        Ok(c) => c.cmd,
        Err(e) => panic!("{args:?}: {e}"),
    }
}

#[test]
fn send_takes_every_message_option() {
    let c = parse(&[
        "send",
        "--as",
        "Tom",
        "--conv",
        CONV,
        "--mention",
        "Jerry",
        "--mention",
        "Spike",
        "--mention-all",
        "--receipt",
        "--push-data",
        r#"{"alert":"hi"}"#,
        "--type",
        "-2",
        "--attrs",
        r#"{"w":1}"#,
        "hi",
    ]);
    let ClientCommand::Send(a) = c else {
        panic!("{c:?}")
    };
    assert_eq!(a.mentions.mention, ["Jerry", "Spike"]);
    assert!(a.mentions.mention_all && a.receipt && !a.will && !a.transient);
    assert_eq!(a.push_data.as_deref(), Some(r#"{"alert":"hi"}"#));
    assert_eq!(a.typed.lctype, Some(-2));
    assert_eq!(a.text, "hi");
    let c = parse(&["send", "--as", "Tom", "--to", "Jerry", "--will", "bye"]);
    assert!(matches!(
        c,
        ClientCommand::Send(SendArgs { will: true, .. })
    ));
    let c = parse(&["send", "--as", "Tom", "--to", "Jerry", "--transient", "x"]);
    assert!(matches!(
        c,
        ClientCommand::Send(SendArgs {
            transient: true,
            ..
        })
    ));
    // A will is not transient, and is not resent by token.
    for bad in [
        &[
            "send",
            "--as",
            "T",
            "--to",
            "J",
            "--will",
            "--transient",
            "x",
        ][..],
        &[
            "send", "--as", "T", "--to", "J", "--will", "--token", "k", "x",
        ],
        &["send", "--as", "T", "--to", "J", "--type", "one", "x"],
    ] {
        let mut argv = vec!["t"];
        argv.extend_from_slice(bad);
        assert!(TestCli::try_parse_from(argv).is_err(), "{bad:?}");
    }
}

#[test]
fn message_commands_take_positional_ids() {
    let c = parse(&[
        "edit",
        "--as",
        "Tom",
        CONV,
        "MSG",
        "new text",
        "--mention",
        "Jerry",
        "--type",
        "-1",
    ]);
    let ClientCommand::Edit(a) = c else {
        panic!("{c:?}")
    };
    assert_eq!(a.conv.to_string(), CONV);
    assert_eq!((a.msg_id.as_str(), a.text.as_str()), ("MSG", "new text"));
    assert_eq!(a.mentions.mention, ["Jerry"]);
    assert_eq!(a.typed.lctype, Some(-1));
    assert!(matches!(
        parse(&["recall", "--as", "Tom", CONV, "MSG"]),
        ClientCommand::Recall(actions::MsgArgs { ref msg_id, .. }) if msg_id == "MSG"
    ));
    assert!(matches!(
        parse(&["delete-message", "--as", "Tom", CONV, "MSG"]),
        ClientCommand::DeleteMessage(_)
    ));
    assert!(matches!(
        parse(&["delete-conversation", "--as", "Tom", CONV]),
        ClientCommand::DeleteConversation(_)
    ));
    assert!(matches!(
        parse(&["receipts", "--as", "Tom", CONV]),
        ClientCommand::Receipts(_)
    ));
    assert!(matches!(
        parse(&["read", "--as", "Jerry", CONV, "--seq", "3"]),
        ClientCommand::Read(actions::ReadArgs { seq: Some(3), .. })
    ));
    assert!(matches!(
        parse(&["typing", "--as", "Jerry", CONV]),
        ClientCommand::Typing(actions::TypingArgs { stop: false, .. })
    ));
    assert!(matches!(
        parse(&["typing", "--as", "Jerry", CONV, "--stop"]),
        ClientCommand::Typing(actions::TypingArgs { stop: true, .. })
    ));
    assert!(matches!(
        parse(&["history", "--as", "J", "--conv", CONV, "--type", "-5"]),
        ClientCommand::History(HistoryArgs {
            lctype: Some(-5),
            ..
        })
    ));
    assert!(matches!(
        parse(&[
            "chat",
            "--as",
            "Tom",
            "--to",
            "Jerry",
            "--receipt",
            "--will",
            "bye"
        ]),
        ClientCommand::Chat(ChatArgs {
            receipt: true,
            will: Some(_),
            ..
        })
    ));
    // The ids are required and a conversation id is checked.
    for bad in [
        &["recall", "--as", "Tom", CONV][..],
        &["edit", "--as", "Tom", CONV, "MSG"],
        &["receipts", "--as", "Tom", "nothex"],
        &["typing", "--as", "Tom"],
    ] {
        let mut argv = vec!["t"];
        argv.extend_from_slice(bad);
        assert!(TestCli::try_parse_from(argv).is_err(), "{bad:?}");
    }
}

#[test]
fn chat_input_lines() {
    assert_eq!(parse_input("hello\n"), Input::Send("hello"));
    assert_eq!(parse_input("  \r\n"), Input::Nothing);
    assert_eq!(parse_input("/quit"), Input::Quit);
    assert_eq!(parse_input(" /help "), Input::Help);
    assert_eq!(parse_input("/recall"), Input::Recall);
    assert_eq!(parse_input("/edit  fixed it "), Input::Edit("fixed it"));
    assert_eq!(parse_input("/edit"), Input::Unknown("/edit"));
    assert_eq!(parse_input("/qiut"), Input::Unknown("/qiut"));
    assert_eq!(
        parse_input("//quit is a command"),
        Input::Send("/quit is a command")
    );
}

#[test]
fn a_delivery_receipt_behind_a_read_one_is_not_shown() {
    let conv: ConvId = CONV.parse().unwrap();
    let view = output::ChatView {
        conv,
        me: "Tom",
        color: false,
    };
    let mut upto = 0;
    let delivered = |at| Event::LastDeliveredAt {
        conv,
        by: "Jerry".into(),
        at,
    };
    let read = |at| Event::LastReadAt {
        conv,
        by: "Jerry".into(),
        at,
    };
    assert!(chat_event(&view, &delivered(5), &mut upto).is_some());
    assert!(chat_event(&view, &read(7), &mut upto).is_some());
    assert_eq!(chat_event(&view, &delivered(7), &mut upto), None);
    assert!(chat_event(&view, &delivered(8), &mut upto).is_some());
}

#[test]
fn chat_lines_mention_by_at_name() {
    assert_eq!(mentions_in("no mentions"), (vec![], false));
    assert_eq!(
        mentions_in("@Jerry, look: @Spike! and @Jerry again"),
        (vec!["Jerry".to_owned(), "Spike".to_owned()], false)
    );
    assert_eq!(mentions_in("hey @all"), (vec![], true));
    assert_eq!(
        mentions_in("mail tom@example.com or @ alone"),
        (vec![], false)
    );
}
