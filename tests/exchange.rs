//! What the customer is told: the result file written back to their real SFTP server (sshd)
//! after a sync to scim2-server, read back from the server's folder; and the email notice
//! received by a real SMTP server (aiosmtpd from .venv).

use crate::support;

use support::project::{HEADER, row, rows};
use support::scim::ScimServer;
use support::sshd::Sshd;

struct Setup {
    sshd: Sshd,
    scim: ScimServer,
    dir: tempfile::TempDir,
}

impl Setup {
    /// A connector on sshd with these extra tables after its `[file]` one.
    fn new(extra: &str) -> Setup {
        Setup::with("", extra)
    }

    /// `new`, with top-level tables (`[smtp]`) before the connector's.
    fn new_with_top(top: &str) -> Setup {
        let (head, tail) = top.split_once("[connectors.").map(|(h, t)| (h, format!("[connectors.{t}"))).unwrap_or((top, String::new()));
        Setup::with(head, &tail)
    }

    fn with(top: &str, extra: &str) -> Setup {
        let sshd = Sshd::start();
        let key = sshd.client_key("ed25519", "");
        let scim = ScimServer::start();
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("mappings")).unwrap();
        std::fs::copy(support::repo_root().join("mappings/demo.toml"), dir.path().join("mappings/demo.toml")).unwrap();
        std::fs::create_dir_all(sshd.data().join("exports")).unwrap();
        let data = sshd.data().display().to_string();
        let cfg = format!(
            r#"[platform]
kind = "scim"
base_url = "{base}"
token_env = "PLATFORM_SCIM_TOKEN"

[state]
url = "sqlite://state/rostersync.db"

{top}
[connectors.acme]
mapping = "mappings/demo.toml"

{source}
[connectors.acme.sync]
max_invalid = "50%"

{extra}
"#,
            base = scim.base_url,
            source = sshd.acme_source(&key, "exports/employees_*.csv"),
            extra = extra.replace("{data}", &data),
        );
        std::fs::write(dir.path().join("connectors.toml"), cfg).unwrap();
        Setup { sshd, scim, dir }
    }

    fn export(&self, name: &str, rows: &[String]) {
        std::fs::write(self.sshd.data().join("exports").join(name), format!("{HEADER}\n{}\n", rows.join("\n"))).unwrap();
    }

    fn command(&self, args: &[&str]) -> std::process::Command {
        let mut c = std::process::Command::new(support::rostersync_bin());
        c.arg("--config").arg(self.dir.path().join("connectors.toml")).args(args).env("PLATFORM_SCIM_TOKEN", &self.scim.token);
        c
    }

    fn sync(&self) -> (i32, serde_json::Value) {
        let out = self.command(&["--json", "sync", "acme"]).output().unwrap();
        let v = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!("not one JSON report ({e}): {}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
        });
        (out.status.code().unwrap(), v)
    }
}

#[test]
fn the_result_file_lists_the_rows_not_synced_and_a_summary_on_the_customers_server() {
    let s = Setup::new("[connectors.acme.result]\npath = \"{data}/results/{file}.result.csv\"\n");
    let mut r = rows(4);
    r[2] = row(3, "ann3..x@example.com", true, "Engineering");
    s.export("employees_01.csv", &r);
    let (code, report) = s.sync();
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["counts"]["invalid"], 1, "{report}");
    assert_eq!(s.scim.users().len(), 3);

    let result = s.sshd.data().join("results/employees_01.csv.result.csv");
    let text = std::fs::read_to_string(&result).unwrap_or_else(|e| panic!("{}: {e}", result.display()));
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "line,id,outcome,reason", "{text}");
    assert!(lines[1].starts_with("4,E0000003,invalid,"), "{text}");
    assert!(lines[1].contains("Email"), "the column is named: {text}");
    assert!(lines[2].starts_with(",,summary,\"4 rows read, 3 valid, 1 invalid; 3 created"), "{text}");
    assert!(lines[2].ends_with("; synced\""), "{text}");
    assert_eq!(lines.len(), 3, "{text}");
    // Written whole: no temporary file is left beside it.
    let names: Vec<String> =
        std::fs::read_dir(s.sshd.data().join("results")).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(names, vec!["employees_01.csv.result.csv".to_string()]);

    // A clean file writes nothing with when = "problems" (the default).
    s.export("employees_02.csv", &rows(4));
    let (code, report) = s.sync();
    assert_eq!(code, 0, "{report}");
    assert!(!s.sshd.data().join("results/employees_02.csv.result.csv").exists());
}

