//! The shapes of `connectors.toml` as written. Every struct denies unknown keys; every
//! field's `///` comment is its user documentation. Closed sets and values with units are
//! typed here (serde enums and newtypes), each as `Parsed<T>` so that a refused value is kept
//! beside its field rather than failing the whole table; `config::load_str` then checks
//! what types cannot say (ranges, either-or, files) and builds the typed `Connector`,
//! collecting every problem.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer};

use super::units::{HumanDuration, Limit, Size};
use super::word::{self, Parsed, WordError};
use super::{After, Format, OnMissing, Pick, Rehire};
use crate::plan::settings::{OnSafeguard, OutOfScope};

/// `platform.kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PlatformKind {
    Scim,
}

/// `platform.bulk`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Bulk {
    /// Use /Bulk when the server offers it.
    #[default]
    Auto,
    Off,
}

/// `connectors.NAME.sftp.auth`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuthKind {
    Key,
    Password,
    KeyboardInteractive,
}

impl AuthKind {
    /// As written in the config.
    pub fn name(self) -> &'static str {
        match self {
            AuthKind::Key => "key",
            AuthKind::Password => "password",
            AuthKind::KeyboardInteractive => "keyboard-interactive",
        }
    }
}

/// `connectors.NAME.file.format`: "auto" (by the file's extension) or one format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FormatChoice {
    #[default]
    Auto,
    Fixed(Format),
}

impl FormatChoice {
    /// The format to force, None for auto.
    pub fn fixed(self) -> Option<Format> {
        match self {
            FormatChoice::Auto => None,
            FormatChoice::Fixed(f) => Some(f),
        }
    }
}

impl<'de> Deserialize<'de> for FormatChoice {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s == "auto" {
            return Ok(FormatChoice::Auto);
        }
        word::parse::<Format>(&s).map(FormatChoice::Fixed).map_err(|e| {
            serde::de::Error::custom(match e {
                WordError::Unknown { got, mut accepted } => {
                    accepted.insert(0, "auto");
                    WordError::Unknown { got, accepted }
                }
                other => other,
            })
        })
    }
}

/// `[platform]`: where users are pushed: the default target of every connector.
/// `[connectors.NAME.platform]` takes any of these keys (but `notify_webhook`, which is the
/// daemon's) and overrides them for that connector: its own target (another base URL, or
/// the same URL with another token: another customer's organisation). `[platform]` may
/// be left out when every connector has its own.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPlatform {
    /// Only "scim" today (default "scim" in a connector's own table).
    pub kind: Parsed<PlatformKind>,
    /// A short name for the target, shown in /metrics (label `target`), `status`,
    /// `history` and the status page, e.g. "acme" (default: the base URL's host and path,
    /// with the credential's name when two targets share a URL; never the token).
    pub name: Option<String>,
    /// The SCIM base URL, e.g. "https://platform.example/scim/v2".
    pub base_url: String,
    /// Environment variable holding the bearer token, e.g. "PLATFORM_SCIM_TOKEN".
    pub token_env: Option<String>,
    /// File holding the bearer token, instead of `token_env` (systemd credentials,
    /// Kubernetes secrets); one trailing newline is ignored. Relative to this config file.
    pub token_file: Option<String>,
    /// Parallel requests when Bulk is not used (default 8).
    pub max_concurrency: Option<i64>,
    /// Timeout of one HTTP request (default "30s").
    pub timeout: Option<Parsed<HumanDuration>>,
    /// "auto" (use /Bulk when the server offers it) or "off".
    pub bulk: Option<Parsed<Bulk>>,
    /// Schema URN for attributes outside core and enterprise.
    pub custom_schema: Option<String>,
    /// OAuth2 client credentials, instead of `token_env`.
    pub oauth2: Option<RawOAuth2>,
    /// URL that receives a JSON message on failures, safeguard stops and stale exports.
    pub notify_webhook: Option<String>,
}

/// `[platform.oauth2]` (or `oauth2 = { … }` in `[platform]`): OAuth2 client credentials
/// (RFC 6749 §4.4), instead of a bearer token. The token is fetched at the start of a run
/// and refreshed before it expires; a refused client is exit 6.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOAuth2 {
    /// The token endpoint, e.g. "https://idp.example/oauth2/token".
    pub token_url: String,
    /// The client id the identity provider issued.
    pub client_id: String,
    /// Environment variable holding the client secret, e.g. "PLATFORM_CLIENT_SECRET".
    pub client_secret_env: Option<String>,
    /// File holding the client secret, instead of `client_secret_env`.
    pub client_secret_file: Option<String>,
    /// The scope to ask for, e.g. "scim" (default: none sent).
    pub scope: Option<String>,
}

