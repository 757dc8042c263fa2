//! Configuration: `connectors.toml` and the mapping files it names.
//!
//! Validate, then build: `load` reads every file, checks every section on its own, and
//! returns the typed configuration together with *every* problem found, each with file,
//! line, key, what was expected and what was found. No network.
//!
//! Here: `connectors.toml`, whose shapes as written are in `raw.rs`. Mapping files are
//! read and checked in `mapping.rs`; closed sets and values with units are serde types
//! (`word.rs`, `units.rs`); `checker.rs` collects and locates the problems.
//!
//! Each stage owns the types it is configured with (`format::{Format, SourceOptions}`,
//! `source::settings`, `mapping::rules`, `plan::settings`, `crate::secret`); this module
//! parses, checks and assembles them, and re-exports them under the names its callers know.
//! `config` may import a stage, never the reverse (platform and state still take their
//! settings from here; `config` imports neither).

mod checker;
mod exchange;
mod lifecycle;
pub mod lines;
pub mod mapping;
mod pasted;
pub mod platform;
pub mod raw;
pub mod units;
pub mod word;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::exit::{Classify, Exit};
/// The format stage's own types, named here too for the code that reads the configuration.
pub use crate::format::Format;
use crate::plan::budget::ChangeBudget;
pub use crate::plan::settings::{Limit, OnMissing, Rehire, SyncRule};
use crate::schedule::Schedule;
pub use crate::secret::{SecretError, SecretRef};
pub use crate::source::settings::{After, FileRule, HostKeyPolicy, Pick, Sftp, SftpAuth, SourceConfig};
use checker::Checker;
pub use mapping::{Mapping, UniqueId, parse_mapping};
pub use platform::{Platform, PlatformAuth, Target};
use raw::*;

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

/// The connectors by name, shared: the daemon's scheduler, status page and reload plan
/// hold the same ones (a connector with its mapping is tens of kilobytes; four copies of
/// 10,000 of them were most of a fleet worker's memory).
pub type Connectors = BTreeMap<String, std::sync::Arc<Connector>>;

#[derive(Debug, Clone)]
pub struct Config {
    pub path: PathBuf,
    /// Directory of the config file; relative paths inside it are relative to this.
    pub dir: PathBuf,
    /// `[platform]`: the default target (None when absent or refused).
    pub platform: Option<Platform>,
    pub state: State,
    pub daemon: Daemon,
    /// `[smtp]`: the mail server of the customer notices (`exchange::email`).
    pub smtp: Option<crate::exchange::email::Smtp>,
    /// Valid connectors.
    pub connectors: Connectors,
    /// Every problem; a connector named in a problem is absent from `connectors`.
    pub problems: Vec<Problem>,
    /// Names of connectors that have problems (refused by sync and the scheduler).
    pub broken: Vec<String>,
    /// Broken connectors whose only problems are in their mapping (not written yet, most
    /// often), with `Mapping::unwritten`: `fetch` may still take a sample from their source.
    pub unmapped: BTreeMap<String, Connector>,
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

    /// The connector's platform target, or the problems that keep it from being usable
    /// (it inherits a `[platform]` that was refused).
    pub fn target(&self, conn: &Connector) -> Result<std::sync::Arc<Target>, ConfigError> {
        match &conn.target {
            Some(t) => Ok(t.clone()),
            None => Err(self.platform().err().unwrap_or_else(|| ConfigError::Invalid(Vec::new()))),
        }
    }

    /// The distinct targets of the valid connectors, each once, with its connectors.
    pub fn targets(&self) -> Vec<(std::sync::Arc<Target>, Vec<&str>)> {
        let mut out: Vec<(std::sync::Arc<Target>, Vec<&str>)> = Vec::new();
        for c in self.connectors.values() {
            let Some(t) = &c.target else { continue };
            match out.iter_mut().find(|(u, _)| u.key == t.key) {
                Some((_, names)) => names.push(&c.name),
                None => out.push((t.clone(), vec![&c.name])),
            }
        }
        out
    }

    /// The default platform (`[platform]`), or the problems that keep it from being usable.
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
pub struct State {
    /// "sqlite:///abs/path.db" after resolution, or a postgres URL (never with a password).
    /// Empty when `[state]` was refused (its problems say why): nothing may open a store then.
    pub url: String,
    /// Where the PostgreSQL password comes from; read when the store is opened.
    pub password: Option<StatePassword>,
    /// `[state] ca_file`, resolved: the private CA the PostgreSQL server's certificate is checked against.
    pub ca_file: Option<PathBuf>,
    /// A dead worker's leases and claimed slots are taken over after this long.
    pub lease_ttl: Duration,
    /// How long the audit trail and stopped runs' plans are kept (`[state] audit_retention`).
    pub audit_retention: Duration,
}

/// The default `[state] lease_ttl`: a dead worker's connectors move within this long.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(20);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatePassword {
    Env(String),
    File(PathBuf),
}

/// `[state] audit_retention` when not set: 180 days.
pub const DEFAULT_AUDIT_RETENTION: Duration = Duration::from_secs(180 * 24 * 3600);

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
    /// When the daemon runs a reconcile (`sync --reconcile`) of this connector.
    pub reconcile: Option<Schedule>,
    pub jitter: Duration,
    pub mapping_path: PathBuf,
    pub mapping: Mapping,
    pub source: SourceConfig,
    pub file: FileRule,
    pub sync: SyncRule,
    /// Where its people live: `[connectors.NAME.platform]` over `[platform]`, shared (one
    /// `Arc` per target). None: it inherits a `[platform]` that was refused
    /// (`Config::target` says why).
    pub target: Option<std::sync::Arc<Target>>,
    /// OpenPGP exports, result files, notices (`config::exchange`).
    pub exchange: crate::exchange::Exchange,
}

// `After` is the source's; how it is written in connectors.toml is read here.
impl std::str::FromStr for After {
    type Err = String;
    fn from_str(s: &str) -> Result<After, String> {
        match s {
            "keep" => Ok(After::Keep),
            "delete" => Ok(After::Delete),
            o => match o.strip_prefix("move:") {
                Some(dir) if !dir.is_empty() => Ok(After::Move(dir.to_string())),
                _ => {
                    let hint = word::did_you_mean(o, ["keep", "delete"]).map(|w| format!(" — did you mean \"{w}\"?")).unwrap_or_default();
                    Err(format!("expected \"keep\", \"delete\" or \"move:/folder/\"; got \"{o}\"{hint}"))
                }
            },
        }
    }
}

