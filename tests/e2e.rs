//! The whole path, for real: an OpenSSH sftp server holding the export → rostersync (the
//! binary) → scim2-server, with the SQLite state in a temp dir. A pass-through proxy in
//! front of the SCIM server records every request, so "no write" is checked on the wire.

use crate::support;

use std::collections::HashMap;

use support::fault_proxy::{Fault, FaultProxy};
use support::project::{HEADER, row, rows};
use support::scim::ScimServer;
use support::sshd::Sshd;

const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

struct Setup {
    sshd: Sshd,
    scim: ScimServer,
    proxy: FaultProxy,
    dir: tempfile::TempDir,
}

impl Setup {
    fn new() -> Setup {
        let sshd = Sshd::start();
        let key = sshd.client_key("ed25519", "");
        let scim = ScimServer::start();
        let proxy = FaultProxy::start(scim.port, |_, _, _| Fault::Pass);
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("mappings")).unwrap();
        std::fs::copy(support::repo_root().join("mappings/demo.toml"), dir.path().join("mappings/demo.toml")).unwrap();
        std::fs::create_dir_all(sshd.data().join("exports")).unwrap();
        let cfg = format!(
            r#"[platform]
kind = "scim"
base_url = "{base}"
token_env = "PLATFORM_SCIM_TOKEN"

[state]
url = "sqlite://state/rostersync.db"

[connectors.acme]
customer = "Acme Corp"
schedule = "daily 02:00"
timezone = "Europe/Paris"
mapping = "mappings/demo.toml"

{source}"#,
            base = proxy.base_url,
            source = sshd.acme_source(&key, "exports/employees_*.csv"),
        );
        std::fs::write(dir.path().join("connectors.toml"), cfg).unwrap();
        Setup { sshd, scim, proxy, dir }
    }

    fn export(&self, name: &str, rows: &[String]) {
        let body = format!("{HEADER}\n{}\n", rows.join("\n"));
        std::fs::write(self.sshd.data().join("exports").join(name), body).unwrap();
    }

    fn sync(&self, extra: &[&str]) -> (i32, serde_json::Value) {
        let (code, r, _) = self.sync_logged(extra);
        (code, r)
    }

    /// As `sync`, with debug logs, returning them too.
    fn sync_logged(&self, extra: &[&str]) -> (i32, serde_json::Value, String) {
        let out = std::process::Command::new(support::rostersync_bin())
            .arg("--config")
            .arg(self.dir.path().join("connectors.toml"))
            .args(["--json", "sync", "acme"])
            .args(extra)
            .env("PLATFORM_SCIM_TOKEN", &self.scim.token)
            .env("RUST_LOG", "rostersync=debug")
            .output()
            .unwrap();
        let v = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!("not one JSON report ({e}): {}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
        });
        (out.status.code().unwrap(), v, String::from_utf8_lossy(&out.stderr).into_owned())
    }

    /// Points the connector at another SFTP port (a proxy in front of sshd).
    fn use_sftp_port(&self, port: u16) {
        let path = self.dir.path().join("connectors.toml");
        let cfg = std::fs::read_to_string(&path).unwrap();
        let cfg = cfg
            .lines()
            .map(|l| if l.starts_with("port = ") { format!("port = {port}") } else { l.to_string() })
            .collect::<Vec<_>>()
            .join("\n");
        std::fs::write(path, cfg).unwrap();
    }

    fn users(&self) -> HashMap<String, serde_json::Value> {
        self.scim.users().into_iter().map(|u| (u["externalId"].as_str().unwrap().to_string(), u)).collect()
    }

    /// Write requests (anything but GET) the platform received since request number `from`.
    fn writes_since(&self, from: usize) -> Vec<String> {
        self.proxy.seen().into_iter().skip(from).filter(|s| s.method != "GET").map(|s| format!("{} {}", s.method, s.path)).collect()
    }
}