/// `[state]`: where snapshots and run history live.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawState {
    /// "sqlite://state/rostersync.db" (relative to the config file), or
    /// "postgres://USER@HOST:PORT/DATABASE" for a fleet of workers sharing one store (add
    /// "?sslmode=verify-full" for TLS; the password never goes in the URL).
    pub url: String,
    /// PostgreSQL only: environment variable holding the database password.
    pub password_env: Option<String>,
    /// PostgreSQL only: file holding the database password (its first line; relative to the
    /// config file), e.g. a mounted secret.
    pub password_file: Option<String>,
    /// PostgreSQL only: the CA certificate(s) (PEM; relative to the config file) that signed
    /// the database server's certificate, for a private CA. The connection is then TLS with
    /// the certificate and its host name checked ("sslmode=verify-full", unless the URL says
    /// "sslmode=verify-ca"); without it, "sslmode=verify-full" trusts the public CAs.
    pub ca_file: Option<String>,
    /// How long a run's lease on its connector outlives a worker that died (SIGKILL, lost
    /// machine) before another worker may take the connector; renewed every third of it
    /// while the worker lives (default "20s"). A run whose renewals the store does not accept
    /// for this long (the database locked by another writer, or unreachable) stops sending
    /// before its lease lapses, and fails; the next run lists the platform first.
    pub lease_ttl: Option<Parsed<HumanDuration>>,
    /// How long the per-person audit trail (every operation sent: run, time, kind, changed
    /// field names, platform status) and the plans of stopped runs are kept, e.g. "180d"
    /// (the default). Older entries are removed at the end of each run that sends
    /// something or stops.
    pub audit_retention: Option<Parsed<HumanDuration>>,
}

/// `[daemon]`: `rostersync daemon`, which runs every connector on its schedule.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDaemon {
    /// Address of /healthz and /metrics, e.g. "127.0.0.1:9464".
    pub listen: Option<String>,
    /// Runs at once across all connectors (default 4).
    pub max_concurrent_runs: Option<i64>,
    /// How long running syncs may take to finish on SIGTERM (default "5m").
    pub grace: Option<Parsed<HumanDuration>>,
}

/// `[connectors.NAME]`: one customer; NAME is how commands and reports name it. Its source
/// is `[connectors.NAME.sftp]` or `[connectors.NAME.local]`, then `[connectors.NAME.file]`
/// (which file) and, optionally, `[connectors.NAME.sync]` (what a sync may do).
// The sub-tables are read separately, so that a problem in one does not hide the problems
// in the others.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConnector {
    /// The customer's name, for reports.
    pub customer: Option<String>,
    /// "daily HH:MM", "weekly DAY HH:MM" or cron; absent = manual runs only.
    pub schedule: Option<String>,
    /// IANA timezone of the schedule (default UTC).
    pub timezone: Option<String>,
    /// When the daemon runs a reconcile of this connector (`rostersync sync NAME
    /// --reconcile`: every platform account listed, drift repaired), in the same syntax as
    /// `schedule` and its timezone, e.g. "weekly sun 03:00"; absent = by hand only.
    pub reconcile: Option<String>,
    /// Random delay added to each scheduled start, e.g. "10m".
    pub jitter: Option<Parsed<HumanDuration>>,
    /// The mapping file, relative to this config file.
    pub mapping: String,
    // Sub-tables, checked one by one by `validate`.
    pub sftp: Option<toml::Value>,
    pub local: Option<toml::Value>,
    pub file: Option<toml::Value>,
    pub sync: Option<toml::Value>,
    pub platform: Option<toml::Value>,
    // The exchange with the customer (`config::exchange`).
    pub result: Option<toml::Value>,
    pub notify: Option<toml::Value>,
}

