//! Configuration: `connectors.toml` and the mapping files it names.
//!
//! Validate, then build: `load` reads every file, checks every section on its own, and
//! returns the typed configuration together with *every* problem found, each with file,
//! line, key, what was expected and what was found. No network.

pub mod lines;
pub mod mapping;
pub mod raw;
pub mod units;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;

use crate::exit::{Classify, Exit};
use crate::schedule::Schedule;
use lines::LineIndex;
use mapping::*;
pub use mapping::{Mapping, UniqueId};
use raw::*;
pub use units::Limit;

/// One configuration problem, located.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    pub file: PathBuf,
    pub line: Option<usize>,
    /// Dotted key path, e.g. "connectors.acme.sftp.port".
    pub key: String,
    pub message: String,
    /// The connector the problem disables, if any (others keep running).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connector: Option<String>,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
        }
        if self.key.is_empty() { write!(f, ": {}", self.message) } else { write!(f, ": {}: {}", self.key, self.message) }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {}: {source}; pass the right file with --config PATH", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{} problem(s) in the configuration:\n{}", .0.len(), .0.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Problem>),
    #[error("no connector named \"{name}\" in {}; known: {known}", file.display())]
    UnknownConnector { name: String, file: PathBuf, known: String },
}

impl Classify for ConfigError {
    fn exit(&self) -> Exit {
        Exit::Config
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub path: PathBuf,
    /// Directory of the config file; relative paths inside it are relative to this.
    pub dir: PathBuf,
    pub platform: Option<Platform>,
    pub state: State,
    pub daemon: Daemon,
    /// Valid connectors.
    pub connectors: BTreeMap<String, Connector>,
    /// Every problem; a connector named in a problem is absent from `connectors`.
    pub problems: Vec<Problem>,
    /// Names of connectors that have problems (refused by sync and the scheduler).
    pub broken: Vec<String>,
}

impl Config {
    /// The connector, or the reason it cannot run.
    pub fn connector(&self, name: &str) -> Result<&Connector, ConfigError> {
        if let Some(c) = self.connectors.get(name) {
            return Ok(c);
        }
        if self.broken.iter().any(|b| b == name) {
            let mine: Vec<Problem> =
                self.problems.iter().filter(|p| p.connector.as_deref() == Some(name) || p.connector.is_none()).cloned().collect();
            return Err(ConfigError::Invalid(mine));
        }
        let known: Vec<&str> = self.connectors.keys().map(|s| s.as_str()).chain(self.broken.iter().map(|s| s.as_str())).collect();
        Err(ConfigError::UnknownConnector {
            name: name.into(),
            file: self.path.clone(),
            known: if known.is_empty() { "none".into() } else { known.join(", ") },
        })
    }

    /// The platform, or the problems that keep it from being usable.
    pub fn platform(&self) -> Result<&Platform, ConfigError> {
        self.platform.as_ref().ok_or_else(|| {
            let mut ps: Vec<Problem> = self.problems.iter().filter(|p| p.key.starts_with("platform")).cloned().collect();
            if ps.is_empty() {
                ps.push(Problem {
                    file: self.path.clone(),
                    line: None,
                    key: "platform".into(),
                    message: "missing [platform] section (kind, base_url, token_env)".into(),
                    connector: None,
                });
            }
            ConfigError::Invalid(ps)
        })
    }
}

#[derive(Debug, Clone)]
pub struct Platform {
    pub base_url: url::Url,
    pub auth: PlatformAuth,
    pub max_concurrency: usize,
    pub timeout: Duration,
    pub bulk: bool,
    pub custom_schema: String,
    pub notify_webhook: Option<url::Url>,
}

#[derive(Debug, Clone)]
pub enum PlatformAuth {
    /// Environment variable holding the bearer token.
    Bearer {
        token_env: String,
    },
    OAuth2 {
        token_url: url::Url,
        client_id: String,
        client_secret_env: String,
        scope: Option<String>,
    },
}

#[derive(Debug, Clone)]
pub struct State {
    /// "sqlite:///abs/path.db" after resolution, or a postgres URL.
    pub url: String,
}

#[derive(Debug, Clone)]
pub struct Daemon {
    pub listen: Option<std::net::SocketAddr>,
    pub max_concurrent_runs: usize,
    pub grace: Duration,
}

#[derive(Debug, Clone)]
pub struct Connector {
    pub name: String,
    pub customer: String,
    pub schedule: Option<Schedule>,
    pub jitter: Duration,
    pub mapping_path: PathBuf,
    pub mapping: Mapping,
    pub source: SourceConfig,
    pub file: FileRule,
    pub sync: SyncRule,
}

#[derive(Debug, Clone)]
pub enum SourceConfig {
    Sftp(Sftp),
    Local { dir: PathBuf },
}

#[derive(Debug, Clone)]
pub struct Sftp {
    pub host: String,
    pub port: u16,
    pub username: String,
    pub auth: SftpAuth,
    pub host_key: HostKeyPolicy,
    pub timeout: Duration,
}

#[derive(Debug, Clone)]
pub enum SftpAuth {
    Key { private_key: PathBuf, passphrase_env: Option<String> },
    Password { password_env: String },
    KeyboardInteractive { password_env: String },
}

#[derive(Debug, Clone)]
pub enum HostKeyPolicy {
    /// "SHA256:base64" as OpenSSH prints it.
    Pinned(String),
    KnownHosts(PathBuf),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pick {
    Newest,
    LastName,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Csv,
    Xlsx,
    Xls,
    Ods,
    Json,
    Ndjson,
}

impl Format {
    pub fn parse(s: &str) -> Option<Format> {
        Some(match s {
            "csv" => Format::Csv,
            "xlsx" => Format::Xlsx,
            "xls" => Format::Xls,
            "ods" => Format::Ods,
            "json" => Format::Json,
            "ndjson" | "jsonl" => Format::Ndjson,
            _ => return None,
        })
    }

