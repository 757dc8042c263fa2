//! A throwaway rostersync project for CLI tests: connectors.toml pointing at a real SCIM
//! server, the demo mapping, an exports folder, and a SQLite state file, in a temp dir.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::scim::ScimServer;
use super::{repo_root, rostersync_bin};

pub const HEADER: &str =
    "Personnel Number,First Name,Last Name,Email,Language,Active,Department,Job Title,Manager ID,Location,Hire Date,Cost Center";

/// One employee row in the demo export layout.
pub fn row(id: u32, email: &str, active: bool, department: &str) -> String {
    format!("E{id:07},Ann{id},Lee{id},{email},fr,{},{department},Engineer,,Paris,2021-03-04,CC-1", if active { "Yes" } else { "No" })
}

/// `n` valid rows, ids 1..=n, emails annN@example.com.
pub fn rows(n: u32) -> Vec<String> {
    (1..=n).map(|i| row(i, &format!("ann{i}@example.com"), true, "Engineering")).collect()
}

pub struct Project {
    pub dir: tempfile::TempDir,
    pub token: String,
}

impl Project {
    /// A project with one connector `acme` reading `exports/employees_*.csv` locally.
    pub fn new(scim: &ScimServer, sync_section: &str) -> Project {
        Project::with_file_keys(scim, sync_section, "")
    }

    /// `new`, with more keys in the connector's `[file]` table (e.g. `max_size = "5MiB"`).
    pub fn with_file_keys(scim: &ScimServer, sync_section: &str, file_keys: &str) -> Project {
        Project::at(&scim.base_url, &scim.token, sync_section, file_keys)
    }

    /// `new` against any SCIM server (e.g. the second one, django-scim2): its root URL and
    /// bearer token.
    pub fn at(base_url: &str, token: &str, sync_section: &str, file_keys: &str) -> Project {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("mappings")).unwrap();
        std::fs::create_dir_all(dir.path().join("exports")).unwrap();
        std::fs::copy(repo_root().join("mappings/demo.toml"), dir.path().join("mappings/demo.toml")).unwrap();
        let cfg = format!(
            r#"[platform]
kind = "scim"
base_url = "{}"
token_env = "PLATFORM_SCIM_TOKEN"
bulk = "off"

[state]
url = "sqlite://state/rostersync.db"

[connectors.acme]
mapping = "mappings/demo.toml"

[connectors.acme.local]
dir = "exports"

[connectors.acme.file]
path = "employees_*.csv"
pick = "last-name"
{file_keys}

[connectors.acme.sync]
{sync_section}
"#,
            base_url
        );
        std::fs::write(dir.path().join("connectors.toml"), cfg).unwrap();
        Project { dir, token: token.to_string() }
    }

    /// Drops the connector's default `pick = "last-name"`, for file keys that set their own.
    pub fn replaced_pick(self) -> Project {
        let cfg = self.dir.path().join("connectors.toml");
        let text = std::fs::read_to_string(&cfg).unwrap().replacen("pick = \"last-name\"\n", "", 1);
        std::fs::write(&cfg, text).unwrap();
        self
    }

    /// Adds connector `name` reading the same `exports/employees_*.csv` with the demo
    /// mapping (a second connector on the same platform), with these `[sync]` keys.
    pub fn add_connector(&self, name: &str, sync_section: &str) {
        let cfg_path = self.dir.path().join("connectors.toml");
        let mut cfg = std::fs::read_to_string(&cfg_path).unwrap();
        cfg.push_str(&format!(
            "\n[connectors.{name}]\nmapping = \"mappings/demo.toml\"\n[connectors.{name}.local]\ndir = \"exports\"\n[connectors.{name}.file]\npath = \"employees_*.csv\"\npick = \"last-name\"\n[connectors.{name}.sync]\n{sync_section}\n"
        ));
        std::fs::write(&cfg_path, cfg).unwrap();
    }

    /// Replaces the `[connectors.NAME.sync]` table's keys (the table must be the file's last).
    pub fn set_last_sync_section(&self, name: &str, sync_section: &str) {
        let cfg_path = self.dir.path().join("connectors.toml");
        let cfg = std::fs::read_to_string(&cfg_path).unwrap();
        let head = format!("[connectors.{name}.sync]\n");
        let at = cfg.rfind(&head).expect("that connector's [sync] table") + head.len();
        std::fs::write(&cfg_path, format!("{}{sync_section}\n", &cfg[..at])).unwrap();
    }

    /// Replaces the default `[state]` table (SQLite in the project) with `state`, a whole
    /// table, header included (e.g. a PostgreSQL URL with its password_env).
    pub fn set_state(&self, state: &str) {
        let cfg = self.dir.path().join("connectors.toml");
        let text = std::fs::read_to_string(&cfg).unwrap();
        let default = "[state]\nurl = \"sqlite://state/rostersync.db\"\n";
        assert!(text.contains(default), "set_state: the project's [state] table was replaced already");
        std::fs::write(&cfg, text.replacen(default, state, 1)).unwrap();
    }

    /// `sync_json` for connector `name`.
    pub fn sync_json_of(&self, name: &str, extra: &[&str]) -> (i32, serde_json::Value) {
        let mut args = vec!["--json", "sync", name];
        args.extend_from_slice(extra);
        let out = self.run(&args);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not one JSON report ({e}):\n{}\nstderr:\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (out.status.code().unwrap_or(-1), v)
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `exports/NAME` with the header and these rows.
    pub fn export(&self, name: &str, rows: &[String]) -> PathBuf {
        let p = self.dir.path().join("exports").join(name);
        let mut s = String::from(HEADER);
        s.push('\n');
        for r in rows {
            s.push_str(r);
            s.push('\n');
        }
        std::fs::write(&p, s).unwrap();
        p
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(rostersync_bin());
        c.arg("--config").arg(self.dir.path().join("connectors.toml")).args(args).env("PLATFORM_SCIM_TOKEN", &self.token);
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run rostersync")
    }

    /// Runs `acme` with --json and parses the report printed on stdout.
    pub fn sync_json(&self, extra: &[&str]) -> (i32, serde_json::Value) {
        self.sync_json_of("acme", extra)
    }
}