impl<'de> Deserialize<'de> for After {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        word::from_str(d)
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
        state: State {
            // Known once the file is read: a file that does not read names no store, and
            // no command may use the default one in its place.
            url: String::new(),
            password: None,
            ca_file: None,
            lease_ttl: DEFAULT_LEASE_TTL,
            audit_retention: DEFAULT_AUDIT_RETENTION,
        },
        daemon: Daemon { listen: None, max_concurrent_runs: 4, grace: Duration::from_secs(300) },
        smtp: None,
        connectors: BTreeMap::new(),
        problems: Vec::new(),
        broken: Vec::new(),
        unmapped: BTreeMap::new(),
    };
    let Some(doc) = ck.toml(src) else {
        cfg.problems = ck.problems;
        return cfg;
    };
    let Some(top) = ck.section::<RawFileTop>("", toml::Value::Table(doc)) else {
        cfg.problems = ck.problems;
        return cfg;
    };

    cfg.state.url = format!("sqlite://{}", dir.join("state/rostersync.db").display());
    // `[platform]` is the default target; it may be absent when every connector has its own.
    let mut default: Option<(Platform, Option<String>)> = None;
    let mut default_table: Option<toml::Table> = None;
    let own_tables = top.connectors.values().filter(|v| v.get("platform").is_some()).count();
    match top.platform {
        None if own_tables == 0 => ck.problem("platform", "missing [platform] section: kind = \"scim\", base_url, token_env"),
        None => {}
        Some(v) => {
            let before = ck.problems.len();
            let table = v.as_table().cloned();
            if let Some(p) = ck.section::<RawPlatform>("platform", v) {
                // Refused when any of its keys was (an unknown one too), not only its values.
                default = platform::check_platform(&mut ck, dir, "platform", p).filter(|_| ck.problems.len() == before);
                default_table = table.filter(|_| default.is_some());
            }
        }
    }
    cfg.platform = default.as_ref().map(|(p, _)| p.clone());
    let platform_absent = default_table.is_none() && !ck.problems.iter().any(|p| p.key.starts_with("platform"));
    if let Some(v) = top.state {
        let before = ck.problems.len();
        if let Some(s) = ck.section::<RawState>("state", v) {
            check_state(&mut ck, dir, s, &mut cfg.state);
        }
        if ck.problems.len() > before {
            // Refused: every command that needs the store stops (`State::url`), rather
            // than write to the default SQLite file the operator did not choose.
            cfg.state.url.clear();
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
        if let Some(g) = ck.value("daemon.grace", d.grace) {
            cfg.daemon.grace = g.0;
        }
    }
    if let Some(v) = top.smtp {
        cfg.smtp = exchange::check_smtp(&mut ck, dir, v);
    }
    if top.connectors.is_empty() {
        ck.problem("connectors", "no connector defined; add a [connectors.NAME] section (see README.md)");
    }
    let platform = DefaultPlatform { platform: default, table: default_table.as_ref(), absent: platform_absent };
    check_connectors(&mut ck, dir, top.connectors, platform, &mut cfg);
    cfg.problems = ck.problems;
    cfg
}

/// `[platform]` as read: the platform and its name, its table as written (when valid), and
/// whether it is absent.
struct DefaultPlatform<'a> {
    platform: Option<(Platform, Option<String>)>,
    table: Option<&'a toml::Table>,
    absent: bool,
}

/// Every connector, then their platform targets (named once all are read), into `cfg`: a
/// connector with problems is refused alone. `platform` is the default `[platform]`, its
/// table as written, and whether it is absent.
fn check_connectors(ck: &mut Checker, dir: &Path, connectors: BTreeMap<String, toml::Value>, platform: DefaultPlatform, cfg: &mut Config) {
    let DefaultPlatform { platform: default, table: default_table, absent: platform_absent } = platform;
    let mut checked = Vec::new();
    for (name, value) in connectors {
        ck.connector = Some(name.clone());
        let before = ck.problems.len();
        let conn = check_connector(ck, dir, &name, value, default_table);
        if let Some((_, _, platform::Resolved::Default)) = &conn
            && platform_absent
        {
            ck.problem(
                &format!("connectors.{name}"),
                format!("no platform: add [platform] (kind, base_url, token_env) for every connector, or [connectors.{name}.platform] for this one"),
            );
        }
        checked.push((name, conn, ck.problems.len() > before));
        ck.connector = None;
    }
    let resolved = checked
        .iter_mut()
        .filter_map(|(n, c, _)| c.as_mut().map(|c| (n.clone(), std::mem::replace(&mut c.2, platform::Resolved::Refused))));
    let named = platform::name_targets(default, resolved.collect());
    for (conn, key, message) in named.problems {
        ck.connector = Some(conn.clone());
        ck.problem(&key, message);
        if let Some(c) = checked.iter_mut().find(|c| c.0 == conn) {
            c.2 = true;
        }
    }
    ck.connector = None;
    for (name, conn, broken) in checked {
        let conn = conn.map(|(mut c, mapped, _)| {
            c.target = named.by_connector.get(&name).cloned().flatten();
            (c, mapped)
        });
        if broken || conn.is_none() {
            cfg.broken.push(name.clone());
            if let Some((c, false)) = conn {
                cfg.unmapped.insert(name, c);
            }
        } else if let Some((c, _)) = conn {
            cfg.connectors.insert(name, std::sync::Arc::new(c));
        }
    }
    for (conn, key, message) in platform::adoptions_across_targets(&cfg.connectors) {
        ck.connector = Some(conn.clone());
        ck.problem(&key, message);
        cfg.connectors.remove(&conn);
        cfg.broken.push(conn);
    }
    ck.connector = None;
    exchange::require_smtp(ck, cfg);
}

fn check_state(ck: &mut Checker, dir: &Path, s: RawState, out: &mut State) {
    let postgres = s.url.starts_with("postgres://") || s.url.starts_with("postgresql://");
    match check_state_url(dir, &s.url) {
        Ok(url) => out.url = url,
        Err(e) => ck.problem("state.url", e),
    }
    match (s.password_env, s.password_file) {
        (Some(_), Some(_)) => ck.problem("state.password_env", "give either password_env or password_file, not both"),
        (Some(e), None) => {
            ck.env_name("state.password_env", &e);
            out.password = Some(StatePassword::Env(e));
        }
        (None, Some(f)) => out.password = Some(StatePassword::File(resolve(dir, &f))),
        (None, None) => {}
    }
    if out.password.is_some() && !postgres {
        ck.problem("state.password_env", "a password is for a postgres:// store; an SQLite file has none (remove it)");
    }
    if let Some(f) = s.ca_file {
        if !postgres {
            ck.problem("state.ca_file", "a CA is for a postgres:// store; an SQLite file has none (remove it)");
        } else if let Err(e) = check_ca_file_url(&s.url) {
            ck.problem("state.ca_file", e);
        } else {
            out.ca_file = Some(resolve(dir, &f));
        }
    }
    if let Some(r) = ck.value("state.audit_retention", s.audit_retention) {
        out.audit_retention = r.0;
    }
    if let Some(ttl) = ck.value("state.lease_ttl", s.lease_ttl) {
        if (Duration::from_secs(1)..=Duration::from_secs(3600)).contains(&ttl.0) {
            out.lease_ttl = ttl.0;
        } else {
            ck.problem("state.lease_ttl", format!("expected 1s to 1h; got {}", humantime::format_duration(ttl.0)));
        }
    }
}

/// `ca_file` verifies the server's certificate, so the URL must not ask for a mode that
/// ignores it (sqlx, unlike libpq, checks nothing below verify-ca even with a CA given), nor
/// name a second CA (`sslrootcert`, relative to wherever the process runs).
fn check_ca_file_url(url: &str) -> Result<(), String> {
    let Ok(u) = url::Url::parse(url) else { return Ok(()) }; // state.url says why
    for (k, v) in u.query_pairs() {
        match &*k {
            "sslmode" | "ssl-mode" if v != "verify-full" && v != "verify-ca" => {
                return Err(format!(
                    "with sslmode={v} in the URL the server's certificate is not checked, so ca_file would be ignored; use sslmode=verify-full (or leave sslmode out)"
                ));
            }
            "sslrootcert" | "ssl-root-cert" | "ssl-ca" => {
                return Err(format!("the URL names a CA too ({k}); give the CA once, as ca_file (relative to this file)"));
            }
            _ => {}
        }
    }
    Ok(())
}

