//! The console over HTTP, as a process on each store backend: nothing without a session, no
//! form without its CSRF token, bad input shown and nothing written, edits that reach a running
//! agent and the audit log, and a failing host shown as overloaded.

mod common;

use common::{Console, count, served, start_agent, start_central};
use lars_service::both_backends;
use lars_service::testing::eventually;
use lars_store::testing::TestDb;
use lars_wire::{HostAddr, RouteKey};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

fn host(last: u8, port: u16) -> HostAddr {
    HostAddr::new(Ipv4Addr::new(10, 0, 0, last), port)
}

both_backends!(blocking nothing_works_without_a_session);
both_backends!(blocking a_form_without_its_csrf_token_is_refused);
both_backends!(blocking bad_input_shows_its_error_and_changes_nothing);
both_backends!(blocking an_edit_reaches_a_running_agent_within_2_s_and_the_audit_log);
both_backends!(blocking a_host_an_agent_reports_failing_shows_as_overloaded);

fn nothing_works_without_a_session(db: TestDb) {
    let console = Console::start(&db.url_string(), "");
    let http = console.client();
    for path in ["/", "/route/1/1", "/changes", "/services", "/nonexistent"] {
        let answer = http.get(console.url(path)).send().unwrap();
        assert_eq!(answer.status(), 303, "GET {path}");
        assert_eq!(answer.headers()["location"], "/login", "GET {path}");
    }
    let form = [
        ("modid", "1"),
        ("cmdid", "1"),
        ("ip", "10.0.0.1"),
        ("port", "9000"),
    ];
    for path in [
        "/edit/add-host",
        "/edit/remove-host",
        "/edit/remove-route",
        "/logout",
    ] {
        let (status, _) = console.post(&http, path, &form);
        assert_eq!(status, 401, "POST {path}");
        // A made-up session is no session.
        let answer = http
            .post(console.url(path))
            .header(
                "cookie",
                "lars_console_session=0123456789abcdef0123456789abcdef",
            )
            .form(&form)
            .send()
            .unwrap();
        assert_eq!(answer.status(), 401, "POST {path} with a made-up session");
    }
    assert_eq!(count(&db, "RouteData"), 0);
    // A wrong password gets no session either.
    let answer = console.try_login(&http, "not-the-token");
    assert_eq!(answer.status(), 401);
    assert_eq!(http.get(console.url("/")).send().unwrap().status(), 303);
    // The login page itself carries the security headers.
    let answer = http.get(console.url("/login")).send().unwrap();
    let headers = answer.headers();
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(headers["x-frame-options"], "DENY");
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    let cookie = headers["set-cookie"].to_str().unwrap();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    // Logged in, the pages answer, and the session cookie is HttpOnly and SameSite=Strict.
    let answer = console.try_login(&http, &console.token);
    assert_eq!(answer.status(), 303);
    let cookie = answer.headers()["set-cookie"].to_str().unwrap();
    assert!(
        cookie.starts_with("lars_console_session=")
            && cookie.contains("HttpOnly")
            && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    for path in ["/", "/route/1/1", "/changes", "/services"] {
        console.get(&http, path);
    }
}

fn a_form_without_its_csrf_token_is_refused(db: TestDb) {
    let console = Console::start(&db.url_string(), "");
    let (http, csrf) = console.logged_in();
    let fields = [
        ("modid", "1"),
        ("cmdid", "1"),
        ("ip", "10.0.0.1"),
        ("port", "9000"),
    ];
    let (status, body) = console.post(&http, "/edit/add-host", &fields);
    assert_eq!(status, 403, "{body}");
    let mut wrong = fields.to_vec();
    wrong.push(("csrf", "0123456789abcdef0123456789abcdef"));
    assert_eq!(console.post(&http, "/edit/add-host", &wrong).0, 403);
    // Another session's token is not this one's.
    let (_, other_csrf) = console.logged_in();
    let mut other = fields.to_vec();
    other.push(("csrf", &other_csrf));
    assert_eq!(console.post(&http, "/edit/add-host", &other).0, 403);
    assert_eq!(count(&db, "RouteData"), 0);
    assert_eq!(count(&db, "ConsoleAudit"), 0);
    // The login form needs its own token too.
    let fresh = console.client();
    let answer = fresh
        .post(console.url("/login"))
        .form(&[("user", "operator"), ("password", console.token.as_str())])
        .send()
        .unwrap();
    assert_eq!(answer.status(), 403);
    // With the token the same form works.
    let mut good = fields.to_vec();
    good.push(("csrf", &csrf));
    let (status, _) = console.post(&http, "/edit/add-host", &good);
    assert_eq!(status, 303);
    assert_eq!(count(&db, "RouteData"), 1);
}

fn bad_input_shows_its_error_and_changes_nothing(db: TestDb) {
    db.run(|store| async move {
        store
            .add_host(RouteKey::new(1, 1), host(1, 9000))
            .await
            .unwrap();
    });
    let version = || db.run(|store| async move { store.route_version().await.unwrap() });
    let before = version();
    let console = Console::start(&db.url_string(), "");
    let (http, csrf) = console.logged_in();
    let cases: [(&str, [&str; 4], &str); 6] = [
        (
            "/edit/add-host",
            ["1", "1", "300.1.1.1", "9000"],
            "IP address `300.1.1.1`: is not an IPv4 address",
        ),
        (
            "/edit/add-host",
            ["1", "1", "10.0.0.2", "70000"],
            "port `70000`: must be from 1 to 65535",
        ),
        (
            "/edit/add-host",
            ["-1", "1", "10.0.0.2", "9000"],
            "modid `-1`: must be from 0 to 2147483647",
        ),
        (
            "/edit/add-host",
            ["1", "1", "10.0.0.1", "9000"],
            "10.0.0.1:9000 is already in route 1/1",
        ),
        (
            "/edit/remove-host",
            ["1", "1", "10.0.0.9", "9000"],
            "10.0.0.9:9000 is not in route 1/1",
        ),
        (
            "/edit/remove-route",
            ["2", "x", "", ""],
            "cmdid `x`: must be a whole number",
        ),
    ];
    for (path, [modid, cmdid, ip, port], error) in cases {
        let form = [
            ("csrf", csrf.as_str()),
            ("modid", modid),
            ("cmdid", cmdid),
            ("ip", ip),
            ("port", port),
        ];
        let (status, body) = console.post(&http, path, &form);
        assert_eq!(status, 400, "{path} {form:?}");
        assert!(
            body.contains(error),
            "{path} {form:?}: no `{error}` in {body}"
        );
        assert!(body.contains("Nothing was changed"), "{body}");
    }
    assert_eq!(version(), before, "no version was written");
    assert_eq!(count(&db, "RouteData"), 1);
    assert_eq!(count(&db, "ConsoleAudit"), 0);
}

fn an_edit_reaches_a_running_agent_within_2_s_and_the_audit_log(db: TestDb) {
    let dir = tempfile::tempdir().unwrap();
    let store = db.url_string();
    db.run(|store| async move {
        store
            .add_host(RouteKey::new(5, 5), host(1, 9000))
            .await
            .unwrap();
    });
    let (dns, dns_port) = start_central(
        "lars-dns",
        dir.path(),
        &store,
        "[dns]\nversion_poll_ms = 200\n",
    );
    let agent = start_agent(dir.path(), dns_port, common::nowhere());
    let mut client = common::client_of(&agent);
    served(&mut client, 5, 5);
    let services = format!(
        "[[services]]\nname = \"the dns\"\nurl = \"http://{}/metrics\"\n\
         [[services]]\nname = \"a gone one\"\nurl = \"127.0.0.1:{}\"\n",
        dns.metrics_addr(),
        common::nowhere()
    );
    let console = Console::start(&store, &services);
    let (http, csrf) = console.logged_in();
    let page = console.get(&http, "/services");
    assert!(
        page.contains("the dns <span class=\"up\">up</span>"),
        "{page}"
    );
    assert!(
        page.contains("a gone one <span class=\"down\">down</span>"),
        "{page}"
    );
    assert!(page.contains("lars_service_serving"), "{page}");

    let added = host(2, 9001);
    let form = [
        ("csrf", csrf.as_str()),
        ("modid", "5"),
        ("cmdid", "5"),
        ("ip", "10.0.0.2"),
        ("port", "9001"),
    ];
    let (status, body) = console.post(&http, "/edit/add-host", &form);
    assert_eq!(status, 303, "{body}");
    let edited = Instant::now();
    eventually(
        "the agent has the added host",
        Duration::from_secs(2),
        || {
            client
                .get_route(5, 5)
                .ok()
                .filter(|hosts| hosts.contains(&added))
        },
    );
    println!(
        "the console's edit reached the agent in {:?}",
        edited.elapsed()
    );
    let page = console.get(&http, "/route/5/5");
    assert!(page.contains("10.0.0.2:9001"), "{page}");

    let changes = console.get(&http, "/changes");
    assert!(
        changes.contains("add host 10.0.0.2:9001 to route 5/5: route version"),
        "{changes}"
    );
    assert!(changes.contains("<td>operator</td>"), "{changes}");
    let audit = db.run(|store| async move { store.load_audit(10).await.unwrap() });
    assert_eq!(audit.len(), 1);
    assert_eq!(
        (
            audit[0].who.as_str(),
            audit[0].peer.starts_with("127.0.0.1:")
        ),
        ("operator", true)
    );

    // Removing it goes the same way.
    let (status, _) = console.post(&http, "/edit/remove-host", &form);
    assert_eq!(status, 303);
    eventually(
        "the agent drops the removed host",
        Duration::from_secs(2),
        || {
            client
                .get_route(5, 5)
                .ok()
                .filter(|hosts| !hosts.contains(&added))
        },
    );
    assert_eq!(count(&db, "ConsoleAudit"), 2);
}

fn a_host_an_agent_reports_failing_shows_as_overloaded(db: TestDb) {
    let dir = tempfile::tempdir().unwrap();
    let store = db.url_string();
    let (failing, fine) = (host(1, 9000), host(2, 9000));
    db.run(|store| async move {
        for h in [failing, fine] {
            store.add_host(RouteKey::new(6, 6), h).await.unwrap();
        }
    });
    let (_dns, dns_port) = start_central(
        "lars-dns",
        dir.path(),
        &store,
        "[dns]\nversion_poll_ms = 200\n",
    );
    let (_reporter, reporter_port) = start_central("lars-reporter", dir.path(), &store, "");
    let agent = start_agent(dir.path(), dns_port, reporter_port);
    let mut client = common::client_of(&agent);
    served(&mut client, 6, 6);
    let console = Console::start(&store, "");
    let (http, _) = console.logged_in();
    let row = |h: HostAddr| format!("class=\"health-row overloaded\" data-host=\"{h}\"");
    let page = eventually(
        "the route page shows the failing host overloaded",
        Duration::from_secs(15),
        || {
            // A caller whose calls to one host keep failing and to the other succeed.
            for _ in 0..20 {
                client.report(6, 6, failing, 1).unwrap();
                client.report(6, 6, fine, 0).unwrap();
            }
            let page = console.get(&http, "/route/6/6");
            page.contains(&row(failing)).then_some(page)
        },
    );
    assert!(!page.contains(&row(fine)), "{page}");
    let overview = console.get(&http, "/");
    assert!(overview.contains("<tr class=\"unhealthy\">"), "{overview}");
}

#[test]
fn routes_show_their_names_and_are_found_by_them() {
    let db = TestDb::sqlite();
    db.run(|store| async move {
        store
            .add_host(RouteKey::new(3, 1), host(1, 9000))
            .await
            .unwrap();
        store
            .add_host(RouteKey::new(4, 1), host(1, 9000))
            .await
            .unwrap();
        store.set_module_name(3, "Users").await.unwrap();
        store.set_command_name(1, "login").await.unwrap();
    });
    let console = Console::start(&db.url_string(), "");
    let (http, _) = console.logged_in();
    let found = console.get(&http, "/?q=user");
    assert!(
        found.contains("Users/login") && found.contains("/route/3/1"),
        "{found}"
    );
    assert!(!found.contains("/route/4/1"), "{found}");
    let by_key = console.get(&http, "/?q=4/1");
    assert!(
        by_key.contains("/route/4/1") && !by_key.contains("/route/3/1"),
        "{by_key}"
    );
    assert!(console.get(&http, "/route/3/1").contains("Users/login"));
}

#[test]
fn login_attempts_are_rate_limited() {
    let db = TestDb::sqlite();
    let console = Console::start(&db.url_string(), "");
    let http = console.client();
    for _ in 0..lars_console::auth::LOGIN_ATTEMPTS_PER_PEER {
        assert_eq!(console.try_login(&http, "wrong").status(), 401);
    }
    // Past the limit even the right token is not checked.
    let answer = console.try_login(&http, &console.token);
    assert_eq!(answer.status(), 429);
    assert!(answer.text().unwrap().contains("Too many login attempts"));
    assert_eq!(http.get(console.url("/")).send().unwrap().status(), 303);
}

#[test]
fn without_a_password_it_refuses_to_listen_beyond_loopback() {
    let db = TestDb::sqlite();
    let dir = tempfile::tempdir().unwrap();
    let config = common::write_config(
        dir.path(),
        "lars_console.toml",
        &format!(
            "[console]\nlisten = \"0.0.0.0:0\"\npassword_env = \"\"\n[store]\nurl = \"{}\"\n",
            db.url_string()
        ),
    );
    let console = common::Service::start_unready(
        std::path::Path::new(env!("CARGO_BIN_EXE_lars-console")),
        &["--config", &config],
    );
    console.wait_for_line(
        "refusing to listen on 0.0.0.0:0 without a password",
        Duration::from_secs(10),
    );
    assert!(!console.wait_for_exit(Duration::from_secs(10)).success());
}
