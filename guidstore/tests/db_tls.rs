//! TLS to the database, against private servers with TLS on and certificates made at test time
//! (a PostgreSQL cluster, a mariadbd): every `sslmode` / `ssl-mode`, what each checks (a wrong CA
//! and a certificate for another host name are refused by the modes that verify, and accepted by
//! those that do not), that the store's sessions really are encrypted (`pg_stat_ssl`, MariaDB's
//! `Ssl_accepts`), a store round trip over TLS, and one clear error line for each mistake.

use std::path::Path;

use guidstore::{Code, Error, Guid, IfMatch, ManualClock, NewRecord, Options, Patch, Store};
use guidstore_testkit::mariadb::MariadbServer;
use guidstore_testkit::pki::TestCa;
use guidstore_testkit::postgres::PostgresCluster;

const NOW: u64 = 1_700_000_000;
const G1: &str = "9094E4C980C74043A4B586B420E69DDF";

fn options() -> Options {
    Options::default().clock(ManualClock::new(NOW)).pool_size(2)
}

/// What could not be set up: skipped with a loud line, or a failure under
/// `GUIDSTORE_REQUIRE_SERVICES=1`.
fn unavailable<T>(what: &str, error: std::io::Error) -> Option<T> {
    let message = format!("SKIPPED: {what} cannot be started here: {error}");
    if std::env::var("GUIDSTORE_REQUIRE_SERVICES").is_ok_and(|v| v == "1") {
        panic!("{message} (GUIDSTORE_REQUIRE_SERVICES=1)");
    }
    eprintln!("{message}");
    None
}

/// A CA, and a private PostgreSQL with TLS on whose certificate (issued by that CA) names only
/// `localhost`: through `127.0.0.1` its name does not match.
fn tls_cluster(dir: &Path) -> Option<(PostgresCluster, String)> {
    let ca = TestCa::new("guidstore test CA");
    let issued = ca.server_for("guidstore test PostgreSQL", &["localhost"]);
    let cluster = match PostgresCluster::start_tls(&issued.cert_pem, &issued.key_pem) {
        Ok(cluster) => cluster,
        Err(error) => return unavailable("a private PostgreSQL", error),
    };
    let ca_file = ca.write(&dir.join("ca.pem"));
    Some((cluster, ca_file.display().to_string()))
}

/// `(sessions, all encrypted)` of guidstore's connections to database `db`.
fn guidstore_sessions(cluster: &PostgresCluster, db: &str) -> (i64, bool) {
    let answer = cluster
        .psql(
            "postgres",
            &format!(
                "SELECT count(*), coalesce(bool_and(s.ssl), false) FROM pg_stat_ssl s \
                 JOIN pg_stat_activity a USING (pid) \
                 WHERE a.datname = '{db}' AND a.application_name = 'guidstore'"
            ),
        )
        .unwrap();
    let (count, ssl) = answer.split_once('|').unwrap();
    (count.parse().unwrap(), ssl == "t")
}

