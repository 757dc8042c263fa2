//! `rostersync daemon` as a user runs it, for the tests that read what it serves and logs
//! (tests/status_page.rs, tests/logs.rs): the real binary on a config in a temp dir, its
//! stderr in `daemon.log`, stopped (SIGTERM, then kill) when the handle drops.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::scim::ScimServer;

pub struct Daemon {
    child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub port: u16,
}

/// `[platform]` (the scim server), `[state]` in `dir`, `[daemon] listen` on `port`.
pub fn header(scim: &ScimServer, dir: &Path, port: u16) -> String {
    format!(
        "[platform]\nkind = \"scim\"\nbase_url = \"{}\"\ntoken_env = \"PLATFORM_SCIM_TOKEN\"\n\n[state]\nurl = \"sqlite://{}\"\n\n[daemon]\nlisten = \"127.0.0.1:{port}\"\ngrace = \"30s\"\n",
        scim.base_url,
        dir.join("state.db").display()
    )
}

/// A connector on a local copy of the demo export (41 rows, 3 invalid on purpose;
/// max_invalid lets them through). `name` is written as a quoted TOML key, so any name goes.
pub fn connector(dir: &Path, name: &str, customer: &str, schedule: &str, timezone: &str) -> String {
    let exports = dir.join(format!("exports-{}", super::free_port()));
    std::fs::create_dir_all(&exports).unwrap();
    std::fs::copy(super::repo_root().join("examples/exports/employees_2026-11-20.csv"), exports.join("employees_2026-11-20.csv")).unwrap();
    let mapping = super::repo_root().join("mappings/demo.toml");
    let key = toml_string(name);
    format!(
        "\n[connectors.{key}]\ncustomer = {}\nschedule = \"{schedule}\"\ntimezone = \"{timezone}\"\nmapping = \"{}\"\n[connectors.{key}.local]\ndir = \"{}\"\n[connectors.{key}.file]\npath = \"employees_*.csv\"\npick = \"last-name\"\n[connectors.{key}.sync]\nmax_invalid = \"10%\"\n",
        toml_string(customer),
        mapping.display(),
        exports.display()
    )
}

/// A TOML basic string: quotes and backslashes escaped.
pub fn toml_string(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

impl Daemon {
    /// Starts the daemon on `config` with `args` before `daemon` (e.g. `--log-format json`),
    /// and waits for its port.
    pub fn start(config: &str, dir: tempfile::TempDir, port: u16, scim: &ScimServer, args: &[&str]) -> Daemon {
        Daemon::start_env(config, dir, port, &[("PLATFORM_SCIM_TOKEN", scim.token.as_str())], args)
    }

    /// `start`, with these environment variables (the tokens of several targets).
    pub fn start_env(config: &str, dir: tempfile::TempDir, port: u16, env: &[(&str, &str)], args: &[&str]) -> Daemon {
        let cfg = dir.path().join("connectors.toml");
        std::fs::write(&cfg, config).unwrap();
        let log = std::fs::File::create(dir.path().join("daemon.log")).unwrap();
        let child = Command::new(super::rostersync_bin())
            .arg("--config")
            .arg(&cfg)
            .args(args)
            .arg("daemon")
            .envs(env.iter().copied())
            .env("RUST_LOG", "rostersync=info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start rostersync daemon");
        let d = Daemon { child: Some(child), dir, port };
        super::wait_for_port(port, Duration::from_secs(30), &format!("rostersync daemon (log: {})", d.log()));
        d
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("connectors.toml")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("daemon.log")).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill").args([sig, &self.pid().to_string()]).status().expect("kill").success();
        assert!(ok, "kill {sig} failed");
    }

    /// The body of `GET path` (curl), with its status code.
    pub fn get(&self, path: &str) -> (u16, String) {
        let out = Command::new("curl")
            .args(["-sS", "-w", "\n%{http_code}", &format!("http://127.0.0.1:{}{path}", self.port)])
            .output()
            .expect("curl (apt-get install curl)");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or((&text, "0"));
        (code.trim().parse().unwrap_or(0), body.to_string())
    }

    /// Polls `cond` on the log until it holds; panics with the log at the deadline.
    pub fn wait_log(&self, what: &str, timeout: Duration, cond: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let log = self.log();
            if cond(&log) {
                return log;
            }
            if start.elapsed() > timeout {
                panic!("timed out waiting for {what}; log:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// SIGTERM, then waits for the exit; returns the exit code.
    pub fn stop(&mut self, timeout: Duration) -> Option<i32> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        let start = Instant::now();
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                return st.code();
            }
            if start.elapsed() > timeout {
                let _ = child.kill();
                panic!("the daemon did not exit within {timeout:?} of SIGTERM; log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