#[test]
fn sftp_to_scim_first_sync_no_write_rerun_then_one_update_and_one_deactivation() {
    let s = Setup::new();
    s.export("employees_2026-11-20.csv", &rows(10));

    // First sync: everyone is created, with the mapped fields.
    let (code, r) = s.sync(&[]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["outcome"], "ok");
    assert_eq!(r["counts"]["rows"], 10);
    assert_eq!(r["counts"]["created"], 10);
    assert!(r["file"]["path"].as_str().unwrap().ends_with("employees_2026-11-20.csv"));
    assert_eq!(r["file"]["sha256"].as_str().unwrap().len(), 64);
    let users = s.users();
    assert_eq!(users.len(), 10);
    let u3 = &users["E0000003"];
    assert_eq!(u3["userName"], "ann3@example.com");
    assert_eq!(u3["name"]["givenName"], "Ann3");
    assert_eq!(u3["name"]["familyName"], "Lee3");
    assert_eq!(u3["emails"][0]["value"], "ann3@example.com");
    assert_eq!(u3["preferredLanguage"], "fr");
    assert_eq!(u3["active"], true);
    assert_eq!(u3[ENTERPRISE]["department"], "Engineering");
    assert_eq!(u3[ENTERPRISE]["employeeNumber"], "E0000003");

    // The same file again: no new file, and nothing written to the platform.
    let before = s.proxy.seen().len();
    let (code, r) = s.sync(&[]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["outcome"], "no-new-file");
    // By hand, the one way to take the same file again is said.
    assert!(r["message"].as_str().unwrap().ends_with("was already synced (same size and time); use --force to sync it again"), "{r}");
    assert_eq!(s.writes_since(before), Vec::<String>::new());
    // Forced through the whole pipeline, the same data still sends no write request.
    let before = s.proxy.seen().len();
    let (code, r) = s.sync(&["--force"]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["counts"]["unchanged"], 10);
    assert_eq!(s.writes_since(before), Vec::<String>::new());

    // Next day: person 2's email changed, person 5 left.
    let mut next: Vec<String> = rows(10);
    next[1] = row(2, "ann.two@example.com", true, "Engineering");
    next.remove(4);
    s.export("employees_2026-11-21.csv", &next);
    let before = s.proxy.seen().len();
    let (code, r) = s.sync(&[]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["counts"]["updated"], 1, "{r}");
    assert_eq!(r["counts"]["deactivated"], 1, "{r}");
    assert_eq!(r["counts"]["unchanged"], 8, "{r}");
    // scim2-server offers /Bulk: the two operations travel in one request.
    let writes = s.writes_since(before);
    assert!(writes == ["POST /Bulk"] || writes.len() == 2, "only the two operations are sent: {writes:?}");
    let users = s.users();
    assert_eq!(users.len(), 10, "deactivated, not deleted");
    assert_eq!(users["E0000002"]["userName"], "ann.two@example.com");
    assert_eq!(users["E0000002"]["emails"][0]["value"], "ann.two@example.com");
    assert_eq!(users["E0000005"]["active"], false);
    assert_eq!(users["E0000005"]["userName"], "ann5@example.com", "a deactivation changes nothing else");
    assert_eq!(users["E0000001"]["active"], true);
}

#[test]
fn a_wrong_host_key_fails_with_exit_3_and_pushes_nothing() {
    let s = Setup::new();
    s.export("employees_2026-11-20.csv", &rows(3));
    let cfg_path = s.dir.path().join("connectors.toml");
    let cfg = std::fs::read_to_string(&cfg_path).unwrap();
    let wrong = "SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s";
    std::fs::write(&cfg_path, cfg.replace(&s.sshd.fingerprint("ed25519"), wrong)).unwrap();
    let (code, r) = s.sync(&[]);
    assert_eq!(code, 3, "{r}");
    assert_eq!(r["outcome"], "failed");
    let msg = r["message"].as_str().unwrap();
    assert!(msg.contains(&s.sshd.fingerprint("ed25519")), "the offered fingerprint is shown: {msg}");
    assert!(s.scim.users().is_empty());
}