fn check_state_url(dir: &Path, url: &str) -> Result<String, String> {
    // Before anything that echoes the URL: a URL with a password is never shown.
    if let Some((password, place)) = pasted::in_url(url) {
        pasted::register(&password);
        return Err(format!(
            "the URL contains a password ({place}; the value is not shown); remove it from the URL and give password_env (a variable's name) or password_file"
        ));
    }
    if let Some(rest) = url.strip_prefix("sqlite://") {
        if rest.is_empty() {
            return Err("expected sqlite://PATH, e.g. \"sqlite://state/rostersync.db\"".into());
        }
        return Ok(format!("sqlite://{}", resolve(dir, rest).display()));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let u =
            url::Url::parse(url).map_err(|e| format!("expected \"postgres://USER@HOST:PORT/DATABASE\"; got an unreadable URL ({e})"))?;
        if u.host_str().is_none_or(str::is_empty) {
            return Err("expected \"postgres://USER@HOST:PORT/DATABASE\": the host is missing".into());
        }
        return Ok(url.to_string());
    }
    Err(format!("expected \"sqlite://PATH\" or \"postgres://USER@HOST:PORT/DATABASE\"; got \"{url}\""))
}

/// A secret given as `{name}_env` or `{name}_file` under `table`: None when refused (a
/// problem says why), Some(None) when neither is given (the caller decides whether that is
/// allowed). A file's path is relative to the config; whether it exists is the
/// environment's business (`preflight`), not the file's: a systemd credential exists only
/// once the service runs.
fn secret(ck: &mut Checker, dir: &Path, table: &str, name: &str, env: Option<&str>, file: Option<&str>) -> Option<Option<SecretRef>> {
    match (env, file) {
        (Some(_), Some(_)) => {
            ck.problem(&format!("{table}.{name}_file"), format!("give either {name}_env or {name}_file, not both"));
            None
        }
        (Some(v), None) => {
            let before = ck.problems.len();
            ck.env_name(&format!("{table}.{name}_env"), v);
            (ck.problems.len() == before).then(|| Some(SecretRef::Env(v.to_string())))
        }
        (None, Some(f)) if f.trim().is_empty() => {
            ck.problem(
                &format!("{table}.{name}_file"),
                "expected the path of a file holding the secret, e.g. \"/run/credentials/rostersync.service/token\"",
            );
            None
        }
        (None, Some(f)) => Some(Some(SecretRef::File(resolve(dir, f)))),
        (None, None) => Some(None),
    }
}

/// The connector, and whether its mapping was read (false: `Mapping::unwritten` stands in,
/// and the mapping's problems are the connector's only ones).
fn check_connector(
    ck: &mut Checker,
    dir: &Path,
    name: &str,
    value: toml::Value,
    default_platform: Option<&toml::Table>,
) -> Option<(Connector, bool, platform::Resolved)> {
    let before = ck.problems.len();
    let key = format!("connectors.{name}");
    let raw = ck.section::<RawConnector>(&key, value)?;
    let schedule = raw.schedule.as_ref().and_then(|s| match Schedule::parse(s, raw.timezone.as_deref()) {
        Ok(s) => Some(s),
        Err(e) => {
            let k = match e {
                crate::schedule::ScheduleError::Timezone(_) => "timezone",
                crate::schedule::ScheduleError::Spec(_) => "schedule",
            };
            ck.problem(&format!("{key}.{k}"), e.to_string());
            None
        }
    });
    let reconcile = raw.reconcile.as_ref().and_then(|s| match Schedule::parse(s, raw.timezone.as_deref()) {
        Ok(s) => Some(s),
        // A bad timezone is said once, at the schedule's parse, when there is one.
        Err(crate::schedule::ScheduleError::Timezone(_)) if raw.schedule.is_some() => None,
        Err(e) => {
            let k = match e {
                crate::schedule::ScheduleError::Timezone(_) => "timezone",
                crate::schedule::ScheduleError::Spec(_) => "reconcile",
            };
            ck.problem(&format!("{key}.{k}"), e.to_string());
            None
        }
    });
    if raw.schedule.is_none()
        && raw.reconcile.is_none()
        && raw.timezone.is_some()
        && let Err(e) = Schedule::parse("daily 00:00", raw.timezone.as_deref())
    {
        ck.problem(&format!("{key}.timezone"), e.to_string());
    }
    let jitter = ck.value(&format!("{key}.jitter"), raw.jitter).map_or(Duration::ZERO, |d| d.0);

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
    let mut exchange = crate::exchange::Exchange::default();
    let file = match raw.file {
        None => {
            ck.problem(&key, format!("no [{key}.file] section: give at least path = \"/exports/employees_*.csv\""));
            None
        }
        Some(f) => ck.section::<RawFile>(&format!("{key}.file"), f).and_then(|f| {
            exchange.pgp = exchange::check_pgp(ck, dir, &key, &f);
            check_file(ck, &key, f, is_local)
        }),
    };
    if let Some(r) = raw.result {
        exchange.result = exchange::check_result(ck, &key, r);
    }
    if let Some(n) = raw.notify {
        exchange.notify = exchange::check_notify(ck, &key, n);
    }
    let sync = match raw.sync {
        None => Some(SyncRule::default()),
        Some(s) => ck.section::<RawSync>(&format!("{key}.sync"), s).map(|s| check_sync(ck, &key, s)),
    };
    let resolved = match raw.platform {
        None => platform::Resolved::Default,
        Some(v) => own_platform(ck, dir, &key, v, default_platform),
    };
    let mapping_path = resolve(dir, &raw.mapping);
    let rest_ok = ck.problems.len() == before;
    let mapping = mapping::load(ck, &format!("{key}.mapping"), &mapping_path);
    let mapped = mapping.is_some();
    let mapping = match mapping {
        Some(m) => m,
        None if rest_ok => Mapping::unwritten(),
        None => return None,
    };
    Some((
        Connector {
            name: name.to_string(),
            customer: raw.customer.unwrap_or_else(|| name.to_string()),
            schedule,
            reconcile,
            jitter,
            mapping_path,
            mapping,
            source: source?,
            file: file?,
            sync: sync?,
            target: None,
            exchange,
        },
        mapped,
        resolved,
    ))
}

/// `[connectors.NAME.platform]`: its keys over `[platform]`'s, checked like `[platform]`
/// (unknown keys with the nearest known one, located in the connector's table).
fn own_platform(ck: &mut Checker, dir: &Path, key: &str, v: toml::Value, default: Option<&toml::Table>) -> platform::Resolved {
    let table = format!("{key}.platform");
    let toml::Value::Table(own) = v else {
        ck.problem(&table, "expected a table: [connectors.NAME.platform] with the keys of [platform] it overrides (base_url, token_env …)");
        return platform::Resolved::Refused;
    };
    match ck.section::<RawPlatform>(&table, platform::merged(default, own)).and_then(|p| platform::check_platform(ck, dir, &table, p)) {
        Some((p, name)) => platform::Resolved::Own(Box::new(p), name),
        None => platform::Resolved::Refused,
    }
}