#[test]
fn a_result_that_cannot_be_written_is_a_warning_and_the_sync_stands() {
    // The results folder is a file on the server: the folder cannot be made.
    let s = Setup::new("[connectors.acme.result]\npath = \"{data}/blocked/{run}.csv\"\nwhen = \"always\"\n");
    std::fs::write(s.sshd.data().join("blocked"), "not a folder").unwrap();
    s.export("employees_01.csv", &rows(2));
    let (code, report) = s.sync();
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["outcome"], "ok");
    assert_eq!(s.scim.users().len(), 2);
}

/// aiosmtpd from .venv, storing what it receives in a Maildir.
struct SmtpServer {
    child: std::process::Child,
    port: u16,
    maildir: tempfile::TempDir,
}

impl SmtpServer {
    fn start() -> SmtpServer {
        let python = support::repo_root().join(".venv/bin/python");
        let ok = std::process::Command::new(&python).args(["-c", "import aiosmtpd"]).status().is_ok_and(|s| s.success());
        assert!(
            ok,
            "aiosmtpd is not installed in .venv; install it with: .venv/bin/pip install aiosmtpd==1.4.6 (scripts/install-test-deps.sh does)"
        );
        let port = support::free_port();
        let maildir = tempfile::tempdir().unwrap();
        let child = std::process::Command::new(python)
            .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}"), "-c", "aiosmtpd.handlers.Mailbox"])
            .arg(maildir.path().join("mail"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        support::wait_for_port(port, std::time::Duration::from_secs(20), "aiosmtpd");
        SmtpServer { child, port, maildir }
    }

    /// Every message received, as text.
    fn received(&self) -> Vec<String> {
        let mut out = Vec::new();
        for sub in ["new", "cur"] {
            if let Ok(entries) = std::fs::read_dir(self.maildir.path().join("mail").join(sub)) {
                for e in entries {
                    out.push(std::fs::read_to_string(e.unwrap().path()).unwrap());
                }
            }
        }
        out
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_customers_contact_gets_one_email_per_problem_received_by_a_real_smtp_server() {
    let smtp = SmtpServer::start();
    let extra = format!(
        "[smtp]\nhost = \"127.0.0.1\"\nport = {}\nfrom = \"Rostersync <rostersync@example.test>\"\ntls = \"none\"\n\n[connectors.acme.notify]\nemail = [\"hr-it@customer.example\"]\n",
        smtp.port
    );
    // [smtp] is a top-level table: put it before the connectors.
    let s = Setup::new_with_top(&extra);
    let mut r = rows(4);
    r[2] = row(3, "ann3..x@example.com", true, "Engineering");
    s.export("employees_01.csv", &r);
    let (code, report) = s.sync();
    assert_eq!(code, 0, "{report}");
    let mail = smtp.received();
    assert_eq!(mail.len(), 1, "{mail:?}");
    let m = &mail[0];
    assert!(m.contains("To: hr-it@customer.example"), "{m}");
    assert!(m.contains("1 row(s) of employees_01.csv were not synced"), "{m}");
    assert!(m.contains("line 4: "), "{m}");
    assert!(m.contains("connector acme"), "{m}");

    // The same file again: the same problem, not told twice.
    let (code, report) = {
        let out = s.command(&["--json", "sync", "acme", "--force"]).output().unwrap();
        (out.status.code().unwrap(), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    assert_eq!(code, 0, "{report}");
    assert_eq!(smtp.received().len(), 1);

    // Another file with another invalid row: a new problem, a new email.
    let mut r = rows(4);
    r[1] = row(2, "ann2..x@example.com", true, "Engineering");
    s.export("employees_02.csv", &r);
    let (code, report) = s.sync();
    assert_eq!(code, 0, "{report}");
    let mail = smtp.received();
    assert_eq!(mail.len(), 2, "{mail:?}");
    assert!(mail.iter().any(|m| m.contains("employees_02.csv") && m.contains("line 3: ")), "{mail:?}");
}
