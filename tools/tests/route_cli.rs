//! `lars route add|del|list|name` and `lars status` as processes, against both store backends;
//! which store they use without `--store` (`LARS_STORE`, else the default file); and end to end
//! with a running dns service: an edit made with the CLI is pushed to a subscribed agent.

use bytes::BytesMut;
use lars_dns::{DnsConfig, DnsServer};
use lars_service::both_backends;
use lars_service::testing::{Finished, ServiceTask, run};
use lars_store::testing::TestDb;
use lars_store::{CallStatusRow, StoreUrl};
use lars_wire::messages::GetRouteRequest;
use lars_wire::{FrameDecoder, Message, MsgId};
use std::path::Path;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn lars(args: &[&str]) -> Finished {
    run(Path::new(env!("CARGO_BIN_EXE_lars")), args)
}

fn add_list_and_delete_routes(db: TestDb) {
    let url = db.url_string();
    let route = |args: &[&str]| lars(&[&["route"][..], args, &["--store", url.as_str()]].concat());

    let out = route(&["add", "1", "2", "10.0.0.1", "8080"]);
    assert!(out.status.success(), "{}", out.stderr);
    assert!(out.stdout.contains("added 10.0.0.1:8080 to route (1, 2)"));
    let out = route(&["add", "1", "2", "200.1.2.3", "80"]);
    assert!(out.status.success(), "{}", out.stderr);
    let out = route(&["add", "1", "2", "200.1.2.3", "80"]);
    assert!(out.stdout.contains("already in route"));
    let out = route(&["add", "3", "4", "10.0.0.9", "9"]);
    assert!(out.status.success());

    let all = route(&["list"]).stdout;
    assert!(
        all.contains("10.0.0.1:8080") && all.contains("200.1.2.3:80") && all.contains("10.0.0.9:9")
    );
    assert!(all.contains("2 route(s), 3 host(s)"), "{all}");
    let one = route(&["list", "1", "2"]).stdout;
    assert!(
        one.contains("1 route(s), 2 host(s)") && !one.contains("10.0.0.9"),
        "{one}"
    );
    let module = route(&["list", "3"]).stdout;
    assert!(module.contains("1 route(s), 1 host(s)"), "{module}");

    let out = route(&["del", "1", "2", "10.0.0.1", "8080"]);
    assert!(
        out.stdout.contains("removed 10.0.0.1:8080"),
        "{}",
        out.stdout
    );
    let out = route(&["del", "1", "2", "10.0.0.1", "8080"]);
    assert!(out.stdout.contains("not in route"));
    let out = route(&["del", "1", "2"]);
    assert!(
        out.stdout.contains("removed route (1, 2) with 1 host(s)"),
        "{}",
        out.stdout
    );
    let all = route(&["list"]).stdout;
    assert!(all.contains("1 route(s), 1 host(s)"), "{all}");
}

both_backends!(blocking add_list_and_delete_routes);

#[test]
fn bad_arguments_are_clear_errors_with_exit_code_2() {
    let db = TestDb::sqlite();
    let url = db.url_string();
    let cases: [(&[&str], &str); 9] = [
        (
            &["route", "add", "1", "2", "10.0.0.256", "80"],
            "not an IPv4 address",
        ),
        (
            &["route", "add", "1", "2", "10.0.0.1", "0"],
            "outside 1..65535",
        ),
        (
            &["route", "add", "1", "2", "10.0.0.1", "65536"],
            "outside 1..65535",
        ),
        (
            &["route", "add", "2147483648", "2", "10.0.0.1", "80"],
            "not an integer",
        ),
        (
            &["route", "add", "--", "1", "-2147483649", "10.0.0.1", "80"],
            "id -2147483649 is negative",
        ),
        (
            &["route", "add", "--", "-1", "2", "10.0.0.1", "80"],
            "id -1 is negative",
        ),
        (
            &["route", "del", "--", "1", "-1"],
            "no route has a negative id",
        ),
        (&["route", "del", "1", "2", "10.0.0.1"], "both IP and PORT"),
        (&["route", "list", "x"], "not an integer"),
    ];
    for (args, want) in cases {
        // `lars route add --store URL ARGS`: options first, so `--` can guard negative ids.
        lars(&[&args[..2], &["--store", url.as_str()][..], &args[2..]].concat())
            .assert_failed(2, want);
    }
    lars(&["route", "list", "--store", "postgres://x"]).assert_failed(1, "postgres://x");
}