fn check_sftp(ck: &mut Checker, dir: &Path, key: &str, s: RawSftp) -> Option<SourceConfig> {
    let before = ck.problems.len();
    let k = |f: &str| format!("{key}.sftp.{f}");
    // A host holding a password is refused, and named only as HOST in the hints below.
    let pasted = check_sftp_login(ck, &k, &s.host, &s.username);
    let host = if pasted { "HOST" } else { s.host.as_str() };
    if !pasted && (s.host.trim().is_empty() || s.host.contains(char::is_whitespace)) {
        ck.problem(&k("host"), format!("expected a host name or address; got \"{host}\""));
    }
    let port = match s.port {
        None => 22,
        Some(p) if (1..=65535).contains(&p) => p as u16,
        Some(p) => {
            ck.problem(&k("port"), format!("expected a port from 1 to 65535; got {p}"));
            22
        }
    };
    let auth = match ck.value(&k("auth"), Some(s.auth)) {
        None => None,
        Some(AuthKind::Key) => match &s.private_key {
            Some(pk) => secret(ck, dir, &format!("{key}.sftp"), "passphrase", s.passphrase_env.as_deref(), s.passphrase_file.as_deref())
                .map(|passphrase| SftpAuth::Key { private_key: resolve(dir, pk), passphrase }),
            None => {
                ck.problem(
                    &k("private_key"),
                    "missing: auth = \"key\" needs private_key = \"secrets/NAME_ed25519\" (an OpenSSH private key file)",
                );
                None
            }
        },
        Some(kind @ (AuthKind::Password | AuthKind::KeyboardInteractive)) => {
            match secret(ck, dir, &format!("{key}.sftp"), "password", s.password_env.as_deref(), s.password_file.as_deref()) {
                None => None,
                Some(Some(password)) => Some(if kind == AuthKind::Password {
                    SftpAuth::Password { password }
                } else {
                    SftpAuth::KeyboardInteractive { password }
                }),
                Some(None) => {
                    ck.problem(
                        &k("password_env"),
                        format!("missing: auth = \"{}\" needs password_env = \"NAME_SFTP_PASSWORD\"", kind.name()),
                    );
                    None
                }
            }
        }
    };
    let host_key = match (&s.host_key, &s.known_hosts) {
        (Some(h), None) => {
            if !is_sha256_fingerprint(h) {
                ck.problem(&k("host_key"), format!(
                    "expected a SHA256 fingerprint such as \"SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s\" (run `rostersync keyscan {}:{port}`); got \"{h}\"",
                    host
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
                        host,
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
                host
            ));
            None
        }
    };
    let timeout = ck.value(&k("timeout"), s.timeout).map_or(Duration::from_secs(30), |d| d.0);
    if ck.problems.len() > before {
        return None;
    }
    Some(SourceConfig::Sftp(Sftp { host: s.host, port, username: s.username, auth: auth?, host_key: host_key?, timeout }))
}

/// Refuses a password pasted into `host` (`sftp://u:PW@h`, `u:PW@h`) or `username` (`u:PW`),
/// without echoing either value. True when the host held one (it must not be shown).
fn check_sftp_login(ck: &mut Checker, k: &dyn Fn(&str) -> String, host: &str, username: &str) -> bool {
    const FIX: &str = "use password_env (a variable's name) or password_file for the password";
    let in_host = pasted::in_url(host);
    if let Some((password, place)) = &in_host {
        pasted::register(password);
        ck.problem(
            &k("host"),
            format!("holds a password ({place}; the value is not shown): give the host name alone here, the user as username, and {FIX}"),
        );
    }
    if let Some((password, place)) = pasted::in_username(username) {
        pasted::register(&password);
        ck.problem(&k("username"), format!("holds a password ({place}; the value is not shown): give the user name alone here and {FIX}"));
    }
    in_host.is_some()
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
    } else if let Err(e) = crate::source::select::compile_glob(&f.path) {
        // The same compiler the source lists with: what `check` accepts, a run can match.
        ck.problem(&k("path"), e.to_string());
    }
    let pick = ck.value(&k("pick"), f.pick).unwrap_or_default();
    let format = ck.value(&k("format"), f.format).unwrap_or_default().fixed();
    let default_age = if is_local { Duration::ZERO } else { Duration::from_secs(120) };
    let min_age = ck.value(&k("min_age"), f.min_age).map_or(default_age, |d| d.0);
    let after = ck.value(&k("after"), f.after).unwrap_or_default();
    let stale_after = ck.value(&k("stale_after"), f.stale_after).map(|d| d.0);
    let max_size = ck.value(&k("max_size"), f.max_size).map_or(2 * 1024 * 1024 * 1024, |s| s.0);
    if ck.problems.len() > before {
        return None;
    }
    Some(FileRule { path: f.path, pick, format, min_age, after, stale_after, max_size })
}

fn check_sync(ck: &mut Checker, key: &str, s: RawSync) -> SyncRule {
    let d = SyncRule::default();
    SyncRule {
        on_missing: ck.value(&format!("{key}.sync.on_missing"), s.on_missing).unwrap_or(d.on_missing),
        max_deactivations: ck.value(&format!("{key}.sync.max_deactivations"), s.max_deactivations).unwrap_or(d.max_deactivations),
        max_invalid: ck.value(&format!("{key}.sync.max_invalid"), s.max_invalid).unwrap_or(d.max_invalid),
        adopt_from: check_adopt_from(ck, key, s.adopt_from),
        rehire: ck.value(&format!("{key}.sync.rehire"), s.rehire).unwrap_or(d.rehire),
        budget: ChangeBudget {
            identity: ck.value(&format!("{key}.sync.max_identity_changes"), s.max_identity_changes).unwrap_or(d.budget.identity),
            blanked: ck.value(&format!("{key}.sync.max_blanked"), s.max_blanked).unwrap_or(d.budget.blanked),
            updates: ck.value(&format!("{key}.sync.max_updates"), s.max_updates).unwrap_or(d.budget.updates),
            rekeys: ck.value(&format!("{key}.sync.max_rekeys"), s.max_rekeys).unwrap_or(d.budget.rekeys),
            creates: ck.value(&format!("{key}.sync.max_creates"), s.max_creates).unwrap_or(d.budget.creates),
        },
        lifecycle: lifecycle::check(
            ck,
            key,
            lifecycle::Keys {
                create_inactive: s.create_inactive,
                protected: s.protected,
                on_safeguard: s.on_safeguard,
                out_of_scope: s.out_of_scope,
                deactivate_after: s.deactivate_after,
                create_lead: s.create_lead,
            },
        ),
        max_run_time: match ck.value(&format!("{key}.sync.max_run_time"), s.max_run_time) {
            Some(d) if d.0.is_zero() => {
                ck.problem(&format!("{key}.sync.max_run_time"), "expected a duration above zero, e.g. \"30m\" or \"2h\"");
                d.0
            }
            Some(d) => d.0,
            None => d.max_run_time,
        },
        max_memory: match ck.value(&format!("{key}.sync.max_memory"), s.max_memory) {
            Some(m) if m.0 == 0 => {
                ck.problem(&format!("{key}.sync.max_memory"), "expected a size above zero, e.g. \"512MiB\" or \"2GiB\"");
                d.max_memory
            }
            Some(m) => m.0,
            None => d.max_memory,
        },
    }
}

