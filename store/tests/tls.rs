//! The store over TLS, against a private MariaDB that refuses plain connections
//! (`require_secure_transport=ON`) and serves a certificate made for this test.
//!
//! One test function: nextest runs every test in its own process, so each function would start
//! its own server; one start covers every check here.

use std::error::Error as _;
use std::time::Duration;

use lars_store::testing::{TlsMariaDb, UNNAMED_LOOPBACK};
use lars_store::{MysqlTls, SslMode, Store, StoreError, StoreOptions, StoreUrl};
use lars_wire::{HostAddr, RouteKey};

/// Short limits: every failure here is a refusal that arrives at once, not a silence.
fn options() -> StoreOptions {
    StoreOptions {
        connect_timeout: Duration::from_secs(5),
        op_timeout: Duration::from_secs(5),
        ..StoreOptions::default()
    }
}

/// `err` and all its causes, one line.
fn chain(err: &StoreError) -> String {
    let mut out = err.to_string();
    let mut next = err.source();
    while let Some(cause) = next {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        next = cause.source();
    }
    out
}

fn with_tls(server: &TlsMariaDb, database: &str, tls: MysqlTls) -> StoreUrl {
    server.url(database, tls)
}

async fn init_fails(url: &StoreUrl) -> String {
    match Store::init_with(url, options()).await {
        Ok(report) => panic!("{url}: init succeeded ({report})"),
        Err(e) => chain(&e),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_speaks_tls_to_a_server_that_requires_it() {
    let Some(server) = TlsMariaDb::start() else {
        return;
    };

    // Plain TCP (no `ssl-mode`, as before TLS support) is refused by the server, and says so.
    let plain = server.url("lars_plain", MysqlTls::default());
    let message = init_fails(&plain).await;
    assert!(
        message.contains("refused the login over plain TCP")
            && message.contains("ssl-mode=verify-ca")
            && message.contains("Access denied"),
        "{message}"
    );

    // verify-ca with the server's CA: init, add a route, list it.
    let url = server.verify_ca_url("lars_tls");
    let report = Store::init_with(&url, options()).await.unwrap();
    assert!(report.created_database, "{report}");
    let store = Store::open_with(&url, options()).await.unwrap();
    let key = RouteKey::new(7, 1);
    let host = HostAddr::new([10, 0, 0, 7].into(), 8080);
    store.add_host(key, host).await.unwrap();
    let load = store.load_routes().await.unwrap();
    assert_eq!(load.routes[&key], vec![host]);
    // The server confirms the session is encrypted.
    let cipher = store
        .query_i64("SELECT LENGTH(VARIABLE_VALUE) FROM information_schema.SESSION_STATUS WHERE VARIABLE_NAME = 'Ssl_cipher'")
        .await
        .unwrap();
    assert!(
        cipher.is_some_and(|len| len > 0),
        "no TLS cipher: {cipher:?}"
    );
    store.close().await;

    // A CA that did not sign the server certificate: refused by us, naming the certificate.
    let wrong_ca = with_tls(
        &server,
        "lars_tls",
        MysqlTls {
            mode: SslMode::VerifyCa,
            ca: Some(server.other_ca().to_path_buf()),
            client_identity: None,
        },
    );
    let message = match Store::open_with(&wrong_ca, options()).await {
        Ok(store) => panic!("opened {store:?} with the wrong CA"),
        Err(e) => chain(&e),
    };
    assert!(
        message.starts_with("TLS with 127.0.0.1:")
            && message.contains("`ssl-mode=verify-ca`")
            && message.contains("invalid peer certificate: UnknownIssuer"),
        "{message}"
    );

    // verify-identity: the certificate is issued for `localhost` and `127.0.0.1`.
    for name in ["127.0.0.1", "localhost"] {
        let StoreUrl::Mysql(mut m) = server.verify_ca_url("lars_tls") else {
            unreachable!()
        };
        m.host = name.into();
        m.tls.mode = SslMode::VerifyIdentity;
        let store = Store::open_with(&StoreUrl::Mysql(m), options())
            .await
            .unwrap();
        assert_eq!(
            store.load_routes().await.unwrap().routes[&key],
            vec![host],
            "via {name}"
        );
        store.close().await;
    }

    // ... and not for 127.0.0.2, where verify-identity refuses it.
    let StoreUrl::Mysql(mut m) = server.verify_ca_url("lars_tls") else {
        unreachable!()
    };
    m.host = UNNAMED_LOOPBACK.to_string();
    for mode in [SslMode::VerifyIdentity, SslMode::VerifyCa] {
        m.tls.mode = mode;
        let message = match Store::open_with(&StoreUrl::Mysql(m.clone()), options()).await {
            Ok(store) => panic!("{mode:?} opened {store:?} on a name the certificate lacks"),
            Err(e) => chain(&e),
        };
        assert!(
            message.starts_with("TLS with 127.0.0.2:")
                && message.contains(&format!("`ssl-mode={}`", mode.as_str()))
                && message.contains("certificate not valid for name"),
            "{message}"
        );
        // verify-ca is refused too: mysql_async 0.37.1 cannot skip the name check with the
        // rustls in the tree (blackbeam/mysql_async#404, fixed upstream, not released). When
        // this assertion fails after a driver upgrade, verify-ca has stopped checking names:
        // expect it to open here, and drop the caveat from `SslMode::VerifyCa` and the README.
    }

    // A user that must show a client certificate: refused without one, let in with it.
    let root = Store::open_with(&url, options()).await.unwrap();
    for sql in [
        "CREATE USER lars_x509@'%' REQUIRE X509",
        "GRANT ALL ON lars_tls.* TO lars_x509@'%'",
    ] {
        root.execute_raw(sql).await.unwrap();
    }
    root.close().await;
    let StoreUrl::Mysql(mut m) = server.verify_ca_url("lars_tls") else {
        unreachable!()
    };
    m.user = Some("lars_x509".into());
    let message = match Store::open_with(&StoreUrl::Mysql(m.clone()), options()).await {
        Ok(store) => panic!("opened {store:?} without the required client certificate"),
        Err(e) => chain(&e),
    };
    assert!(
        message.contains("Access denied for user 'lars_x509'"),
        "{message}"
    );
    m.tls.client_identity = Some(server.client_identity());
    let with_cert = StoreUrl::Mysql(m);
    assert!(with_cert.to_string().contains("&ssl-cert=/"), "{with_cert}");
    let store = Store::open_with(&with_cert, options()).await.unwrap();
    assert_eq!(store.load_routes().await.unwrap().routes[&key], vec![host]);
    store.close().await;

    // required: encrypted without checking the certificate, so even the wrong CA's server works.
    let required = with_tls(
        &server,
        "lars_tls",
        MysqlTls {
            mode: SslMode::Required,
            ca: None,
            client_identity: None,
        },
    );
    let store = Store::open_with(&required, options()).await.unwrap();
    store.ping().await.unwrap();
    store.close().await;

    // A CA file that is not there is named with its option when the store opens.
    let StoreUrl::Mysql(mut m) = server.verify_ca_url("lars_tls") else {
        unreachable!()
    };
    m.tls.ca = Some(server.ca().with_file_name("no-such-ca.pem"));
    match Store::open_with(&StoreUrl::Mysql(m), options()).await {
        Err(e @ StoreError::TlsFile { .. }) => {
            let text = e.to_string();
            assert!(
                text.contains("`ssl-ca`") && text.contains("no-such-ca.pem"),
                "{text}"
            );
        }
        Err(e) => panic!("unexpected error: {}", chain(&e)),
        Ok(store) => panic!("opened {store:?}"),
    }
}