fn names_show_in_route_list_and_status(db: TestDb) {
    let url = db.url_string();
    let with_store = |args: &[&str]| lars(&[args, &["--store", url.as_str()]].concat());
    assert!(
        with_store(&["route", "add", "1", "2", "10.0.0.1", "80"])
            .status
            .success()
    );
    db.run(async |store| {
        let row = CallStatusRow {
            modid: 1,
            cmdid: 2,
            ip: u32::from(std::net::Ipv4Addr::new(10, 0, 0, 1)),
            port: 80,
            caller: u32::from(std::net::Ipv4Addr::LOCALHOST),
            succ_cnt: 9,
            err_cnt: 1,
            ts: 0,
            overload: false,
        };
        store.upsert_call_status(&[row]).await.unwrap();
    });

    let out = with_store(&["route", "name", "1", "users"]);
    assert!(out.status.success(), "{}", out.stderr);
    assert!(
        out.stdout.contains("named module 1 \"users\""),
        "{}",
        out.stdout
    );
    let out = with_store(&["route", "name", "1", "2", "log in"]);
    assert!(
        out.stdout.contains("named command 2 \"log in\""),
        "{}",
        out.stdout
    );
    let out = with_store(&["route", "name", "1", "accounts"]);
    assert!(
        out.stdout
            .contains("renamed module 1 from \"users\" to \"accounts\""),
        "{}",
        out.stdout
    );
    let out = with_store(&["route", "name", "1", "accounts"]);
    assert!(out.stdout.contains("nothing changed"), "{}", out.stdout);

    let list = with_store(&["route", "list"]).stdout;
    let line = list.lines().find(|l| l.contains("10.0.0.1:80")).unwrap();
    assert!(line.ends_with("accounts/log in"), "{list}");
    let status = with_store(&["status"]).stdout;
    let line = status.lines().find(|l| l.contains("10.0.0.1:80")).unwrap();
    assert!(line.ends_with("accounts/log in"), "{status}");

    // Refused names exit 1 and change nothing.
    let long = "x".repeat(300);
    for (args, want) in [
        (&["route", "name", "1", " "][..], "empty"),
        (
            &["route", "name", "1", "2", "a\u{1b}[2Jb"][..],
            "control character",
        ),
        (&["route", "name", "1", long.as_str()][..], "more than 255"),
    ] {
        with_store(args).assert_failed(1, want);
    }
    let list = with_store(&["route", "list"]).stdout;
    assert!(list.contains("accounts/log in"), "{list}");
}

both_backends!(blocking names_show_in_route_list_and_status);

#[test]
fn bad_name_arguments_exit_2() {
    let db = TestDb::sqlite();
    let url = db.url_string();
    for (args, want) in [
        (&["route", "name", "1"][..], "give the name"),
        (
            &["route", "name", "1", "2", "log", "in"][..],
            "one argument",
        ),
        (&["route", "name", "1", "x", "login"][..], "not an integer"),
        (
            &["route", "name", "--", "-1", "users"][..],
            "id -1 is negative",
        ),
    ] {
        lars(&[&args[..2], &["--store", url.as_str()][..], &args[2..]].concat())
            .assert_failed(2, want);
    }
}

/// `lars ARGS` with exactly the environment `env` (plus PATH), in `cwd`.
fn lars_in(cwd: &Path, env: &[(&str, &Path)], args: &[&str]) -> std::process::Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_lars"));
    command.args(args).current_dir(cwd).env_clear();
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().unwrap()
}