/// `adopt_from` names other connectors: naming this one would make every account its own.
fn check_adopt_from(ck: &mut Checker, key: &str, names: Vec<String>) -> Vec<String> {
    let me = key.strip_prefix("connectors.").unwrap_or(key);
    if names.iter().any(|n| n == me) {
        ck.problem(
            &format!("{key}.sync.adopt_from"),
            format!("names this connector itself (\"{me}\"); list the connectors whose accounts it may take over, e.g. [\"bamboo\"]"),
        );
    }
    names.into_iter().filter(|n| n != me).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAPPING: &str = "unique_id = \"employee_id\"\n[fields]\nemployee_id = \"Id\"\nfirst_name = \"First\"\nlast_name = \"Last\"\n";
    const FP: &str = "SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s";

    /// Loads `src` as `DIR/connectors.toml`, with `DIR/m.toml` a valid mapping.
    fn load(src: &str) -> Config {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("m.toml"), MAPPING).unwrap();
        load_str(src, &dir.path().join("connectors.toml"), dir.path())
    }

    /// A valid file with extra lines in [platform], the connector's source table, [file] and
    /// [sync]. The source is a local folder unless `source` starts with "[sftp]".
    fn file(platform: &str, source: &str, file: &str, sync: &str) -> String {
        let source = match source.strip_prefix("[sftp]\n") {
            Some(s) => format!("[connectors.a.sftp]\nhost = \"h.example\"\nusername = \"u\"\nhost_key = \"{FP}\"\n{s}"),
            None => format!("[connectors.a.local]\ndir = \".\"\n{source}"),
        };
        format!(
            "[platform]\nkind = \"scim\"\nbase_url = \"http://127.0.0.1:1\"\ntoken_env = \"T\"\n{platform}\n[connectors.a]\nmapping = \"m.toml\"\n{source}\n[connectors.a.file]\npath = \"x.csv\"\n{file}\n[connectors.a.sync]\n{sync}\n"
        )
    }

    /// "key: message" of the one problem, which must be located.
    fn only_problem(cfg: &Config) -> String {
        assert_eq!(cfg.problems.len(), 1, "{:#?}", cfg.problems);
        let p = &cfg.problems[0];
        assert!(p.line.is_some(), "{p}");
        format!("{}: {}", p.key, p.message)
    }

    fn connector(cfg: &Config) -> &Connector {
        assert!(cfg.problems.is_empty(), "{:#?}", cfg.problems);
        &cfg.connectors["a"]
    }

    #[test]
    fn a_reconcile_schedule_reads_like_schedule_and_says_where_it_is_wrong() {
        let with =
            |spec: &str| file("", "", "", "").replace("mapping = \"m.toml\"\n", &format!("mapping = \"m.toml\"\nreconcile = \"{spec}\"\n"));
        let cfg = load(&with("weekly sun 03:00"));
        let c = connector(&cfg);
        assert_eq!(c.reconcile.as_ref().map(|s| s.spec.as_str()), Some("weekly sun 03:00"));
        assert!(c.schedule.is_none());
        let msg = only_problem(&load(&with("fortnightly")));
        assert!(msg.starts_with("connectors.a.reconcile: "), "{msg}");
    }

    #[test]
    fn a_minimal_file_is_valid_and_takes_the_defaults() {
        let cfg = load(&file("", "", "", ""));
        let c = connector(&cfg);
        assert_eq!(c.customer, "a");
        assert!(c.schedule.is_none());
        assert!(c.reconcile.is_none());
        assert_eq!(c.jitter, Duration::ZERO);
        assert!(matches!(&c.source, SourceConfig::Local { dir } if dir == &cfg.dir.join(".")));
        let f = &c.file;
        assert_eq!((f.path.as_str(), f.pick, f.format, f.min_age), ("x.csv", Pick::Newest, None, Duration::ZERO));
        assert_eq!((&f.after, f.stale_after, f.max_size), (&After::Keep, None, 2 * 1024 * 1024 * 1024));
        assert_eq!(c.sync.on_missing, OnMissing::Deactivate);
        assert_eq!((c.sync.max_deactivations, c.sync.max_invalid), (Limit::Percent(10.0), Limit::Percent(5.0)));
        assert_eq!(c.mapping.unique_id, UniqueId::EmployeeId);
        let p = cfg.platform().unwrap();
        assert_eq!((p.bulk, p.max_concurrency, p.timeout), (true, 8, Duration::from_secs(30)));
        assert!(matches!(&p.auth, PlatformAuth::Bearer { token } if token == "T"));
        assert_eq!((cfg.daemon.max_concurrent_runs, cfg.daemon.grace, cfg.daemon.listen), (4, Duration::from_secs(300), None));
        assert_eq!(cfg.state.url, format!("sqlite://{}", cfg.dir.join("state/rostersync.db").display()));
        assert!(cfg.broken.is_empty());
    }

    #[test]
    fn sftp_takes_its_defaults() {
        let cfg = load(&file("", "[sftp]\nauth = \"password\"\npassword_env = \"P\"\n", "", ""));
        let c = connector(&cfg);
        let SourceConfig::Sftp(s) = &c.source else { panic!("{:?}", c.source) };
        assert_eq!((s.port, s.timeout), (22, Duration::from_secs(30)));
        assert!(matches!(&s.host_key, HostKeyPolicy::Pinned(h) if h == FP));
        assert_eq!(c.file.min_age, Duration::from_secs(120), "SFTP files may still be written");
    }

    #[test]
    fn file_pick() {
        for (v, want) in [("newest", Pick::Newest), ("last-name", Pick::LastName)] {
            assert_eq!(connector(&load(&file("", "", &format!("pick = \"{v}\""), ""))).file.pick, want, "{v}");
        }
        assert_eq!(
            only_problem(&load(&file("", "", "pick = \"lastname\"", ""))),
            "connectors.a.file.pick: expected \"newest\" or \"last-name\"; got \"lastname\" — did you mean \"last-name\"?"
        );
    }

    #[test]
    fn file_path_globs_are_checked_by_the_matcher_the_source_uses() {
        let with = |path: &str| load(&file("", "", "", "").replace("path = \"x.csv\"", &format!("path = \"{path}\"")));
        assert_eq!(connector(&with("exports/employees_[0-9].csv")).file.path, "exports/employees_[0-9].csv");
        let p = only_problem(&with("employees_[.csv"));
        assert!(p.starts_with("connectors.a.file.path: ") && p.contains("employees_[.csv"), "{p}");
    }

    #[test]
    fn file_format() {
        for (v, want) in [
            ("auto", None),
            ("csv", Some(Format::Csv)),
            ("xlsx", Some(Format::Xlsx)),
            ("xls", Some(Format::Xls)),
            ("ods", Some(Format::Ods)),
            ("json", Some(Format::Json)),
            ("ndjson", Some(Format::Ndjson)),
            ("jsonl", Some(Format::Ndjson)),
        ] {
            assert_eq!(connector(&load(&file("", "", &format!("format = \"{v}\""), ""))).file.format, want, "{v}");
        }
        assert_eq!(
            only_problem(&load(&file("", "", "format = \"xml\"", ""))),
            "connectors.a.file.format: expected \"auto\", \"csv\", \"xlsx\", \"xls\", \"ods\", \"json\", \"jsonl\" or \"ndjson\"; got \"xml\" — did you mean \"xls\"?"
        );
    }

    #[test]
    fn format_by_name_and_by_word() {
        for (name, want) in [
            ("a.csv", Some(Format::Csv)),
            ("A.CSV.GZ", Some(Format::Csv)),
            ("a.tsv", Some(Format::Csv)),
            ("a.txt.zip", Some(Format::Csv)),
            ("a.xlsx", Some(Format::Xlsx)),
            ("a.jsonl", Some(Format::Ndjson)),
            ("a.ndjson", Some(Format::Ndjson)),
            ("a.json", Some(Format::Json)),
            ("a.pdf", None),
            ("noext", None),
        ] {
            assert_eq!(Format::from_name(name), want, "{name}");
        }
        assert_eq!(Format::parse("ods"), Some(Format::Ods));
        assert_eq!(Format::parse("auto"), None);
    }

    #[test]
    fn file_after() {
        for (v, want) in
            [("keep", After::Keep), ("delete", After::Delete), ("move:/exports/processed/", After::Move("/exports/processed/".into()))]
        {
            assert_eq!(connector(&load(&file("", "", &format!("after = \"{v}\""), ""))).file.after, want, "{v}");
        }
        for (v, hint) in [("move:", ""), ("archive", ""), ("delet", " — did you mean \"delete\"?")] {
            assert_eq!(
                only_problem(&load(&file("", "", &format!("after = \"{v}\""), ""))),
                format!("connectors.a.file.after: expected \"keep\", \"delete\" or \"move:/folder/\"; got \"{v}\"{hint}")
            );
        }
    }

    #[test]
    fn sync_adopt_from_and_rehire() {
        let c = connector(&load(&file("", "", "", ""))).sync.clone();
        assert_eq!((c.adopt_from.len(), c.rehire), (0, Rehire::Rekey), "defaults: adopt from nobody, re-key re-hires");
        let c = connector(&load(&file("", "", "", "adopt_from = [\"bamboo\"]\nrehire = \"conflict\""))).sync.clone();
        assert_eq!((c.adopt_from, c.rehire), (vec!["bamboo".to_string()], Rehire::Conflict));
        assert!(only_problem(&load(&file("", "", "", "rehire = \"merge\""))).starts_with("connectors.a.sync.rehire: expected \"rekey\""));
        assert!(
            only_problem(&load(&file("", "", "", "adopt_from = [\"a\"]")))
                .starts_with("connectors.a.sync.adopt_from: names this connector")
        );
    }

    #[test]
    fn sync_on_missing() {
        for (v, want) in [("deactivate", OnMissing::Deactivate), ("delete", OnMissing::Delete), ("ignore", OnMissing::Ignore)] {
            assert_eq!(connector(&load(&file("", "", "", &format!("on_missing = \"{v}\"")))).sync.on_missing, want, "{v}");
        }
        assert_eq!(
            only_problem(&load(&file("", "", "", "on_missing = \"remove\""))),
            "connectors.a.sync.on_missing: expected \"deactivate\", \"delete\" or \"ignore\"; got \"remove\""
        );
    }

    #[test]
    fn platform_kind_and_bulk() {
        let cfg = load(&file("bulk = \"off\"", "", "", ""));
        assert!(!cfg.platform().unwrap().bulk);
        assert!(load(&file("bulk = \"auto\"", "", "", "")).platform().unwrap().bulk);
        assert_eq!(
            only_problem(&load(&file("bulk = \"never\"", "", "", ""))),
            "platform.bulk: expected \"auto\" or \"off\"; got \"never\""
        );
        let cfg = load(&file("", "", "", "").replace("kind = \"scim\"", "kind = \"ldap\""));
        assert_eq!(only_problem(&cfg), "platform.kind: expected \"scim\"; got \"ldap\"");
        assert!(cfg.platform().is_err());
        assert!(cfg.connectors.contains_key("a"), "a platform problem does not break the connectors");
    }

    #[test]
    fn sftp_auth() {
        let key = connector(&load(&file("", "[sftp]\nauth = \"key\"\nprivate_key = \"k\"\npassphrase_env = \"PP\"\n", "", ""))).clone();
        let SourceConfig::Sftp(s) = key.source else { panic!() };
        assert!(matches!(s.auth, SftpAuth::Key { passphrase: Some(ref p), .. } if p == "PP"));
        for (v, password) in [("password", true), ("keyboard-interactive", false)] {
            let c = connector(&load(&file("", &format!("[sftp]\nauth = \"{v}\"\npassword_env = \"P\"\n"), "", ""))).clone();
            let SourceConfig::Sftp(s) = c.source else { panic!() };
            assert_eq!(matches!(s.auth, SftpAuth::Password { .. }), password, "{v}");
            assert_eq!(matches!(s.auth, SftpAuth::KeyboardInteractive { .. }), !password, "{v}");
        }
        assert_eq!(
            only_problem(&load(&file("", "[sftp]\nauth = \"pasword\"\n", "", ""))),
            "connectors.a.sftp.auth: expected \"key\", \"password\" or \"keyboard-interactive\"; got \"pasword\" — did you mean \"password\"?"
        );
        assert_eq!(
            only_problem(&load(&file("", "[sftp]\nauth = \"keyboard-interactive\"\n", "", ""))),
            "connectors.a.sftp.password_env: missing: auth = \"keyboard-interactive\" needs password_env = \"NAME_SFTP_PASSWORD\""
        );
        assert!(
            only_problem(&load(&file("", "[sftp]\nauth = \"key\"\n", "", "")))
                .starts_with("connectors.a.sftp.private_key: missing: auth = \"key\" needs")
        );
    }

    #[test]
    fn secrets_from_files() {
        let cfg = load(&file("", "", "", "").replace("token_env = \"T\"", "token_file = \"secrets/token\""));
        let p = cfg.platform().unwrap();
        assert!(matches!(&p.auth, PlatformAuth::Bearer { token: SecretRef::File(f) } if f == &cfg.dir.join("secrets/token")));
        assert_eq!(
            only_problem(&load(&file("token_file = \"/run/t\"", "", "", ""))),
            "platform.token_file: give either token_env or token_file, not both"
        );
        let c = connector(&load(&file("", "[sftp]\nauth = \"password\"\npassword_file = \"/run/credentials/x/pw\"\n", "", ""))).clone();
        let SourceConfig::Sftp(s) = c.source else { panic!() };
        assert!(matches!(s.auth, SftpAuth::Password { password: SecretRef::File(ref f) } if f == Path::new("/run/credentials/x/pw")));
        let both = "[sftp]\nauth = \"key\"\nprivate_key = \"k\"\npassphrase_env = \"PP\"\npassphrase_file = \"pp\"\n";
        assert_eq!(
            only_problem(&load(&file("", both, "", ""))),
            "connectors.a.sftp.passphrase_file: give either passphrase_env or passphrase_file, not both"
        );
        let oauth = |keys: &str| {
            load(&file("", "", "", "").replace(
                "token_env = \"T\"",
                &format!("oauth2 = {{ token_url = \"https://idp.example/token\", client_id = \"c\"{keys} }}"),
            ))
        };
        let cfg = oauth(", client_secret_file = \"cs\"");
        assert!(matches!(&cfg.platform().unwrap().auth, PlatformAuth::OAuth2 { client_secret: SecretRef::File(_), .. }));
        assert!(only_problem(&oauth("")).starts_with("platform.oauth2.client_secret_env: missing"));
    }

    #[test]
    fn units_in_the_file() {
        let c = connector(&load(&file(
            "timeout = \"5s\"",
            "",
            "min_age = \"10m\"\nstale_after = \"8d\"\nmax_size = \"100MiB\"",
            "max_deactivations = \"25\"\nmax_invalid = \"0%\"",
        )))
        .clone();
        assert_eq!(
            (c.file.min_age, c.file.stale_after, c.file.max_size),
            (Duration::from_secs(600), Some(Duration::from_secs(8 * 86400)), 100 << 20)
        );
        assert_eq!((c.sync.max_deactivations, c.sync.max_invalid), (Limit::Count(25), Limit::Percent(0.0)));
        assert_eq!(connector(&load(&file("", "", "max_size = \"2 GB\"", ""))).file.max_size, 2_000_000_000);
        let p = only_problem(&load(&file("", "", "min_age = \"soon\"", "")));
        assert!(p.starts_with("connectors.a.file.min_age: expected a duration such as \"30s\", \"2m\" or \"8d\"; got \"soon\""), "{p}");
        let p = only_problem(&load(&file("", "", "max_size = \"5 parsecs\"", "")));
        assert!(p.starts_with("connectors.a.file.max_size: expected a size such as \"2GiB\" or \"500MB\""), "{p}");
        let p = only_problem(&load(&file("", "", "", "max_invalid = \"150%\"")));
        assert_eq!(p, "connectors.a.sync.max_invalid: a percent must be between 0% and 100%; got \"150%\"");
        // Not text at all: a type error, located like the others.
        let p = only_problem(&load(&file("", "", "max_size = 1048576", "")));
        assert!(p.starts_with("connectors.a.file.max_size: invalid type: integer `1048576`"), "{p}");
    }

    #[test]
    fn schedule_problems_point_at_the_key_that_is_wrong() {
        let with = |keys: &str| load(&file("", "", "", "").replacen("mapping = \"m.toml\"\n", &format!("mapping = \"m.toml\"\n{keys}"), 1));
        // A bad timezone is the timezone's problem, said once though two schedules use it.
        let p = only_problem(&with("schedule = \"daily 02:00\"\nreconcile = \"weekly sun 03:00\"\ntimezone = \"Mars/Olympus\"\n"));
        assert!(p.starts_with("connectors.a.timezone: expected an IANA timezone"), "{p}");
        let p = only_problem(&with("reconcile = \"weekly sun 03:00\"\ntimezone = \"Mars/Olympus\"\n"));
        assert!(p.starts_with("connectors.a.timezone: expected an IANA timezone"), "{p}");
        let p = only_problem(&with("timezone = \"Mars/Olympus\"\n"));
        assert!(p.starts_with("connectors.a.timezone: expected an IANA timezone"), "{p}");
        // A bad spec is its own key's, even when it mentions a time.
        let p = only_problem(&with("schedule = \"daily 25:00\"\ntimezone = \"Europe/Paris\"\n"));
        assert!(p.starts_with("connectors.a.schedule: time out of range"), "{p}");
        let p = only_problem(&with("schedule = \"daily 02:00\"\nreconcile = \"fortnightly\"\n"));
        assert!(p.starts_with("connectors.a.reconcile: expected"), "{p}");
    }

    #[test]
    fn every_problem_is_collected_across_and_within_tables() {
        let src = format!(
            "[platform]\nkind = \"scim\"\nbase_url = \"http://127.0.0.1:1\"\ntoken_env = \"T\"\nbulk = \"sometimes\"\ntimeout = \"forever\"\n\n\
             [connectors.a]\nmapping = \"m.toml\"\njitter = \"a bit\"\n[connectors.a.local]\ndir = \".\"\n\
             [connectors.a.file]\npath = \"x.csv\"\npick = \"oldest\"\nformat = \"pdf\"\nmin_age = \"1 fortnight\"\nmax_size = \"huge\"\nafter = \"shred\"\n\
             [connectors.a.sync]\non_missing = \"purge\"\nmax_deactivations = \"lots\"\nmax_invalid = \"200%\"\n\n\
             [connectors.b]\nmapping = \"m.toml\"\n[connectors.b.sftp]\nhost = \"h\"\nport = 70000\nusername = \"u\"\nauth = \"certificate\"\nhost_key = \"{FP}\"\ntimeout = \"later\"\n\
             [connectors.b.file]\npath = \"x.csv\"\n\n\
             [connectors.c]\nmapping = \"m.toml\"\n[connectors.c.local]\ndir = \".\"\n[connectors.c.file]\npath = \"x.csv\"\n"
        );
        let cfg = load(&src);
        let got: Vec<(Option<usize>, &str, Option<&str>)> =
            cfg.problems.iter().map(|p| (p.line, p.key.as_str(), p.connector.as_deref())).collect();
        assert_eq!(
            got,
            vec![
                (Some(6), "platform.timeout", None),
                (Some(5), "platform.bulk", None),
                (Some(10), "connectors.a.jitter", Some("a")),
                (Some(15), "connectors.a.file.pick", Some("a")),
                (Some(16), "connectors.a.file.format", Some("a")),
                (Some(17), "connectors.a.file.min_age", Some("a")),
                (Some(19), "connectors.a.file.after", Some("a")),
                (Some(18), "connectors.a.file.max_size", Some("a")),
                (Some(21), "connectors.a.sync.on_missing", Some("a")),
                (Some(22), "connectors.a.sync.max_deactivations", Some("a")),
                (Some(23), "connectors.a.sync.max_invalid", Some("a")),
                (Some(29), "connectors.b.sftp.port", Some("b")),
                (Some(31), "connectors.b.sftp.auth", Some("b")),
                (Some(33), "connectors.b.sftp.timeout", Some("b")),
            ],
            "{:#?}",
            cfg.problems
        );
        assert_eq!(cfg.broken, vec!["a".to_string(), "b".to_string()]);
        assert_eq!(cfg.connectors.keys().collect::<Vec<_>>(), vec!["c"], "a valid connector still runs");
        assert!(cfg.platform().is_err());
        assert!(matches!(cfg.connector("a"), Err(ConfigError::Invalid(ps)) if ps.iter().all(|p| p.connector.as_deref() != Some("b"))));
        assert!(matches!(cfg.connector("zz"), Err(ConfigError::UnknownConnector { known, .. }) if known == "c, a, b"));
    }

    #[test]
    fn an_unknown_key_stops_only_its_own_table() {
        let cfg = load(&file("", "", "pickk = \"newest\"", "on_missing = \"purge\""));
        let got: Vec<String> = cfg.problems.iter().map(|p| p.to_string()).collect();
        assert_eq!(got.len(), 2, "{got:#?}");
        assert!(
            got[0].contains(":13: connectors.a.file.pickk: unknown key — did you mean `pick`?; found `pickk`, expected one of"),
            "{got:#?}"
        );
        assert!(got[1].contains(":15: connectors.a.sync.on_missing: expected \"deactivate\""), "{got:#?}");
    }

    #[test]
    fn secrets_written_in_place_of_a_variable_name_are_not_echoed() {
        let cfg = load(&file("", "", "", "").replace("token_env = \"T\"", "token_env = \"sk-live-0123456789abcdef\""));
        let p = only_problem(&cfg);
        assert!(p.starts_with("platform.token_env: expected the NAME of an environment variable"), "{p}");
        assert!(!p.contains("0123456789abcdef"), "{p}");
    }

    #[test]
    fn not_toml_is_one_problem_with_its_line() {
        let cfg = load("[platform]\nkind = \"scim\"\nbase_url = \n");
        assert_eq!(cfg.problems.len(), 1);
        assert_eq!(cfg.problems[0].line, Some(3));
        assert!(cfg.problems[0].message.starts_with("not valid TOML"), "{:?}", cfg.problems);
    }

    /// `[state] ca_file`: resolved against the config's folder; refused for SQLite, with a
    /// URL sslmode that would not check the certificate, or with a second CA in the URL.
    #[test]
    fn a_postgres_ca_file_is_resolved_and_refused_where_it_would_be_ignored() {
        let with = |state: &str| load(&file(&format!("\n[state]\n{state}"), "", "", ""));
        let cfg = with("url = \"postgres://rs@db.example/rs?sslmode=verify-ca\"\nca_file = \"tls/ca.pem\"");
        assert!(cfg.problems.is_empty(), "{:?}", cfg.problems);
        assert_eq!(cfg.state.ca_file, Some(cfg.dir.join("tls/ca.pem")));
        let cfg = with("url = \"postgres://rs@db.example/rs\"\nca_file = \"/etc/ssl/db-ca.pem\"");
        assert_eq!(cfg.state.ca_file, Some(PathBuf::from("/etc/ssl/db-ca.pem")));
        let problem = |state: &str| with(state).problems.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("\n");
        let p = problem("url = \"postgres://rs@db.example/rs?sslmode=require\"\nca_file = \"ca.pem\"");
        assert!(p.contains("state.ca_file: with sslmode=require in the URL the server's certificate is not checked"), "{p}");
        let p = problem("url = \"postgres://rs@db.example/rs?sslrootcert=ca.pem\"\nca_file = \"ca.pem\"");
        assert!(p.contains("state.ca_file: the URL names a CA too (sslrootcert)"), "{p}");
        let p = problem("url = \"sqlite://state.db\"\nca_file = \"ca.pem\"");
        assert!(p.contains("state.ca_file: a CA is for a postgres:// store"), "{p}");
    }

    /// `[state]` for a fleet: a postgres URL with the password behind a variable or a file,
    /// never in the URL (and never echoed when it is), and the lease TTL.
    #[test]
    fn a_postgres_state_store_takes_its_password_from_a_variable_or_a_file() {
        let with = |state: &str| load(&file(&format!("\n[state]\n{state}"), "", "", ""));
        let cfg = with(
            "url = \"postgres://rs@db.example:5433/rostersync?sslmode=verify-full\"\npassword_env = \"PG_PASSWORD\"\nlease_ttl = \"15s\"",
        );
        assert!(cfg.problems.is_empty(), "{:?}", cfg.problems);
        assert_eq!(cfg.state.url, "postgres://rs@db.example:5433/rostersync?sslmode=verify-full");
        assert_eq!(cfg.state.password, Some(StatePassword::Env("PG_PASSWORD".into())));
        assert_eq!(cfg.state.lease_ttl, Duration::from_secs(15));
        let cfg = with("url = \"postgresql://rs@db/rostersync\"\npassword_file = \"secrets/pg\"");
        assert!(cfg.problems.is_empty(), "{:?}", cfg.problems);
        assert_eq!(cfg.state.password, Some(StatePassword::File(cfg.dir.join("secrets/pg"))));
        assert_eq!(cfg.state.lease_ttl, DEFAULT_LEASE_TTL);
        assert!(DEFAULT_LEASE_TTL < Duration::from_secs(60), "well under a minute");

        let problems = |state: &str| with(state).problems.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("\n");
        let p = problems("url = \"postgres://rs:hunter2-secret@db/rostersync\"");
        assert!(p.contains("state.url") && p.contains("contains a password") && !p.contains("hunter2-secret"), "{p}");
        let p = problems("url = \"postgres://rs@db/x\"\npassword_env = \"A\"\npassword_file = \"f\"");
        assert!(p.contains("either password_env or password_file"), "{p}");
        let p = problems("url = \"sqlite://s.db\"\npassword_env = \"A\"");
        assert!(p.contains("an SQLite file has none"), "{p}");
        let p = problems("url = \"postgres://rs@db/x\"\npassword_env = \"hunter2 secret!\"");
        assert!(p.contains("state.password_env: expected the NAME of an environment variable"), "{p}");
        let p = problems("url = \"sqlite://s.db\"\nlease_ttl = \"100ms\"");
        assert!(p.contains("state.lease_ttl: expected 1s to 1h"), "{p}");
        let p = problems("url = \"mysql://db/x\"");
        assert!(p.contains(r#"expected "sqlite://PATH" or "postgres://USER@HOST:PORT/DATABASE"; got "mysql://db/x""#), "{p}");
    }

    /// A password pasted into `host`, `username` or `[state] url`, in every form it comes
    /// in: refused where it is (file:line, key), with what to do, and never shown.
    #[test]
    fn passwords_pasted_into_values_are_refused_and_never_shown() {
        const PW: &str = "Pasted-Pw-7c1e";
        let all = |cfg: &Config| cfg.problems.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("\n");
        for host in [format!("sftp://u:{PW}@sftp.example"), format!("u:{PW}@sftp.example")] {
            let cfg = load(
                &file("", "[sftp]\nauth = \"password\"\npassword_env = \"P\"\n", "", "").replace("\"h.example\"", &format!("\"{host}\"")),
            );
            let p = all(&cfg);
            assert!(p.contains("connectors.toml:9: connectors.a.sftp.host: holds a password"), "{p}");
            assert!(p.contains("password_env") && p.contains("password_file"), "says what to do: {p}");
            assert!(!p.contains(PW) && !p.contains("Pasted-P"), "{p}");
            assert!(cfg.broken == ["a"], "the connector does not run");
        }
        for user in [format!("u:{PW}"), format!("u:{PW}@sftp.example")] {
            let cfg = load(
                &file("", "[sftp]\nauth = \"password\"\npassword_env = \"P\"\n", "", "")
                    .replace("username = \"u\"", &format!("username = \"{user}\"")),
            );
            let p = all(&cfg);
            assert!(p.contains("connectors.toml:10: connectors.a.sftp.username: holds a password") && !p.contains(PW), "{p}");
        }
        for url in [
            format!("postgres://rs:{PW}@db/rs"),
            format!("postgres://rs@db/rs?sslmode=verify-full&password={PW}"),
            format!("postgresql+psycopg://rs:{PW}@db/rs"),
            format!("jdbc:postgresql://db/rs?user=rs&password={PW}"),
        ] {
            let cfg = load(&file(&format!("\n[state]\nurl = \"{url}\""), "", "", ""));
            let p = all(&cfg);
            assert!(p.contains(": state.url: the URL contains a password") && p.contains("password_env") && !p.contains(PW), "{p}");
            assert_eq!(cfg.state.url, "", "refused: no store, not the default one");
        }
        // Registered with the redactor: a message built elsewhere from the value masks it.
        assert_eq!(crate::redact::redact(&format!("connect u:{PW}@h")), "connect u:***@h");
    }

    /// A refused `[state]` (any of its keys, or a file that does not read) names no store:
    /// commands that need it stop instead of using the default SQLite file.
    #[test]
    fn a_refused_state_section_names_no_store() {
        let with = |state: &str| load(&file(&format!("\n[state]\n{state}"), "", "", ""));
        assert_eq!(with("url = \"mysql://db/x\"").state.url, "");
        assert_eq!(with("url = \"sqlite://s.db\"\nlease_ttl = \"100ms\"").state.url, "");
        assert_eq!(with("url = \"sqlite://s.db\"\nurl_typo = 1").state.url, "");
        assert_eq!(load("[platform\n").state.url, "");
        assert!(with("url = \"sqlite://s.db\"").state.url.ends_with("/s.db"));
    }
}
