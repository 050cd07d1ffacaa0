//! `lars route add|del|list` as a process, against both store backends, and end to end with a
//! running dns service: an edit made with the CLI is pushed to a subscribed agent.

use bytes::BytesMut;
use lars_dns::{DnsConfig, DnsServer};
use lars_service::both_backends;
use lars_service::testing::{Finished, ServiceTask, run};
use lars_store::testing::TestDb;
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