#[test]
fn without_store_the_commands_use_lars_store_else_the_default_file_from_any_directory() {
    let home = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let env = [("HOME", home.path())];
    let default = home.path().join(".local/state/lars/lars.db");

    let shown = lars_in(home.path(), &env, &["store", "--url"]);
    let shown = String::from_utf8_lossy(&shown.stdout).trim().to_string();
    assert_eq!(shown, format!("sqlite://{}", default.display()));
    let init = lars_in(home.path(), &env, &["init"]);
    assert!(init.status.success(), "{init:?}");
    assert!(
        default.exists(),
        "lars init made the default file and its directory"
    );
    let add = lars_in(
        home.path(),
        &env,
        &["route", "add", "1", "1", "10.0.0.1", "9000"],
    );
    assert!(add.status.success(), "{add:?}");
    let list = lars_in(elsewhere.path(), &env, &["route", "list"]);
    assert!(
        String::from_utf8_lossy(&list.stdout).contains("10.0.0.1:9000"),
        "another working directory sees the same store: {list:?}"
    );

    // LARS_STORE names another store, which wins over the default and loses to --store.
    let db = TestDb::sqlite();
    let StoreUrl::Sqlite(other) = db.url() else {
        unreachable!()
    };
    let url = format!("sqlite://{}", other.display());
    let env = [("HOME", home.path()), ("LARS_STORE", Path::new(&url))];
    let list = lars_in(elsewhere.path(), &env, &["route", "list"]);
    let text = String::from_utf8_lossy(&list.stdout);
    assert!(
        list.status.success() && text.contains("0 route(s)"),
        "{list:?}"
    );
    let store = lars_in(elsewhere.path(), &env, &["store"]);
    assert!(String::from_utf8_lossy(&store.stdout).contains("from LARS_STORE"));
    let flag = format!("sqlite://{}", default.display());
    let list = lars_in(elsewhere.path(), &env, &["route", "list", "--store", &flag]);
    assert!(String::from_utf8_lossy(&list.stdout).contains("10.0.0.1:9000"));
}

#[test]
fn an_unreachable_store_is_an_error_naming_it() {
    lars(&[
        "route",
        "list",
        "--store",
        "mysql://root@127.0.0.1:1/lars_dns",
    ])
    .assert_failed(1, "127.0.0.1:1");
}

/// The whole admin path: `lars route add` → store → lars-dns → push to a subscribed agent.
async fn cli_edit_is_pushed_by_dns(db: TestDb) {
    let mut config = DnsConfig::default();
    config.reactor.port = 0;
    let server = DnsServer::bind(&config, db.url()).await.unwrap();
    let addr = server.local_addr();
    let dns = ServiceTask::spawn("dns", |shutdown| server.run(shutdown));

    let mut agent = TcpStream::connect(addr).await.unwrap();
    let mut request = BytesMut::new();
    for cmdid in [1, 2] {
        lars_wire::frame::encode_frame(
            MsgId::GetRouteRequest,
            &GetRouteRequest { modid: 9, cmdid },
            &mut request,
        )
        .unwrap();
    }
    agent.write_all(&request).await.unwrap();
    let mut buf = BytesMut::new();
    let mut decoder = FrameDecoder::new();
    let mut next = async || loop {
        if let Some(frame) = decoder.decode(&mut buf).unwrap() {
            match frame.decode().unwrap() {
                Message::GetRouteResponse(r) => return r,
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(agent.read_buf(&mut buf).await.unwrap() > 0, "dns closed");
    };
    for _ in 0..2 {
        assert!(next().await.host.is_empty());
    }

    let url = db.url_string();
    let out = tokio::task::spawn_blocking(move || {
        lars(&["route", "add", "9", "1", "10.9.9.9", "999", "--store", &url])
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", out.stderr);
    let push = tokio::time::timeout(Duration::from_secs(2), next())
        .await
        .expect("push within 2 s of the edit");
    assert_eq!((push.modid, push.cmdid, push.host.len()), (9, 1, 1));
    dns.stop(Duration::from_secs(10)).await;
}

both_backends!(cli_edit_is_pushed_by_dns);