/// Create, read, patch under If-Match, delete, and persistence across reopening.
fn round_trip(url: &str) {
    let store = Store::open_url(url, options()).unwrap();
    let guid = Guid::parse(G1).unwrap();
    let created = store
        .create(NewRecord::parse(format!(r#"{{"guid":"{G1}","user":"tls"}}"#).as_bytes(), None, NOW).unwrap())
        .unwrap();
    assert_eq!(store.get(&guid).unwrap().to_json(), created.to_json());
    let patch = Patch::parse(br#"{"user":"tls2"}"#, &guid, NOW).unwrap();
    let updated = store.update(&guid, patch, Some(IfMatch::parse(&created.etag()))).unwrap();
    assert_eq!(updated.metadata()["user"], "tls2");
    store.close().unwrap();
    let store = Store::open_url(url, options()).unwrap();
    assert_eq!(store.get(&guid).unwrap().to_json(), updated.to_json());
    store.delete(&guid, Some(IfMatch::parse(&updated.etag()))).unwrap();
    assert!(matches!(store.get(&guid), Err(Error::NotFound(_))));
}

/// The error of opening `url`, as one line.
fn open_error(url: &str) -> String {
    let error = Store::open_url(url, options().timeout(std::time::Duration::from_secs(5))).unwrap_err();
    let text = error.to_string();
    assert!(!text.contains('\n'), "{text}");
    // A refused certificate or a server without TLS is a storage error, like any other failure
    // to connect (transient: the server may be being reconfigured).
    assert!(matches!(error.code(), Code::Internal | Code::Unavailable), "{text}");
    text
}

#[test]
fn postgres_sslmodes_encrypt_and_verify_as_libpq_does() {
    let dir = tempfile::tempdir().unwrap();
    let Some((cluster, ca)) = tls_cluster(dir.path()) else { return };
    let port = cluster.port();
    for db in ["required", "preferred", "plain", "verified"] {
        cluster.create_database(db).unwrap();
    }

    // require: encrypted, the certificate not checked (its name does not match 127.0.0.1 and
    // its CA is unknown). The store's round trip runs over it.
    let url = format!("postgres://postgres@127.0.0.1:{port}/required?sslmode=require");
    round_trip(&url);
    let store = Store::open_url(&url, options()).unwrap();
    assert!(
        matches!(guidstore_sessions(&cluster, "required"), (1.., true)),
        "{:?}",
        guidstore_sessions(&cluster, "required")
    );
    drop(store);

    // prefer (the default): TLS, since the server offers it.
    let store = Store::open_url(&cluster.url("preferred"), options()).unwrap();
    assert!(matches!(guidstore_sessions(&cluster, "preferred"), (1.., true)));
    drop(store);

    // disable: plain.
    let store = Store::open_url(&format!("{}?sslmode=disable", cluster.url("plain")), options()).unwrap();
    assert!(matches!(guidstore_sessions(&cluster, "plain"), (1.., false)));
    drop(store);

    // verify-full with the right CA and the certificate's host name; verify-ca checks the chain
    // only, so 127.0.0.1 passes; require with a root file checks the chain as verify-ca does.
    for url in [
        format!("postgres://postgres@localhost:{port}/verified?sslmode=verify-full&sslrootcert={ca}"),
        format!("postgres://postgres@127.0.0.1:{port}/verified?sslmode=verify-ca&sslrootcert={ca}"),
        format!("postgres://postgres@127.0.0.1:{port}/verified?sslmode=require&sslrootcert={ca}"),
    ] {
        let store = Store::open_url(&url, options()).unwrap_or_else(|e| panic!("{url}: {e}"));
        assert!(matches!(guidstore_sessions(&cluster, "verified"), (1.., true)), "{url}");
        drop(store);
    }

    // verify-full through a name the certificate does not hold.
    let error =
        open_error(&format!("postgres://postgres@127.0.0.1:{port}/verified?sslmode=verify-full&sslrootcert={ca}"));
    assert!(
        error.contains("cannot connect to") && error.contains("certificate not valid for name \"127.0.0.1\""),
        "{error}"
    );

    // A CA that did not issue the server's certificate: refused by every mode that verifies.
    let wrong = TestCa::new("another CA").write(&dir.path().join("wrong.pem")).display().to_string();
    for mode in ["verify-full", "verify-ca", "require"] {
        let error =
            open_error(&format!("postgres://postgres@localhost:{port}/verified?sslmode={mode}&sslrootcert={wrong}"));
        assert!(error.contains("invalid peer certificate") && error.contains("UnknownIssuer"), "{mode}: {error}");
    }

    // The system's roots do not know the test CA either.
    let error = open_error(&format!("postgres://postgres@localhost:{port}/verified?sslmode=verify-full"));
    assert!(error.contains("invalid peer certificate") || error.contains("no system root"), "{error}");
}

#[test]
fn postgres_require_against_a_server_without_tls_fails_and_disable_works() {
    let cluster = match PostgresCluster::start() {
        Ok(cluster) => cluster,
        Err(error) => return unavailable("a private PostgreSQL", error).unwrap_or(()),
    };
    cluster.create_database("plain").unwrap();
    let error = open_error(&format!("{}?sslmode=require", cluster.url("plain")));
    assert!(error.contains("server does not support TLS"), "{error}");
    // prefer falls back to plain; disable is plain.
    for url in [cluster.url("plain"), format!("{}?sslmode=disable", cluster.url("plain"))] {
        let store = Store::open_url(&url, options()).unwrap();
        assert!(matches!(guidstore_sessions(&cluster, "plain"), (1.., false)), "{url}");
        drop(store);
    }
}

#[test]
fn bad_tls_parameters_are_one_line_without_the_password() {
    for (url, expected) in [
        ("postgres://app:hunter2@127.0.0.1:1/db?sslmode=allow", "sslmode=allow is not supported"),
        (
            "postgres://app:hunter2@127.0.0.1:1/db?sslmode=verify-full&sslrootcert=/no/such/ca.pem",
            "cannot read sslrootcert /no/such/ca.pem",
        ),
        ("postgres://app:hunter2@127.0.0.1:1/db?sslrootcert=/tmp/ca.pem", "only used with sslmode=require"),
        ("mysql://app:hunter2@127.0.0.1:1/db?ssl-mode=SOMETIMES", "unknown ssl-mode \"SOMETIMES\""),
        (
            "mysql://app:hunter2@127.0.0.1:1/db?ssl-mode=VERIFY_IDENTITY&ssl-ca=/no/such/ca.pem",
            "cannot read sslrootcert",
        ),
        ("mysql://app:hunter2@127.0.0.1:1/db?ssl-mode=VERIFY_CA", "VERIFY_CA is not available on MariaDB/MySQL"),
        ("mysql://app:hunter2@127.0.0.1:1/db?ssl-mode=REQUIRED&ssl-ca=/tmp/ca.pem", "VERIFY_CA is not available"),
        ("mysql://app:hunter2@127.0.0.1:1/db?require_ssl=true", "require_ssl is not used: TLS is set with ssl-mode="),
    ] {
        let error = open_error(url);
        assert!(error.contains(expected), "{url}: {error}");
        assert!(matches!(Store::open_url(url, options()), Err(Error::InvalidUrl { .. })), "{url}");
        assert!(!error.contains("hunter2"), "{error}");
    }
}

/// Global `Ssl_accepts` of a private MariaDB: TLS handshakes it accepted (its own admin client
/// connects without TLS, so every one is the store's).
fn ssl_accepts(server: &MariadbServer) -> u64 {
    let answer = server.mariadb("SHOW GLOBAL STATUS LIKE 'Ssl_accepts'").unwrap();
    answer.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn mysql_ssl_modes_encrypt_and_verify() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("guidstore test CA");
    let issued = ca.server_for("guidstore test MariaDB", &["localhost"]);
    let server = match MariadbServer::start_tls(&issued.cert_pem, &issued.key_pem) {
        Ok(server) => server,
        Err(error) => return unavailable("a private MariaDB", error).unwrap_or(()),
    };
    let port = server.port();
    let ca = ca.write(&dir.path().join("ca.pem")).display().to_string();
    server.create_database("tls").unwrap();

    // REQUIRED: encrypted, not verified; the round trip runs over it.
    let before = ssl_accepts(&server);
    round_trip(&format!("mysql://root@127.0.0.1:{port}/tls?ssl-mode=REQUIRED"));
    assert!(ssl_accepts(&server) > before);

    // PREFERRED (the default) uses TLS when offered; DISABLED does not.
    let before = ssl_accepts(&server);
    let store = Store::open_url(&server.url("tls"), options()).unwrap();
    store.stats().unwrap();
    assert!(ssl_accepts(&server) > before);
    drop(store);
    let before = ssl_accepts(&server);
    let store = Store::open_url(&format!("{}?ssl-mode=DISABLED", server.url("tls")), options()).unwrap();
    store.stats().unwrap();
    assert_eq!(ssl_accepts(&server), before);
    drop(store);

    // VERIFY_IDENTITY with the right CA and name.
    let url = format!("mysql://root@localhost:{port}/tls?ssl-mode=VERIFY_IDENTITY&ssl-ca={ca}");
    let before = ssl_accepts(&server);
    let store = Store::open_url(&url, options()).unwrap_or_else(|e| panic!("{url}: {e}"));
    store.stats().unwrap();
    assert!(ssl_accepts(&server) > before, "{url}");
    drop(store);

    // A name the certificate does not hold, and a CA that did not issue it.
    let error = open_error(&format!("mysql://root@127.0.0.1:{port}/tls?ssl-mode=VERIFY_IDENTITY&ssl-ca={ca}"));
    assert!(
        error.contains("cannot connect to") && error.contains("certificate not valid for name \"127.0.0.1\""),
        "{error}"
    );
    let wrong = TestCa::new("another CA").write(&dir.path().join("wrong.pem")).display().to_string();
    let error = open_error(&format!("mysql://root@localhost:{port}/tls?ssl-mode=VERIFY_IDENTITY&ssl-ca={wrong}"));
    assert!(error.contains("invalid peer certificate") && error.contains("UnknownIssuer"), "{error}");
}

#[test]
fn mysql_required_against_a_server_without_tls_fails() {
    let server = match MariadbServer::start() {
        Ok(server) => server,
        Err(error) => return unavailable("a private MariaDB", error).unwrap_or(()),
    };
    server.create_database("plain").unwrap();
    let error = open_error(&format!("{}?ssl-mode=REQUIRED", server.url("plain")));
    assert!(error.contains("cannot connect to") && error.contains("SSL"), "{error}");
    // PREFERRED, the default, connects without; so does DISABLED.
    for url in [server.url("plain"), format!("{}?ssl-mode=DISABLED", server.url("plain"))] {
        Store::open_url(&url, options()).unwrap().stats().unwrap();
    }
    assert_eq!(ssl_accepts(&server), 0);
}
