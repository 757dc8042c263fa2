//! The second real SCIM 2.0 server for tests: django-scim2 (PyPI), run by the smallest
//! Django project that hosts it (tests/support/django_scim: a user model, a temporary
//! SQLite file, a bearer-token check). It behaves unlike scim2-server in ways platforms do:
//! no /Bulk; PATCH only for some attributes (a replace of `title` or any remove answers
//! 501); attributes outside its model (title, preferredLanguage, phone numbers, the
//! enterprise extension) silently dropped; filters on userName but not externalId, while
//! its /ServiceProviderConfig says filtering is unsupported; userName unique with case;
//! pages of at most 50.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{free_port, repo_root, require_binary, wait_for_port};

pub const TOKEN: &str = "test-token-django-scim2";

/// What `scripts/install-test-deps.sh` installs.
pub const INSTALL: &str = "python3 -m venv .venv && .venv/bin/pip install django-scim2==0.23.0 Django==5.2.19";

pub struct DjangoScim {
    child: Child,
    _db: tempfile::TempDir,
    pub port: u16,
    /// The SCIM root (…/scim/v2), what `base_url` points at.
    pub base_url: String,
    pub token: String,
}

/// The venv's Python, checked to import django_scim; a missing server fails the test with
/// the command that installs it.
fn python() -> PathBuf {
    let py = require_binary(&[repo_root().join(".venv/bin/python3")], "python3", INSTALL);
    let ok = Command::new(&py).args(["-c", "import django, django_scim"]).stderr(Stdio::null()).status().is_ok_and(|s| s.success());
    assert!(ok, "django-scim2 is not installed in {}. Install it with: {INSTALL} — or run `bash .ci/run`, which does.", py.display());
    py
}

impl DjangoScim {
    pub fn start() -> DjangoScim {
        let py = python();
        let port = free_port();
        let db = tempfile::tempdir().expect("temp dir");
        let manage = repo_root().join("tests/support/django_scim/manage.py");
        let env = [
            ("SCIMB_PORT", port.to_string()),
            ("SCIMB_TOKEN", TOKEN.to_string()),
            ("SCIMB_DB", db.path().join("scim.sqlite3").display().to_string()),
            // No __pycache__ left in the work tree.
            ("PYTHONDONTWRITEBYTECODE", "1".to_string()),
        ];
        let migrated = Command::new(&py)
            .arg(&manage)
            .args(["migrate", "--run-syncdb", "-v", "0"])
            .envs(env.clone())
            .stdout(Stdio::null())
            .output()
            .expect("run manage.py migrate");
        assert!(migrated.status.success(), "django-scim2: migrate failed: {}", String::from_utf8_lossy(&migrated.stderr));
        // Django's own server, loopback only, one request at a time (SQLite).
        let child = Command::new(&py)
            .arg(&manage)
            .args(["runserver", &format!("127.0.0.1:{port}"), "--noreload", "--nothreading"])
            .envs(env)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start django-scim2");
        wait_for_port(port, Duration::from_secs(30), "django-scim2");
        DjangoScim { child, _db: db, port, base_url: format!("http://127.0.0.1:{port}/scim/v2"), token: TOKEN.into() }
    }

    fn curl(&self, args: &[&str], path: &str) -> serde_json::Value {
        let url = format!("{}{}", self.base_url, path);
        let out = Command::new("curl")
            .args(["-sS", "-H", &format!("Authorization: Bearer {}", self.token), "-H", "Content-Type: application/scim+json"])
            .args(args)
            .arg(&url)
            .output()
            .expect("curl");
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{url}: not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
    }

    pub fn get(&self, path: &str) -> serde_json::Value {
        self.curl(&[], path)
    }

    pub fn post(&self, path: &str, body: &serde_json::Value) -> serde_json::Value {
        self.curl(&["-X", "POST", "--data-binary", &body.to_string()], path)
    }

    /// Every user on the server (follows pagination: at most 50 a page).
    pub fn users(&self) -> Vec<serde_json::Value> {
        super::all_pages(50, |path| self.get(path))
    }
}

impl Drop for DjangoScim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