    /// The format a file name implies; `.gz` and `.zip` wrappers are looked through.
    pub fn from_name(name: &str) -> Option<Format> {
        let lower = name.to_ascii_lowercase();
        let base = lower.trim_end_matches(".gz").trim_end_matches(".zip");
        let ext = base.rsplit('.').next()?;
        Format::parse(ext).or(match ext {
            "tsv" | "txt" => Some(Format::Csv),
            _ => None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum After {
    Keep,
    Move(String),
    Delete,
}

#[derive(Debug, Clone)]
pub struct FileRule {
    pub path: String,
    pub pick: Pick,
    /// None = auto by extension.
    pub format: Option<Format>,
    pub min_age: Duration,
    pub after: After,
    pub stale_after: Option<Duration>,
    pub max_size: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnMissing {
    Deactivate,
    Delete,
    Ignore,
}

#[derive(Debug, Clone)]
pub struct SyncRule {
    pub on_missing: OnMissing,
    pub max_deactivations: Limit,
    pub max_invalid: Limit,
}

impl Default for SyncRule {
    fn default() -> Self {
        SyncRule { on_missing: OnMissing::Deactivate, max_deactivations: Limit::Percent(10.0), max_invalid: Limit::Percent(5.0) }
    }
}

/// The config file to use: `--config`, else `./connectors.toml`.
pub fn default_path() -> PathBuf {
    PathBuf::from("connectors.toml")
}

/// Reads and checks everything. Only an unreadable config file is an `Err`; every other
/// problem is collected in `Config::problems`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let src = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let dir = if dir.as_os_str().is_empty() { PathBuf::from(".") } else { dir };
    Ok(load_str(&src, path, &dir))
}

/// Collects problems against one file.
struct Checker<'a> {
    file: &'a Path,
    index: LineIndex,
    problems: Vec<Problem>,
    connector: Option<String>,
}

impl<'a> Checker<'a> {
    fn new(file: &'a Path, src: &str) -> Self {
        Checker { file, index: LineIndex::new(src), problems: Vec::new(), connector: None }
    }

    fn problem(&mut self, key: &str, message: impl Into<String>) {
        self.problems.push(Problem {
            file: self.file.to_path_buf(),
            line: self.index.line(key),
            key: key.to_string(),
            message: message.into(),
            connector: self.connector.clone(),
        });
    }

    /// Deserializes one section; a serde error becomes a located problem.
    fn section<T: DeserializeOwned>(&mut self, key: &str, value: toml::Value) -> Option<T> {
        match serde_path_to_error::deserialize::<_, T>(value) {
            Ok(v) => Some(v),
            Err(e) => {
                let inner = e.path().to_string();
                let mut full = if inner == "." || inner.is_empty() { key.to_string() } else { format!("{key}.{inner}") };
                let mut msg = e.into_inner().to_string().trim().to_string();
                // "unknown field `prot`, expected one of …": point at the unknown key itself.
                if let Some(rest) = msg.strip_prefix("unknown field `")
                    && let Some(end) = rest.find('`')
                {
                    let unknown = &rest[..end];
                    if !full.ends_with(&format!(".{unknown}")) && full != unknown {
                        full = if full.is_empty() { unknown.to_string() } else { format!("{full}.{unknown}") };
                    }
                    let hint = rest
                        .split('`')
                        .skip(2)
                        .step_by(2)
                        .filter(|k| edit_distance(k, unknown) <= 2)
                        .min_by_key(|k| edit_distance(k, unknown))
                        .map(|k| format!(" — did you mean `{k}`?"))
                        .unwrap_or_default();
                    msg = format!("unknown key{hint}; {}", msg.replacen("unknown field", "found", 1));
                }
                self.problem(&full, msg);
                None
            }
        }
    }

    fn duration(&mut self, key: &str, v: Option<&str>, default: Duration) -> Duration {
        match v.map(units::parse_duration) {
            None => default,
            Some(Ok(d)) => d,
            Some(Err(e)) => {
                self.problem(key, e);
                default
            }
        }
    }

    fn env_name(&mut self, key: &str, v: &str) {
        if v.is_empty() || !v.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            self.problem(
                key,
                format!(
                    "expected the NAME of an environment variable (secrets are never written in the config); got \"{}\"",
                    redact_if_secretish(v)
                ),
            );
        }
    }
}

/// An env-var field holding something that is not a variable name may be the secret itself:
/// never echo it.
fn redact_if_secretish(v: &str) -> String {
    if v.len() > 12 {
        format!("{}… ({} characters, not shown)", &v[..v.char_indices().nth(3).map(|(i, _)| i).unwrap_or(0)], v.chars().count())
    } else {
        v.to_string()
    }
}

/// Levenshtein distance, for "did you mean" hints on short key names.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb)).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

fn resolve(dir: &Path, p: &str) -> PathBuf {
    let pb = PathBuf::from(p);
    if pb.is_absolute() { pb } else { dir.join(pb) }
}

pub fn load_str(src: &str, path: &Path, dir: &Path) -> Config {
    let mut ck = Checker::new(path, src);
    let mut cfg = Config {
        path: path.to_path_buf(),
        dir: dir.to_path_buf(),
        platform: None,
        state: State { url: format!("sqlite://{}", dir.join("state/rostersync.db").display()) },
        daemon: Daemon { listen: None, max_concurrent_runs: 4, grace: Duration::from_secs(300) },
        connectors: BTreeMap::new(),
        problems: Vec::new(),
        broken: Vec::new(),
    };
    let doc: toml::Table = match toml::from_str(src) {
        Ok(t) => t,
        Err(e) => {
            let line = e.span().map(|s| src[..s.start.min(src.len())].lines().count().max(1));
            cfg.problems.push(Problem {
                file: path.to_path_buf(),
                line,
                key: String::new(),
                message: format!("not valid TOML: {}", e.message()),
                connector: None,
            });
            return cfg;
        }
    };
    let Some(top) = ck.section::<RawFileTop>("", toml::Value::Table(doc)) else {
        cfg.problems = ck.problems;
        return cfg;
    };

    match top.platform {
        None => ck.problem("platform", "missing [platform] section: kind = \"scim\", base_url, token_env"),
        Some(v) => {
            if let Some(p) = ck.section::<RawPlatform>("platform", v) {
                cfg.platform = check_platform(&mut ck, p);
            }
        }
    }
    if let Some(v) = top.state
        && let Some(s) = ck.section::<RawState>("state", v)
    {
        match check_state_url(dir, &s.url) {
            Ok(url) => cfg.state.url = url,
            Err(e) => ck.problem("state.url", e),
        }
    }
    if let Some(v) = top.daemon
        && let Some(d) = ck.section::<RawDaemon>("daemon", v)
    {
        if let Some(l) = &d.listen {
            match l.parse() {
                Ok(a) => cfg.daemon.listen = Some(a),
                Err(_) => ck.problem("daemon.listen", format!("expected an address such as \"127.0.0.1:9464\"; got \"{l}\"")),
            }
        }
        if let Some(n) = d.max_concurrent_runs {
            if (1..=1024).contains(&n) {
                cfg.daemon.max_concurrent_runs = n as usize;
            } else {
                ck.problem("daemon.max_concurrent_runs", format!("expected 1 to 1024; got {n}"));
            }
        }
        cfg.daemon.grace = ck.duration("daemon.grace", d.grace.as_deref(), cfg.daemon.grace);
    }
    if top.connectors.is_empty() {
        ck.problem("connectors", "no connector defined; add a [connectors.NAME] section (see README.md)");
    }
    for (name, value) in top.connectors {
        ck.connector = Some(name.clone());
        let before = ck.problems.len();
        let conn = check_connector(&mut ck, dir, &name, value);
        if ck.problems.len() > before || conn.is_none() {
            cfg.broken.push(name.clone());
        } else if let Some(c) = conn {
            cfg.connectors.insert(name, c);
        }
        ck.connector = None;
    }
    cfg.problems = ck.problems;
    cfg
}

fn check_state_url(dir: &Path, url: &str) -> Result<String, String> {
    if let Some(rest) = url.strip_prefix("sqlite://") {
        if rest.is_empty() {
            return Err("expected sqlite://PATH, e.g. \"sqlite://state/rostersync.db\"".into());
        }
        return Ok(format!("sqlite://{}", resolve(dir, rest).display()));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Err("PostgreSQL state is not built yet; use \"sqlite://state/rostersync.db\"".into());
    }
    Err(format!("expected \"sqlite://PATH\"; got \"{url}\""))
}

fn check_platform(ck: &mut Checker, p: RawPlatform) -> Option<Platform> {
    let before = ck.problems.len();
    if p.kind != "scim" {
        ck.problem("platform.kind", format!("expected \"scim\" (the only kind today); got \"{}\"", p.kind));
    }
    let base_url = match url::Url::parse(&p.base_url) {
        Ok(u) if u.scheme() == "http" || u.scheme() == "https" => Some(u),
        Ok(u) => {
            ck.problem(
                "platform.base_url",
                format!("expected an http(s) URL such as \"https://platform.example/scim/v2\"; got scheme \"{}\"", u.scheme()),
            );
            None
        }
        Err(e) => {
            ck.problem(
                "platform.base_url",
                format!("expected a URL such as \"https://platform.example/scim/v2\"; got \"{}\" ({e})", p.base_url),
            );
            None
        }
    };
    let auth = match (&p.token_env, &p.oauth2) {
        (Some(t), None) => {
            ck.env_name("platform.token_env", t);
            Some(PlatformAuth::Bearer { token_env: t.clone() })
        }
        (None, Some(o)) => {
            ck.env_name("platform.oauth2.client_secret_env", &o.client_secret_env);
            match url::Url::parse(&o.token_url) {
                Ok(u) => Some(PlatformAuth::OAuth2 {
                    token_url: u,
                    client_id: o.client_id.clone(),
                    client_secret_env: o.client_secret_env.clone(),
                    scope: o.scope.clone(),
                }),
                Err(e) => {
                    ck.problem("platform.oauth2.token_url", format!("expected a URL; got \"{}\" ({e})", o.token_url));
                    None
                }
            }
        }
        (Some(_), Some(_)) => {
            ck.problem("platform.oauth2", "give either token_env or oauth2, not both");
            None
        }
        (None, None) => {
            ck.problem("platform.token_env", "missing: name the environment variable holding the bearer token (token_env = \"PLATFORM_SCIM_TOKEN\"), or give oauth2 = { … }");
            None
        }
    };
    let max_concurrency = match p.max_concurrency {
        None => 8,
        Some(n) if (1..=256).contains(&n) => n as usize,
        Some(n) => {
            ck.problem("platform.max_concurrency", format!("expected 1 to 256; got {n}"));
            8
        }
    };
    let timeout = ck.duration("platform.timeout", p.timeout.as_deref(), Duration::from_secs(30));
    let bulk = match p.bulk.as_deref() {
        None | Some("auto") => true,
        Some("off") => false,
        Some(o) => {
            ck.problem("platform.bulk", format!("expected \"auto\" or \"off\"; got \"{o}\""));
            true
        }
    };
    let notify_webhook = p.notify_webhook.as_ref().and_then(|w| match url::Url::parse(w) {
        Ok(u) => Some(u),
        Err(e) => {
            ck.problem("platform.notify_webhook", format!("expected a URL; got \"{w}\" ({e})"));
            None
        }
    });
    if ck.problems.len() > before {
        return None;
    }
    Some(Platform {
        base_url: base_url?,
        auth: auth?,
        max_concurrency,
        timeout,
        bulk,
        custom_schema: p.custom_schema.unwrap_or_else(|| "urn:ietf:params:scim:schemas:extension:rostersync:2.0:User".into()),
        notify_webhook,
    })
}

fn check_connector(ck: &mut Checker, dir: &Path, name: &str, value: toml::Value) -> Option<Connector> {
    let key = format!("connectors.{name}");
    let raw = ck.section::<RawConnector>(&key, value)?;
    let schedule = raw.schedule.as_ref().and_then(|s| match Schedule::parse(s, raw.timezone.as_deref()) {
        Ok(s) => Some(s),
        Err(e) => {
            let k = if e.contains("timezone") { "timezone" } else { "schedule" };
            ck.problem(&format!("{key}.{k}"), e);
            None
        }
    });
    if raw.schedule.is_none()
        && raw.timezone.is_some()
        && let Err(e) = Schedule::parse("daily 00:00", raw.timezone.as_deref())
    {
        ck.problem(&format!("{key}.timezone"), e);
    }
    let jitter = ck.duration(&format!("{key}.jitter"), raw.jitter.as_deref(), Duration::ZERO);

    let source = match (raw.sftp, raw.local) {
        (Some(s), None) => ck.section::<RawSftp>(&format!("{key}.sftp"), s).and_then(|s| check_sftp(ck, dir, &key, s)),
        (None, Some(l)) => ck.section::<RawLocal>(&format!("{key}.local"), l).map(|l| SourceConfig::Local { dir: resolve(dir, &l.dir) }),
        (Some(_), Some(_)) => {
            ck.problem(&format!("{key}.local"), "a connector reads either [sftp] or [local], not both");
            None
        }
        (None, None) => {
            ck.problem(&key, format!("no source: add [{key}.sftp] (host, username, auth, host_key) or [{key}.local] (dir)"));
            None
        }
    };
    let is_local = matches!(source, Some(SourceConfig::Local { .. }));
    let file = match raw.file {
        None => {
            ck.problem(&key, format!("no [{key}.file] section: give at least path = \"/exports/employees_*.csv\""));
            None
        }
        Some(f) => ck.section::<RawFile>(&format!("{key}.file"), f).and_then(|f| check_file(ck, &key, f, is_local)),
    };
    let sync = match raw.sync {
        None => Some(SyncRule::default()),
        Some(s) => ck.section::<RawSync>(&format!("{key}.sync"), s).map(|s| check_sync(ck, &key, s)),
    };
    let mapping_path = resolve(dir, &raw.mapping);
    let mapping = load_mapping(ck, &format!("{key}.mapping"), &mapping_path);
    Some(Connector {
        name: name.to_string(),
        customer: raw.customer.unwrap_or_else(|| name.to_string()),
        schedule,
        jitter,
        mapping_path,
        mapping: mapping?,
        source: source?,
        file: file?,
        sync: sync?,
    })
}

fn check_sftp(ck: &mut Checker, dir: &Path, key: &str, s: RawSftp) -> Option<SourceConfig> {
    let before = ck.problems.len();
    let k = |f: &str| format!("{key}.sftp.{f}");
    if s.host.trim().is_empty() || s.host.contains(char::is_whitespace) {
        ck.problem(&k("host"), format!("expected a host name or address; got \"{}\"", s.host));
    }
    let port = match s.port {
        None => 22,
        Some(p) if (1..=65535).contains(&p) => p as u16,
        Some(p) => {
            ck.problem(&k("port"), format!("expected a port from 1 to 65535; got {p}"));
            22
        }
    };
    let auth = match s.auth.as_str() {
        "key" => match &s.private_key {
            Some(pk) => {
                if let Some(p) = &s.passphrase_env {
                    ck.env_name(&k("passphrase_env"), p);
                }
                Some(SftpAuth::Key { private_key: resolve(dir, pk), passphrase_env: s.passphrase_env.clone() })
            }
            None => {
                ck.problem(
                    &k("private_key"),
                    "missing: auth = \"key\" needs private_key = \"secrets/NAME_ed25519\" (an OpenSSH private key file)",
                );
                None
            }
        },
        "password" | "keyboard-interactive" => match &s.password_env {
            Some(p) => {
                ck.env_name(&k("password_env"), p);
                Some(if s.auth == "password" {
                    SftpAuth::Password { password_env: p.clone() }
                } else {
                    SftpAuth::KeyboardInteractive { password_env: p.clone() }
                })
            }
            None => {
                ck.problem(&k("password_env"), format!("missing: auth = \"{}\" needs password_env = \"NAME_SFTP_PASSWORD\"", s.auth));
                None
            }
        },
        other => {
            ck.problem(&k("auth"), format!("expected \"key\", \"password\" or \"keyboard-interactive\"; got \"{other}\""));
            None
        }
    };
    let host_key = match (&s.host_key, &s.known_hosts) {
        (Some(h), None) => {
            if !is_sha256_fingerprint(h) {
                ck.problem(&k("host_key"), format!(
                    "expected a SHA256 fingerprint such as \"SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s\" (run `rostersync keyscan {}:{port}`); got \"{h}\"",
                    s.host
                ));
            }
            Some(HostKeyPolicy::Pinned(h.clone()))
        }
        (None, Some(kh)) => {
            let p = resolve(dir, kh);
            if !p.is_file() {
                ck.problem(
                    &k("known_hosts"),
                    format!(
                        "file {} does not exist; create it with `ssh-keyscan -p {port} {} > {}` and check the key out of band",
                        p.display(),
                        s.host,
                        p.display()
                    ),
                );
            }
            Some(HostKeyPolicy::KnownHosts(p))
        }
        (Some(_), Some(_)) => {
            ck.problem(&k("known_hosts"), "give either host_key or known_hosts, not both");
            None
        }
        (None, None) => {
            ck.problem(&k("host_key"), format!(
                "missing: the server's host key must be pinned (no trust on first use); run `rostersync keyscan {}:{port}` and paste its host_key line",
                s.host
            ));
            None
        }
    };
    let timeout = ck.duration(&k("timeout"), s.timeout.as_deref(), Duration::from_secs(30));
    if ck.problems.len() > before {
        return None;
    }
    Some(SourceConfig::Sftp(Sftp { host: s.host, port, username: s.username, auth: auth?, host_key: host_key?, timeout }))
}

fn is_sha256_fingerprint(s: &str) -> bool {
    s.strip_prefix("SHA256:")
        .map(|b| b.len() == 43 && b.chars().all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '/'))
        .unwrap_or(false)
}

fn check_file(ck: &mut Checker, key: &str, f: RawFile, is_local: bool) -> Option<FileRule> {
    let before = ck.problems.len();
    let k = |x: &str| format!("{key}.file.{x}");
    if f.path.trim().is_empty() {
        ck.problem(&k("path"), "expected an exact path or a glob in one folder, e.g. \"/exports/employees_*.csv\"");
    } else if let Some((folder, _)) = f.path.rsplit_once('/')
        && folder.contains(['*', '?', '['])
    {
        ck.problem(&k("path"), format!("a glob may only be in the file name, not in the folder; got \"{}\"", f.path));
    }
    let pick = match f.pick.as_deref() {
        None | Some("newest") => Pick::Newest,
        Some("last-name") => Pick::LastName,
        Some(o) => {
            ck.problem(&k("pick"), format!("expected \"newest\" or \"last-name\"; got \"{o}\""));
            Pick::Newest
        }
    };
    let format = match f.format.as_deref() {
        None | Some("auto") => None,
        Some(o) => match Format::parse(o) {
            Some(x) => Some(x),
            None => {
                ck.problem(&k("format"), format!("expected auto, csv, xlsx, xls, ods, json or ndjson; got \"{o}\""));
                None
            }
        },
    };
    let default_age = if is_local { Duration::ZERO } else { Duration::from_secs(120) };
    let min_age = ck.duration(&k("min_age"), f.min_age.as_deref(), default_age);
    let after = match f.after.as_deref() {
        None | Some("keep") => After::Keep,
        Some("delete") => After::Delete,
        Some(o) if o.starts_with("move:") && o.len() > 5 => After::Move(o[5..].to_string()),
        Some(o) => {
            ck.problem(&k("after"), format!("expected \"keep\", \"delete\" or \"move:/folder/\"; got \"{o}\""));
            After::Keep
        }
    };
    let stale_after = f.stale_after.as_deref().map(|s| ck.duration(&k("stale_after"), Some(s), Duration::ZERO));
    let max_size = match f.max_size.as_deref().map(units::parse_size) {
        None => 2 * 1024 * 1024 * 1024,
        Some(Ok(n)) => n,
        Some(Err(e)) => {
            ck.problem(&k("max_size"), e);
            0
        }
    };
    if ck.problems.len() > before {
        return None;
    }
    Some(FileRule { path: f.path, pick, format, min_age, after, stale_after, max_size })
}

fn check_sync(ck: &mut Checker, key: &str, s: RawSync) -> SyncRule {
    let mut r = SyncRule::default();
    match s.on_missing.as_deref() {
        None | Some("deactivate") => {}
        Some("delete") => r.on_missing = OnMissing::Delete,
        Some("ignore") => r.on_missing = OnMissing::Ignore,
        Some(o) => ck.problem(&format!("{key}.sync.on_missing"), format!("expected \"deactivate\", \"delete\" or \"ignore\"; got \"{o}\"")),
    }
    for (field, slot) in [("max_deactivations", &s.max_deactivations), ("max_invalid", &s.max_invalid)] {
        if let Some(v) = slot {
            match Limit::parse(v) {
                Ok(l) if field == "max_invalid" => r.max_invalid = l,
                Ok(l) => r.max_deactivations = l,
                Err(e) => ck.problem(&format!("{key}.sync.{field}"), e),
            }
        }
    }
    r
}

/// Reads and checks a mapping file; its problems point into the mapping file itself.
fn load_mapping(ck: &mut Checker, key: &str, path: &Path) -> Option<Mapping> {
    let src = match std::fs::read_to_string(path) {
        Ok(s) => s,
        Err(e) => {
            ck.problem(
                key,
                format!(
                    "cannot read mapping file {}: {e}; create it (`rostersync mapping suggest SAMPLE_FILE` drafts one)",
                    path.display()
                ),
            );
            return None;
        }
    };
    let mut mk = Checker::new(path, &src);
    mk.connector = ck.connector.clone();
    let m = check_mapping_src(&mut mk, &src);
    ck.problems.extend(mk.problems);
    m
}

/// Checks a mapping file's text (also used by `mapping suggest` to check its own output).
pub fn parse_mapping(src: &str, path: &Path) -> Result<Mapping, Vec<Problem>> {
    let mut mk = Checker::new(path, src);
    match check_mapping_src(&mut mk, src) {
        Some(m) if mk.problems.is_empty() => Ok(m),
        _ => Err(mk.problems),
    }
}

fn check_mapping_src(mk: &mut Checker, src: &str) -> Option<Mapping> {
    let doc: toml::Table = match toml::from_str(src) {
        Ok(t) => t,
        Err(e) => {
            let line = e.span().map(|s| src[..s.start.min(src.len())].lines().count().max(1));
            mk.problems.push(Problem {
                file: mk.file.to_path_buf(),
                line,
                key: String::new(),
                message: format!("not valid TOML: {}", e.message()),
                connector: mk.connector.clone(),
            });
            return None;
        }
    };
    let raw = mk.section::<RawMapping>("", toml::Value::Table(doc))?;
    let before = mk.problems.len();
    let unique_id = match raw.unique_id.as_str() {
        "employee_id" => UniqueId::EmployeeId,
        "email" => UniqueId::Email,
        o => {
            mk.problem("unique_id", format!("expected \"employee_id\" or \"email\"; got \"{o}\""));
            UniqueId::EmployeeId
        }
    };
    let mut source = SourceOptions { header_row: 1, ..Default::default() };
    if let Some(d) = &raw.source.delimiter {
        source.delimiter = match d.as_str() {
            "auto" => None,
            "\\t" | "\t" | "tab" => Some(b'\t'),
            s if s.len() == 1 && s.is_ascii() => Some(s.as_bytes()[0]),
            s => {
                mk.problem("source.delimiter", format!("expected \",\", \";\", \"\\t\", \"|\" or \"auto\"; got \"{s}\""));
                None
            }
        };
    }
    if let Some(e) = &raw.source.encoding {
        match encoding_rs::Encoding::for_label(e.as_bytes()) {
            Some(enc) => source.encoding = Some(enc),
            None => mk.problem(
                "source.encoding",
                format!("unknown encoding \"{e}\"; use utf-8, utf-16, windows-1252, latin1, iso-8859-15, shift_jis …"),
            ),
        }
    }
    source.sheet = raw.source.sheet.clone();
    if let Some(h) = raw.source.header_row {
        if h >= 1 {
            source.header_row = h as u64;
        } else {
            mk.problem("source.header_row", format!("expected a 1-based row number; got {h}"));
        }
    }
    if let Some(r) = &raw.source.records {
        if !r.is_empty() && !r.starts_with('/') {
            mk.problem("source.records", format!("expected a JSON pointer such as \"/data/employees\"; got \"{r}\""));
        }
        source.records = Some(r.clone());
    }

    let mut fields = BTreeMap::new();
    for (name, spec) in &raw.fields {
        let key = format!("fields.{name}");
        match PlatformField::parse(name) {
            Some(f) => {
                if let Some(rule) = check_rule(mk, &key, &spec.0) {
                    fields.insert(f, rule);
                }
            }
            None => mk.problem(&key, format!(
                "unknown platform field; [fields] takes employee_id, email, first_name, last_name, language, active — put \"{name}\" under [attributes]"
            )),
        }
    }
    let mut attributes = BTreeMap::new();
    for (name, spec) in &raw.attributes {
        let key = format!("attributes.{name}");
        if let Some(rule) = check_rule(mk, &key, &spec.0) {
            attributes.insert(name.clone(), rule);
        }
    }
    for required in [PlatformField::FirstName, PlatformField::LastName] {
        if !fields.contains_key(&required) && !raw.fields.contains_key(required.name()) {
            mk.problem("fields", format!("missing {} = \"COLUMN\": every user needs one", required.name()));
        }
    }
    let uid_field = match unique_id {
        UniqueId::EmployeeId => PlatformField::EmployeeId,
        UniqueId::Email => PlatformField::Email,
    };
    if !fields.contains_key(&uid_field) && !raw.fields.contains_key(uid_field.name()) {
        mk.problem("unique_id", format!("unique_id is \"{}\" but [fields] does not map it", uid_field.name()));
    }
    if mk.problems.len() > before {
        return None;
    }
    Some(Mapping { unique_id, source, fields, attributes })
}

fn check_rule(mk: &mut Checker, key: &str, t: &FieldTable) -> Option<FieldRule> {
    let before = mk.problems.len();
    let input = match (&t.column, &t.template) {
        (Some(c), None) => {
            if c.trim().is_empty() {
                mk.problem(key, "empty column name");
            }
            Input::Column(c.clone())
        }
        (None, Some(tpl)) => match parse_template(tpl) {
            Ok(p) => Input::Template(p),
            Err(e) => {
                mk.problem(&format!("{key}.template"), e);
                Input::Constant
            }
        },
        (Some(_), Some(_)) => {
            mk.problem(key, "give either column or template, not both");
            Input::Constant
        }
        (None, None) => {
            if t.default.is_none() {
                mk.problem(key, "expected column = \"…\", template = \"…\" or at least default = \"…\"");
            }
            Input::Constant
        }
    };
    let mut transforms = Vec::new();
    for (i, name) in t.transform.iter().enumerate() {
        match Transform::parse(name) {
            Some(x) => transforms.push(x),
            None => mk.problem(
                &format!("{key}.transform"),
                format!(
                    "unknown transform \"{name}\" (item {}); expected trim, lowercase, uppercase, title-case or collapse-spaces",
                    i + 1
                ),
            ),
        }
    }
    let map = t.map.as_ref().map(|m| {
        m.iter()
            .filter_map(|(k, v)| match scalar_text(v) {
                Some(s) => Some((k.clone(), s)),
                None => {
                    mk.problem(
                        &format!("{key}.map"),
                        format!("value for \"{k}\" must be text, a number or true/false; got {}", v.type_str()),
                    );
                    None
                }
            })
            .collect::<Vec<_>>()
    });
    let scalar = |mk: &mut Checker, what: &str, v: &Option<toml::Value>| -> Option<String> {
        let v = v.as_ref()?;
        let s = scalar_text(v);
        if s.is_none() {
            mk.problem(&format!("{key}.{what}"), format!("expected text, a number or true/false; got {}", v.type_str()));
        }
        s
    };
    let fallback = scalar(mk, "fallback", &t.fallback);
    let default = scalar(mk, "default", &t.default);
    if fallback.is_some() && map.is_none() {
        mk.problem(&format!("{key}.fallback"), "fallback only applies with map = { … }");
    }
    if let Some(fmt) = &t.date
        && !fmt.contains('%')
    {
        mk.problem(&format!("{key}.date"), format!("expected a strftime format such as \"%d/%m/%Y\"; got \"{fmt}\""));
    }
    if mk.problems.len() > before {
        return None;
    }
    Some(FieldRule { input, transforms, map, fallback, default, date: t.date.clone() })
}