/// `[connectors.NAME.sftp]`: the customer's SFTP server. Its host key is pinned
/// (`host_key` or `known_hosts`): there is no trust on first use.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSftp {
    /// The server's host name or address, e.g. "sftp.acme.example" (no "sftp://", no port).
    pub host: String,
    /// The server's port (default 22).
    pub port: Option<i64>,
    /// The account the customer created for us.
    pub username: String,
    /// "key", "password" or "keyboard-interactive".
    pub auth: Parsed<AuthKind>,
    /// OpenSSH-format private key file (with auth = "key"), relative to this config file.
    /// Must be readable by its owner only (chmod 600); make one with
    /// `ssh-keygen -t ed25519 -N '' -f secrets/NAME_ed25519`.
    pub private_key: Option<String>,
    /// Environment variable holding the key's passphrase.
    pub passphrase_env: Option<String>,
    /// File holding the key's passphrase, instead of `passphrase_env`.
    pub passphrase_file: Option<String>,
    /// Environment variable holding the password (auth = "password").
    pub password_env: Option<String>,
    /// File holding the password, instead of `password_env`.
    pub password_file: Option<String>,
    /// Pinned host key fingerprint "SHA256:…", as printed by `rostersync keyscan`.
    pub host_key: Option<String>,
    /// known_hosts file, instead of `host_key`; it must hold a key for this host and port.
    pub known_hosts: Option<String>,
    /// Timeout of any single network step (default "30s").
    pub timeout: Option<Parsed<HumanDuration>>,
}

/// `[connectors.NAME.local]`: a folder on this machine (demos, tests, `--file`). Its file is
/// read where it is, not copied: a file written to or replaced while a run reads it is
/// refused ("changed while it was being read", nothing synced) and read again by the next
/// run. If exports land there by being written in place, set `[file] min_age` above the time
/// one takes to write.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLocal {
    /// The folder, relative to this config file, e.g. "exports".
    pub dir: String,
}

/// `[connectors.NAME.file]`: which file to take from the source, and what to do with it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFile {
    /// Exact path, or a glob in one folder ("/exports/employees_*.csv").
    pub path: String,
    /// "newest" (by mtime, default) or "last-name" (lexically last name).
    pub pick: Option<Parsed<Pick>>,
    /// auto | csv | xlsx | xls | ods | json | ndjson (or jsonl) (default auto, by extension).
    pub format: Option<Parsed<FormatChoice>>,
    /// Skip files modified more recently than this (still being written). Default "2m"
    /// for SFTP, "0s" for local folders.
    pub min_age: Option<Parsed<HumanDuration>>,
    /// After a successful sync: "keep" (default), "move:DIR" or "delete".
    pub after: Option<Parsed<After>>,
    /// Fail when no new file has arrived for this long, e.g. "8d".
    pub stale_after: Option<Parsed<HumanDuration>>,
    /// Refuse files larger than this (default "2GiB").
    pub max_size: Option<Parsed<Size>>,
    /// Our OpenPGP secret key (armored or binary; relative to this config file), when the
    /// customer encrypts exports (`.gpg`, `.pgp`, `.asc`): each is decrypted as it downloads,
    /// and a file that is not encrypted to it is refused (exit 4). `rostersync pgp-key NAME`
    /// prints the public key to send the customer. Readable by its owner only.
    pub decrypt_key: Option<String>,
    /// Environment variable holding decrypt_key's passphrase, when it has one.
    pub passphrase_env: Option<String>,
    /// File holding decrypt_key's passphrase, instead of `passphrase_env`.
    pub passphrase_file: Option<String>,
    /// The customer's OpenPGP public key (relative to this config file): an export whose
    /// signature is not theirs, or whose content no longer matches it, is refused (exit 4)
    /// before anything is planned.
    pub verify_key: Option<String>,
    /// Refuse an export that carries no signature (default true when `verify_key` is set).
    pub require_signature: Option<bool>,
}

