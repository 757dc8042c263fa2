//! TLS to the PostgreSQL state store (issue 17), against a real PostgreSQL with `ssl = on`
//! and a CA made for the test (tests/support/postgres.rs, the `openssl` CLI): the real
//! binary, a real scim2-server, `[state] ca_file` and the URL's sslmode as a user writes them.
//! Every refusal is checked for its exit code (3, an unreachable store; 2 for a bad CA file),
//! for naming the host and what to change, and for never showing the password.

use crate::support;

use std::process::Output;

use support::postgres::{PASSWORD, Postgres, TLS_HOST};
use support::project::{Project, rows};
use support::scim::ScimServer;

/// A project (one connector `acme`, 3 people in its export) whose `[state]` is `state`.
fn project(scim: &ScimServer, state: &str) -> Project {
    let p = Project::new(scim, "");
    p.export("employees_2026-01-01.csv", &rows(3));
    p.set_state(state);
    p
}

/// `[state]` for `url` with the password from a variable and, when given, `ca_file`.
fn state(url: &str, ca_file: Option<&std::path::Path>) -> String {
    let ca = ca_file.map(|c| format!("ca_file = \"{}\"\n", c.display())).unwrap_or_default();
    format!("[state]\nurl = \"{url}\"\npassword_env = \"ROSTERSYNC_PG_PASSWORD\"\n{ca}")
}

fn run(p: &Project, args: &[&str]) -> Output {
    p.command(args).env("ROSTERSYNC_PG_PASSWORD", PASSWORD).output().expect("run rostersync")
}

/// stdout and stderr together, asserted to be free of the password.
fn text_without_password(out: &Output) -> String {
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!text.contains(PASSWORD), "the database password reached the output:\n{text}");
    text
}

/// A run refused before it touched anything: exit `code`, the message's parts present.
fn assert_refused(out: &Output, code: i32, parts: &[&str]) {
    let text = text_without_password(out);
    eprintln!("refused as expected:\n{text}");
    assert_eq!(out.status.code(), Some(code), "{text}");
    for part in parts {
        assert!(text.contains(part), "expected {part:?} in:\n{text}");
    }
}

/// sslmode=verify-full with the server's own CA: a real first sync creates everyone, the
/// snapshot lands in PostgreSQL, and the server saw the rostersync connections over TLS.
#[test]
fn verify_full_with_the_servers_ca_syncs_end_to_end() {
    let pg = Postgres::with_tls_settings(&["log_connections=on"]);
    pg.create_db("tls");
    let scim = ScimServer::start();
    let p = project(&scim, &state(&pg.url_at(TLS_HOST, "tls", "sslmode=verify-full"), Some(&pg.ca_file())));

    let out = run(&p, &["--json", "sync", "acme"]);
    let text = text_without_password(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("not one JSON report ({e}):\n{text}"));
    assert_eq!(report["outcome"], "ok", "{report:#}");
    assert_eq!(report["counts"]["created"], 3, "{report:#}");
    assert_eq!(pg.psql("tls", "SELECT count(*) FROM snapshot WHERE connector = 'acme' AND active"), "3");

    // The second run reads that state back over TLS: nothing left to do.
    let out = run(&p, &["--json", "sync", "acme"]);
    let again: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text_without_password(&out)));
    assert_eq!(out.status.code(), Some(0), "{again:#}");
    assert_eq!(again["outcome"], "no-new-file", "{again:#}");

    // Every connection rostersync made was TLS (the server logs each one it authorizes).
    let log = pg.log();
    let ours: Vec<&str> =
        log.lines().filter(|l| l.contains("connection authorized") && l.contains("application_name=rostersync")).collect();
    assert!(!ours.is_empty(), "no rostersync connection in the server log:\n{log}");
    for l in &ours {
        assert!(l.contains("SSL enabled"), "a rostersync connection without TLS: {l}");
    }
    assert!(!log.contains(PASSWORD), "the server logged the password");
}

