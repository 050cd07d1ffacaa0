//! The console in a real browser: headless Chromium driven through chromedriver (WebDriver)
//! with fantoccini, against a console on an embedded store with lars-dns, lars-reporter and an
//! agent running. Logs in with the one-time token, adds a host and sees it listed, sees its
//! health row appear by the page's own refresh, and gets the error for a bad IP. Screenshots
//! of each step go to `target/console-screenshots/`. Needs Debian's `chromium` and
//! `chromium-driver` (scripts/test.sh installs them); without them this test fails, it never
//! skips.

mod common;

use common::{Console, client_of, served, start_agent, start_central};
use fantoccini::{Client, ClientBuilder, Locator};
use lars_service::testing::eventually;
use lars_store::testing::TestDb;
use lars_wire::{HostAddr, RouteKey};
use std::net::{Ipv4Addr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// How long one browser step may take to show what it should.
const STEP: Duration = Duration::from_secs(20);

/// chromedriver on a port of loopback, killed on drop.
struct Driver {
    child: Child,
    port: u16,
}

impl Driver {
    fn start() -> Driver {
        for path in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                Path::new(path).exists(),
                "{path} is missing: install Debian's chromium and chromium-driver \
                 (apt-get install -y chromium chromium-driver; scripts/test.sh does it as root)"
            );
        }
        let port = common::nowhere();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {CHROMEDRIVER}: {e}"));
        eventually("chromedriver listens", Duration::from_secs(20), || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        Driver { child, port }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn screenshots() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/console-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn shot(browser: &Client, name: &str) {
    let png = browser.screenshot().await.expect("screenshot");
    let path = screenshots().join(format!("{name}.png"));
    std::fs::write(&path, png).unwrap();
    println!("screenshot {}", path.display());
}

async fn browser(driver: &Driver, profile: &Path) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".to_string(),
        serde_json::json!({
            "binary": CHROMIUM,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-quic", "--no-first-run", "--disable-component-update", "--disable-sync",
                "--window-size=1200,900",
                format!("--user-data-dir={}", profile.display()),
            ],
        }),
    );
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(connector)
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{}", driver.port))
        .await
        .expect("a WebDriver session in headless Chromium")
}

/// Fills the form holding field `ip` on the page with `fields` and submits it.
async fn submit_host_form(browser: &Client, fields: &[(&str, &str)]) {
    let form = browser
        .find(Locator::Css("form.edit[action='/edit/add-host']"))
        .await
        .expect("the add-host form");
    for (name, value) in fields {
        let input = form
            .find(Locator::Css(&format!("input[name='{name}']")))
            .await
            .unwrap();
        input.clear().await.unwrap();
        input.send_keys(value).await.unwrap();
    }
    form.find(Locator::Css("button[type='submit']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

#[test]
fn an_operator_logs_in_adds_a_host_sees_its_health_and_gets_the_error_for_a_bad_ip() {
    let db = TestDb::sqlite();
    let dir = tempfile::tempdir().unwrap();
    let store = db.url_string();
    let (_dns, dns_port) = start_central(
        "lars-dns",
        dir.path(),
        &store,
        "[dns]\nversion_poll_ms = 200\n",
    );
    let (_reporter, reporter_port) = start_central("lars-reporter", dir.path(), &store, "");
    let agent = start_agent(dir.path(), dns_port, reporter_port);
    let console = Console::start(&store, "");
    let driver = Driver::start();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let store = db.open().await.unwrap();
        let browser = browser(&driver, &dir.path().join("chromium-profile")).await;
        drive(&browser, &console, &store, &agent).await;
        browser.close().await.unwrap();
    });
}

/// The operator's steps in `browser`.
async fn drive(
    browser: &Client,
    console: &Console,
    store: &lars_store::Store,
    agent: &common::Service,
) {
    // Every page leads to the login first.
    browser.goto(&console.url("/")).await.unwrap();
    let form = browser
        .wait()
        .at_most(STEP)
        .for_element(Locator::Css("form[action='/login']"))
        .await
        .unwrap();
    form.find(Locator::Css("input[name='user']"))
        .await
        .unwrap()
        .send_keys("operator")
        .await
        .unwrap();
    form.find(Locator::Css("input[name='password']"))
        .await
        .unwrap()
        .send_keys(&console.token)
        .await
        .unwrap();
    shot(browser, "1-login").await;
    form.find(Locator::Css("button[type='submit']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser
        .wait()
        .at_most(STEP)
        .for_element(Locator::Css("table#routes"))
        .await
        .expect("the overview after login");
    shot(browser, "2-overview").await;

    // Add a host to a new route from the overview; the route page lists it.
    let added = HostAddr::new(Ipv4Addr::new(10, 0, 0, 7), 9000);
    submit_host_form(
        browser,
        &[
            ("modid", "7"),
            ("cmdid", "7"),
            ("ip", "10.0.0.7"),
            ("port", "9000"),
        ],
    )
    .await;
    let hosts = browser
        .wait()
        .at_most(STEP)
        .for_element(Locator::Css("ul#hosts"))
        .await
        .unwrap();
    assert!(hosts.text().await.unwrap().contains("10.0.0.7:9000"));
    shot(browser, "3-host-added").await;
    let stored = store.load_routes().await.unwrap();
    assert_eq!(stored.routes[&RouteKey::new(7, 7)], [added]);

    // A caller uses the route and reports; the page's own refresh shows the health row.
    let mut client = client_of(agent);
    served(&mut client, 7, 7);
    for _ in 0..5 {
        client.report(7, 7, added, 0).unwrap();
    }
    let row = Locator::Css("tr.health-row[data-host='10.0.0.7:9000']");
    let row = browser
        .wait()
        .at_most(STEP)
        .for_element(row)
        .await
        .expect("the health row appears without a reload");
    let text = row.text().await.unwrap();
    assert!(
        text.contains("127.0.0.1") && text.contains("idle"),
        "{text}"
    );
    shot(browser, "4-health-row").await;

    // A bad IP is refused with its error, and nothing is written.
    submit_host_form(browser, &[("ip", "300.1.1.1"), ("port", "9001")]).await;
    let error = browser
        .wait()
        .at_most(STEP)
        .for_element(Locator::Css(".errors li.error"))
        .await
        .unwrap();
    let text = error.text().await.unwrap();
    assert!(
        text.contains("300.1.1.1") && text.contains("not an IPv4 address"),
        "{text}"
    );
    shot(browser, "5-bad-ip").await;
    let stored = store.load_routes().await.unwrap();
    assert_eq!(stored.routes[&RouteKey::new(7, 7)], [added]);
    eventually(
        "the agent still has one host",
        Duration::from_secs(2),
        || client.get_route(7, 7).ok().filter(|h| h == &[added]),
    );
}
