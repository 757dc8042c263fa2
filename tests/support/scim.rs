//! A real SCIM 2.0 server for tests: `scim2-server` (PyPI) on a free port, with a bearer token.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{free_port, repo_root, require_binary, wait_for_port};

pub const TOKEN: &str = "test-token-rostersync";

pub struct ScimServer {
    child: Child,
    pub port: u16,
    pub base_url: String,
    pub token: String,
}

/// Where `.ci/run` installs the server (a venv in the repo), then $SCIM2_SERVER, then PATH.
pub fn scim2_server_binary() -> PathBuf {
    let mut candidates = vec![repo_root().join(".venv/bin/scim2-server")];
    if let Some(p) = std::env::var_os("SCIM2_SERVER") {
        candidates.insert(0, PathBuf::from(p));
    }
    require_binary(&candidates, "scim2-server", "python3 -m venv .venv && .venv/bin/pip install scim2-server==0.8.3")
}

impl ScimServer {
    pub fn start() -> ScimServer {
        Self::start_with(&[])
    }

    /// Starts the server with extra arguments (e.g. a service provider config file).
    pub fn start_with(extra: &[&str]) -> ScimServer {
        Self::start_as(TOKEN, extra)
    }

    /// Starts a server that accepts only `token` (another customer's organisation).
    pub fn start_with_token(token: &str) -> ScimServer {
        Self::start_as(token, &[])
    }

    fn start_as(token: &str, extra: &[&str]) -> ScimServer {
        let bin = scim2_server_binary();
        let port = free_port();
        let child = Command::new(bin)
            .args(["--hostname", "127.0.0.1", "--port", &port.to_string(), "--bearer-token", token])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start scim2-server");
        wait_for_port(port, Duration::from_secs(30), "scim2-server");
        ScimServer { child, port, base_url: format!("http://127.0.0.1:{port}"), token: token.into() }
    }

    /// Starts the server with the test schemas: RFC 7643's plus the custom extension
    /// `urn:ietf:params:scim:schemas:extension:rostersync:2.0:User` (attributes hire_date
    /// (dateTime), location, badge), listed on the User resource type.
    pub fn start_with_custom_schema(extra: &[&str]) -> ScimServer {
        let dir = repo_root().join("tests/fixtures/scim");
        let schemas = dir.join("schemas.json");
        let types = dir.join("resource-types.json");
        let mut args = vec!["--schema", schemas.to_str().unwrap(), "--resource-type", types.to_str().unwrap()];
        args.extend_from_slice(extra);
        Self::start_with(&args)
    }

    /// POST a JSON body to a path and parse the JSON answer (to set up platform users the
    /// connector has never synced).
    pub fn post(&self, path: &str, body: &serde_json::Value) -> serde_json::Value {
        let url = format!("{}{}", self.base_url, path);
        let out = Command::new("curl")
            .args([
                "-sS",
                "-X",
                "POST",
                "-H",
                &format!("Authorization: Bearer {}", self.token),
                "-H",
                "Content-Type: application/scim+json",
                "--data-binary",
                &body.to_string(),
                &url,
            ])
            .output()
            .expect("curl");
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("POST {url}: not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
    }

    /// GET a path (relative to the base URL) and parse the JSON answer.
    pub fn get(&self, path: &str) -> serde_json::Value {
        let url = format!("{}{}", self.base_url, path);
        let out = Command::new("curl").args(["-sS", "-H", &format!("Authorization: Bearer {}", self.token), &url]).output().expect("curl");
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("GET {url}: not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
    }

    /// Every user on the server (follows pagination).
    pub fn users(&self) -> Vec<serde_json::Value> {
        super::all_pages(500, |path| self.get(path))
    }
}

impl Drop for ScimServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Pushes `ops` with `budget` (`known`: external id → platform id of managers already on the
/// platform), collecting the outcomes as the push reports them.
pub async fn apply_with(
    client: &rostersync::platform::scim::ScimClient,
    ops: Vec<rostersync::plan::Op>,
    known: std::collections::HashMap<String, String>,
    budget: &rostersync::retry::Budget,
) -> (Result<(), rostersync::platform::PlatformError>, Vec<rostersync::platform::OpOutcome>) {
    use rostersync::platform::Platform;
    let (tx, mut rx) = tokio::sync::mpsc::channel(16);
    let collector = tokio::spawn(async move {
        let mut all = Vec::new();
        while let Some(o) = rx.recv().await {
            all.push(o);
        }
        all
    });
    let r = client.apply(ops, known, budget, tx).await;
    (r, collector.await.unwrap())
}