/// A CA that did not sign the server's certificate: refused as a TLS failure naming the
/// host and `[state] ca_file`, exit 3, nothing synced.
#[test]
fn a_wrong_ca_is_refused_naming_the_host_and_ca_file() {
    let pg = Postgres::with_tls();
    pg.create_db("tls");
    let scim = ScimServer::start();
    let p = project(&scim, &state(&pg.url_at(TLS_HOST, "tls", "sslmode=verify-full"), Some(&pg.other_ca_file())));
    let out = run(&p, &["--json", "sync", "acme"]);
    assert_refused(
        &out,
        3,
        &[&format!("TLS to the PostgreSQL state store at {TLS_HOST}:{} failed", pg.port), "not signed by a CA", "[state] ca_file"],
    );
    // Without ca_file, verify-full trusts only the public CAs: the test CA is unknown too.
    let p = project(&scim, &state(&pg.url_at(TLS_HOST, "tls", "sslmode=verify-full"), None));
    assert_refused(&run(&p, &["--json", "sync", "acme"]), 3, &["not signed by a CA", "[state] ca_file"]);
    assert_eq!(scim.users().len(), 0, "nothing reached the platform");
}

/// verify-full by an address the certificate does not list: refused, naming that host and
/// the two ways out; the second (sslmode=verify-ca, the CA alone) then works.
#[test]
fn verify_full_against_a_host_the_certificate_does_not_name_is_refused() {
    let pg = Postgres::with_tls();
    pg.create_db("tls");
    let scim = ScimServer::start();
    let p = project(&scim, &state(&pg.url_at("127.0.0.1", "tls", "sslmode=verify-full"), Some(&pg.ca_file())));
    assert_refused(
        &run(&p, &["--json", "sync", "acme"]),
        3,
        &[
            &format!("TLS to the PostgreSQL state store at 127.0.0.1:{} failed", pg.port),
            "does not name the host \"127.0.0.1\"",
            "sslmode=verify-ca",
        ],
    );
    let p = project(&scim, &state(&pg.url_at("127.0.0.1", "tls", "sslmode=verify-ca"), Some(&pg.ca_file())));
    let out = run(&p, &["--json", "sync", "acme"]);
    let text = text_without_password(&out);
    assert_eq!(out.status.code(), Some(0), "verify-ca checks the CA only, so the address is fine:\n{text}");
}

/// sslmode=require against a server without TLS: refused, saying the server offers none and
/// how to turn it on. `ca_file` alone (no sslmode) demands verified TLS the same way, rather
/// than sqlx's default of quietly falling back to plain text.
#[test]
fn require_against_a_server_without_tls_is_refused() {
    let plain = Postgres::start();
    plain.create_db("plain");
    let tls = Postgres::with_tls(); // only for a CA file
    let scim = ScimServer::start();
    let p = project(&scim, &state(&plain.url_at("127.0.0.1", "plain", "sslmode=require"), None));
    let refused =
        [&format!("TLS to the PostgreSQL state store at 127.0.0.1:{} failed", plain.port) as &str, "does not offer TLS", "ssl = on"];
    assert_refused(&run(&p, &["--json", "sync", "acme"]), 3, &refused);
    let p = project(&scim, &state(&plain.url_at("127.0.0.1", "plain", ""), Some(&tls.ca_file())));
    assert_refused(&run(&p, &["status"]), 3, &refused);
    assert_eq!(
        plain.psql("plain", "SELECT count(*) FROM pg_tables WHERE tablename = 'snapshot'"),
        "0",
        "nothing was migrated over plain text"
    );
}

/// A CA file that is missing or not PEM: a configuration error (exit 2) naming the file,
/// before any connection.
#[test]
fn an_unreadable_or_non_pem_ca_file_is_a_config_error_naming_it() {
    let pg = Postgres::with_tls();
    pg.create_db("tls");
    let scim = ScimServer::start();
    let url = pg.url_at(TLS_HOST, "tls", "sslmode=verify-full");
    let missing = std::env::temp_dir().join("rostersync-no-such-ca.pem");
    let p = project(&scim, &state(&url, Some(&missing)));
    assert_refused(
        &run(&p, &["status"]),
        2,
        &[&format!("the CA certificate {} named by [state] ca_file: cannot read it", missing.display())],
    );
    let not_pem = p.path().join("ca.pem");
    std::fs::write(&not_pem, "this is not a certificate\n").unwrap();
    let p2 = project(&scim, &state(&url, Some(&not_pem)));
    assert_refused(&run(&p2, &["status"]), 2, &[&format!("{}", not_pem.display()), "holds no PEM certificate"]);
}
