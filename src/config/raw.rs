//! The shapes of `connectors.toml` as written. Every struct denies unknown keys; every
//! field's `///` comment is its user documentation. Values stay as written (strings) here;
//! `config::validate` turns them into the typed `Connector`, collecting every problem.

use std::collections::BTreeMap;

use serde::Deserialize;

/// `[platform]`: where users are pushed.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPlatform {
    /// Only "scim" today.
    pub kind: String,
    /// The SCIM base URL, e.g. "https://platform.example/scim/v2".
    pub base_url: String,
    /// Environment variable holding the bearer token.
    pub token_env: Option<String>,
    /// Parallel requests when Bulk is not used (default 8).
    pub max_concurrency: Option<i64>,
    /// Timeout of one HTTP request (default "30s").
    pub timeout: Option<String>,
    /// "auto" (use /Bulk when the server offers it) or "off".
    pub bulk: Option<String>,
    /// Schema URN for attributes outside core and enterprise.
    pub custom_schema: Option<String>,
    /// OAuth2 client credentials, instead of `token_env`.
    pub oauth2: Option<RawOAuth2>,
    /// URL that receives a JSON message on failures, safeguard stops and stale exports.
    pub notify_webhook: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOAuth2 {
    pub token_url: String,
    pub client_id: String,
    /// Environment variable holding the client secret.
    pub client_secret_env: String,
    pub scope: Option<String>,
}

/// `[state]`: where snapshots and run history live.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawState {
    /// "sqlite://state/rostersync.db" (relative to the config file) or "postgres://…".
    pub url: String,
}

/// `[daemon]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDaemon {
    /// Address of /healthz and /metrics, e.g. "127.0.0.1:9464".
    pub listen: Option<String>,
    /// Runs at once across all connectors (default 4).
    pub max_concurrent_runs: Option<i64>,
    /// How long running syncs may take to finish on SIGTERM (default "5m").
    pub grace: Option<String>,
}

/// `[connectors.NAME]`, without its sub-tables (read separately, so that a problem in one
/// does not hide the problems in the others).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConnector {
    /// The customer's name, for reports.
    pub customer: Option<String>,
    /// "daily HH:MM", "weekly DAY HH:MM" or cron; absent = manual runs only.
    pub schedule: Option<String>,
    /// IANA timezone of the schedule (default UTC).
    pub timezone: Option<String>,
    /// Random delay added to each scheduled start, e.g. "10m".
    pub jitter: Option<String>,
    /// The mapping file, relative to this config file.
    pub mapping: String,
    // Sub-tables, checked one by one by `validate`.
    pub sftp: Option<toml::Value>,
    pub local: Option<toml::Value>,
    pub file: Option<toml::Value>,
    pub sync: Option<toml::Value>,
}

/// `[connectors.NAME.sftp]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSftp {
    pub host: String,
    /// Default 22.
    pub port: Option<i64>,
    pub username: String,
    /// "key", "password" or "keyboard-interactive".
    pub auth: String,
    /// OpenSSH-format private key file (with auth = "key").
    pub private_key: Option<String>,
    /// Environment variable holding the key's passphrase.
    pub passphrase_env: Option<String>,
    /// Environment variable holding the password (auth = "password").
    pub password_env: Option<String>,
    /// Pinned host key fingerprint "SHA256:…", as printed by `rostersync keyscan`.
    pub host_key: Option<String>,
    /// known_hosts file, instead of `host_key`.
    pub known_hosts: Option<String>,
    /// Timeout of any single network step (default "30s").
    pub timeout: Option<String>,
}

/// `[connectors.NAME.local]`: a folder on this machine (demos, tests, `--file`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLocal {
    pub dir: String,
}

/// `[connectors.NAME.file]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFile {
    /// Exact path, or a glob in one folder ("/exports/employees_*.csv").
    pub path: String,
    /// "newest" (by mtime, default) or "last-name" (lexically last name).
    pub pick: Option<String>,
    /// auto | csv | xlsx | xls | ods | json | ndjson (default auto, by extension).
    pub format: Option<String>,
    /// Skip files modified more recently than this (still being written). Default "2m"
    /// for SFTP, "0s" for local folders.
    pub min_age: Option<String>,
    /// After a successful sync: "keep" (default), "move:DIR" or "delete".
    pub after: Option<String>,
    /// Fail when no new file has arrived for this long, e.g. "8d".
    pub stale_after: Option<String>,
    /// Refuse files larger than this (default "2GiB").
    pub max_size: Option<String>,
}

/// `[connectors.NAME.sync]`
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawSync {
    /// What happens to a person absent from the file: deactivate (default), delete, ignore.
    pub on_missing: Option<String>,
    /// Deactivations + deletions allowed in one run: a count or a percent of known users
    /// (default "10%").
    pub max_deactivations: Option<String>,
    /// Invalid rows tolerated before the run stops: a count or a percent of rows
    /// (default "5%").
    pub max_invalid: Option<String>,
}

/// The whole file, with sections left as values so each is checked on its own.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFileTop {
    pub platform: Option<toml::Value>,
    pub state: Option<toml::Value>,
    pub daemon: Option<toml::Value>,
    #[serde(default)]
    pub connectors: BTreeMap<String, toml::Value>,
}