#[test]
fn a_download_cut_mid_file_never_parses_as_a_short_export() {
    let s = Setup::new();
    s.export("employees_2026-11-20.csv", &rows(200));
    let (code, r) = s.sync(&[]);
    assert_eq!((code, &r["counts"]["created"]), (0, &serde_json::json!(200)), "{r}");

    // Day 2: the same 200 people in a 4 MB file (a wide column the mapping does not read),
    // so the parser, which follows the download, has read part of it when the cut comes.
    let pad = "x".repeat(20_000);
    let body = format!("{HEADER},Notes\n{}\n", rows(200).iter().map(|r| format!("{r},{pad}")).collect::<Vec<_>>().join("\n"));
    std::fs::write(s.sshd.data().join("exports/employees_2026-11-21.csv"), &body).unwrap();

    // Every connection is cut after 1 MiB: the run fails as a connection error, and the
    // ~50 people parsed before the cut are not read as the whole export (which would
    // deactivate the other 150).
    s.use_sftp_port(support::cutting_proxy(s.sshd.port, 1 << 20, usize::MAX));
    let before = s.proxy.seen().len();
    let (code, r, logs) = s.sync_logged(&[]);
    assert_eq!(code, 3, "{r}\n{logs}");
    assert_eq!(r["outcome"], "failed");
    assert!(r["message"].as_str().unwrap().contains("employees_2026-11-21.csv"), "{r}");
    assert_eq!(s.writes_since(before), Vec::<String>::new());
    assert!(s.users().values().all(|u| u["active"] == true));

    // Cut once: the download resumes where it stopped, the parse goes on through the cut,
    // and the run reads all 200 people as unchanged.
    s.use_sftp_port(support::cutting_proxy(s.sshd.port, 1 << 20, 1));
    let before = s.proxy.seen().len();
    let (code, r, logs) = s.sync_logged(&[]);
    assert_eq!(code, 0, "{r}\n{logs}");
    assert_eq!((&r["counts"]["rows"], &r["counts"]["unchanged"]), (&serde_json::json!(200), &serde_json::json!(200)), "{r}");
    assert!(logs.contains("reconnecting") && logs.contains("to resume"), "the transfer was cut and resumed: {logs}");
    assert!(logs.contains("parsed and mapped while it downloaded"), "{logs}");
    assert_eq!(s.writes_since(before), Vec::<String>::new());
}

/// Counts count changes: a person inactive in the file two runs in a row is deactivated
/// once. The second time, their row changed otherwise (a department corrected after they
/// left): the account is updated, and that is no deactivation.
#[test]
fn a_person_inactive_two_runs_in_a_row_is_deactivated_once() {
    let s = Setup::new();
    s.export("employees_2026-11-20.csv", &rows(10));
    let (code, r) = s.sync(&[]);
    assert_eq!((code, r["counts"]["created"].as_u64()), (0, Some(10)), "{r}");

    let mut left = rows(10);
    left[2] = row(3, "ann3@example.com", false, "Engineering");
    s.export("employees_2026-11-21.csv", &left);
    let (code, r) = s.sync(&[]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["counts"]["deactivated"], 1, "{r}");
    assert_eq!(s.users()["E0000003"]["active"], false);

    left[2] = row(3, "ann3@example.com", false, "Sales");
    s.export("employees_2026-11-22.csv", &left);
    let (code, r) = s.sync(&[]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["counts"]["deactivated"], 0, "already inactive: {r}");
    assert_eq!(r["counts"]["updated"], 1, "{r}");
    assert_eq!(r["counts"]["unchanged"], 9, "{r}");
    let users = s.users();
    assert_eq!(users["E0000003"]["active"], false);
    assert_eq!(users["E0000003"][ENTERPRISE]["department"], "Sales");
}