/// `[connectors.NAME.sync]`: what a sync may change; the safeguards stop a run before
/// anything is pushed (exit 5, `--allow-mass-change --reason "…"` or `approve` to override).
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawSync {
    /// What happens to a person absent from the file: deactivate (default), delete, ignore.
    pub on_missing: Option<Parsed<OnMissing>>,
    /// Deactivations + deletions allowed in one run: a count or a percent of known users
    /// (default "10%"; a percent rounds down, but never below one).
    pub max_deactivations: Option<Parsed<Limit>>,
    /// Invalid rows tolerated before the run stops: a count or a percent of rows
    /// (default "5%"; a percent rounds down, but never below one).
    pub max_invalid: Option<Parsed<Limit>>,
    /// Connectors whose platform accounts this one may adopt (a migration), e.g. ["bamboo"].
    /// Any other connector's account is a conflict, never taken over.
    #[serde(default)]
    pub adopt_from: Vec<String>,
    /// A new id whose email is the account of a leaver: "rekey" (default) moves the account
    /// to the new id; "conflict" reports it instead.
    pub rehire: Option<Parsed<Rehire>>,
    /// People whose login (userName or email) one run may change: a count or a percent of
    /// known users (default "10%"; a percent allows at least 5). An emptied or switched Email column stops here.
    pub max_identity_changes: Option<Parsed<Limit>>,
    /// People one run may take a mapped value from (set before, empty now), per attribute:
    /// a count or a percent of known users (default "10%"; a percent allows at least 5). A column that arrives empty stops here.
    pub max_blanked: Option<Parsed<Limit>>,
    /// People one run may update in any way: a count or a percent of known users (default
    /// "50%"; a percent allows at least 5; adoptions are not counted). Another customer's export with the same ids stops here.
    pub max_updates: Option<Parsed<Limit>>,
    /// Accounts one run may move to a new id (re-hires): a count or a percent of known users
    /// (default "10%"; a percent allows at least 5).
    pub max_rekeys: Option<Parsed<Limit>>,
    /// New people one run may create on a connector that already has people: a count or a
    /// percent of known users (default "50%", at least 5; a first sync has no limit). Ids that changed
    /// shape (a new scheme, lost leading zeros) stop here.
    pub max_creates: Option<Parsed<Limit>>,

    // The employee lifecycle (docs/lifecycle.md).
    /// A person inactive in the file who never had an account gets one (inactive) only with
    /// true; default false: an export that still lists people who left years ago creates
    /// nobody for them (counted as skipped).
    pub create_inactive: Option<bool>,
    /// Accounts rostersync never adopts, changes, deactivates or deletes, whatever the file
    /// says: userNames (compared without case) or platform ids, e.g. ["root@acme.com"].
    /// Named once per run in the report.
    #[serde(default)]
    pub protected: Vec<String>,
    /// What a mass_deactivation stop holds: "hold-all" (default: nothing is sent until
    /// approved) or "hold-deactivations" (creates and updates are sent; the deactivations and
    /// deletions wait for `rostersync approve`). Every other safeguard holds all.
    pub on_safeguard: Option<Parsed<OnSafeguard>>,
    /// A known person whose row is now out of the mapping's [scope]: "deactivate" (default:
    /// treated as gone from the file, so on_missing applies and max_deactivations counts
    /// them) or "ignore" (their account stays as it is, no longer synced).
    pub out_of_scope: Option<Parsed<OutOfScope>>,
    /// A person absent from the file keeps their account until absent this long, e.g. "3d"
    /// (default: on_missing applies at the first run without them). A file that drops and
    /// regains people for a day then changes nobody; `status` and `explain` show who is in
    /// grace and until when.
    pub deactivate_after: Option<Parsed<HumanDuration>>,
    /// With a mapped start_date: how long before their start a future hire gets an account,
    /// inactive until the start date, in whole days, e.g. "14d" (default "0d": on the start
    /// date, active). Earlier, they are pending: no account yet, listed with the date.
    pub create_lead: Option<Parsed<HumanDuration>>,
    /// The longest one run may take, e.g. "30m" (default "2h"): past it the run stops
    /// sending, ends failed and is retried like a platform outage; what it sent is found by
    /// the next run. Bounds a hung platform, whatever its requests' own timeouts.
    pub max_run_time: Option<Parsed<HumanDuration>>,
    /// What one file may make a run hold in memory, e.g. "1GiB" (default "512MiB", about
    /// 1.2 million people): the rows kept for planning (≈ 400 bytes a person), the tracking of
    /// ids on several rows, an Excel workbook's shared strings. Past it the file is refused
    /// (exit 4) before the memory is taken, so one damaged or hostile export never takes the
    /// daemon and its other connectors down.
    pub max_memory: Option<Parsed<Size>>,
}

/// The whole file, with sections left as values so each is checked on its own.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFileTop {
    pub platform: Option<toml::Value>,
    pub state: Option<toml::Value>,
    pub daemon: Option<toml::Value>,
    pub smtp: Option<toml::Value>,
    #[serde(default)]
    pub connectors: BTreeMap<String, toml::Value>,
}
