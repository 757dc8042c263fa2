//! The exchange with the customer (`crate::exchange`): the OpenPGP keys of
//! `[connectors.NAME.file]`, `[connectors.NAME.result]`, `[connectors.NAME.notify]` and
//! `[smtp]`, read and checked here so that
//! `mod.rs` only hooks them in. Every key's `///` comment is its documentation (CONFIG.md).

use std::path::Path;

use serde::Deserialize;

use super::checker::Checker;
use super::raw::RawFile;
use super::word::Parsed;
use super::{resolve, secret};
use crate::exchange::email::{NotifyRule, Smtp, SmtpTls};
use crate::exchange::result_file::{self, ResultRule, ResultWhen};
use crate::source::pgp::PgpSettings;
use lettre::message::Mailbox;

/// `[connectors.NAME.result]`: a result file written back to the customer after each run
/// that read an export (to their SFTP server, or the local folder): one CSV line per row
/// that was not synced as it is (line, id, outcome: invalid, conflict, failed or held, and
/// the reason), then a summary line. Written under a temporary name, then renamed; a
/// result that cannot be written is a warning, never a failed sync.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawResult {
    /// Where, e.g. "/results/{file}.result.csv": `{file}` is the export's name, `{run}` the
    /// run id, `{date}` the run's date (UTC, YYYY-MM-DD). Relative to the local folder for
    /// a `[local]` source; the folder is created when missing.
    pub path: String,
    /// "problems" (default: only when a row was not synced as it is, or the run stopped or
    /// failed) or "always".
    pub when: Option<Parsed<ResultWhen>>,
}

/// The `[result]` table of a connector.
pub(super) fn check_result(ck: &mut Checker, key: &str, value: toml::Value) -> Option<ResultRule> {
    let table = format!("{key}.result");
    let r = ck.section::<RawResult>(&table, value)?;
    let before = ck.problems.len();
    let when = ck.value(&format!("{table}.when"), r.when).unwrap_or_default();
    let unknown = result_file::unknown_placeholders(&r.path);
    if r.path.trim().is_empty() || r.path.ends_with('/') {
        ck.problem(&format!("{table}.path"), format!("expected a file's path, e.g. \"/results/{{file}}.result.csv\"; got \"{}\"", r.path));
    } else if !unknown.is_empty() {
        ck.problem(
            &format!("{table}.path"),
            format!("unknown placeholder {}; the placeholders are {}", unknown.join(", "), result_file::PLACEHOLDERS.join(", ")),
        );
    }
    (ck.problems.len() == before).then_some(ResultRule { path: r.path, when })
}

/// `[smtp]`: the mail server that sends notices to customers' contacts
/// (`[connectors.NAME.notify]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSmtp {
    /// The server's host name, e.g. "smtp.example.com".
    pub host: String,
    /// The server's port (default 587 with tls = "starttls", 465 with "tls", 25 with "none").
    pub port: Option<i64>,
    /// The sender, e.g. "Rostersync <rostersync@example.com>".
    pub from: String,
    /// The account to log in with (none: send without logging in).
    pub username: Option<String>,
    /// Environment variable holding the account's password.
    pub password_env: Option<String>,
    /// File holding the account's password, instead of `password_env`.
    pub password_file: Option<String>,
    /// "starttls" (default: STARTTLS required), "tls" (TLS from the first byte) or "none"
    /// (a relay on this machine only).
    pub tls: Option<Parsed<SmtpTls>>,
}

/// `[connectors.NAME.notify]`: the customer's contacts, emailed once per run that found
/// invalid rows, stopped at a safeguard or found the export stale, and at most once per
/// problem until it changes; each notice names the connector, the file, the lines and what
/// to fix. Needs `[smtp]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNotify {
    /// Addresses, e.g. ["hr-it@customer.example"].
    pub email: Vec<String>,
}

/// The `[smtp]` table.
pub(super) fn check_smtp(ck: &mut Checker, dir: &Path, value: toml::Value) -> Option<Smtp> {
    let s = ck.section::<RawSmtp>("smtp", value)?;
    let before = ck.problems.len();
    let tls = ck.value("smtp.tls", s.tls).unwrap_or_default();
    let default_port = match tls {
        SmtpTls::Starttls => 587,
        SmtpTls::Tls => 465,
        SmtpTls::None => 25,
    };
    let port = match s.port {
        None => default_port,
        Some(p) if (1..=65535).contains(&p) => p as u16,
        Some(p) => {
            ck.problem("smtp.port", format!("expected a port from 1 to 65535; got {p}"));
            0
        }
    };
    if s.host.trim().is_empty() || s.host.contains("://") || s.host.contains(':') {
        ck.problem("smtp.host", format!("expected a host name such as \"smtp.example.com\" (no scheme, no port); got \"{}\"", s.host));
    }
    let from = match s.from.parse::<Mailbox>() {
        Ok(m) => Some(m),
        Err(e) => {
            ck.problem(
                "smtp.from",
                format!("expected an address such as \"Rostersync <rostersync@example.com>\" ({e}); got \"{}\"", s.from),
            );
            None
        }
    };
    let password = secret(ck, dir, "smtp", "password", s.password_env.as_deref(), s.password_file.as_deref()).flatten();
    if password.is_some() && s.username.is_none() {
        ck.problem("smtp.username", "a password is given but no username; add username or remove the password");
    }
    if ck.problems.len() > before {
        return None;
    }
    Some(Smtp { host: s.host, port, from: from?, username: s.username, password, tls })
}

/// The `[notify]` table of a connector.
pub(super) fn check_notify(ck: &mut Checker, key: &str, value: toml::Value) -> Option<NotifyRule> {
    let table = format!("{key}.notify");
    let n = ck.section::<RawNotify>(&table, value)?;
    let before = ck.problems.len();
    if n.email.is_empty() {
        ck.problem(&format!("{table}.email"), "expected at least one address, e.g. [\"hr-it@customer.example\"]");
    }
    let mut email = Vec::new();
    for a in &n.email {
        match a.parse::<Mailbox>() {
            Ok(m) => email.push(m),
            Err(e) => ck.problem(&format!("{table}.email"), format!("\"{a}\" is not an email address ({e})")),
        }
    }
    (ck.problems.len() == before).then_some(NotifyRule { email })
}

/// The OpenPGP settings of a `[file]` table, None when it names no key (or a problem says
/// what is wrong). Whether the key files read is the environment's business (`check`).
pub(super) fn check_pgp(ck: &mut Checker, dir: &Path, key: &str, f: &RawFile) -> Option<PgpSettings> {
    let table = format!("{key}.file");
    let k = |x: &str| format!("{table}.{x}");
    let passphrase = secret(ck, dir, &table, "passphrase", f.passphrase_env.as_deref(), f.passphrase_file.as_deref());
    let some_key = f.decrypt_key.is_some() || f.verify_key.is_some();
    if !some_key {
        if f.passphrase_env.is_some() || f.passphrase_file.is_some() {
            ck.problem(&k("passphrase_env"), "a passphrase is for decrypt_key, which is not set; add decrypt_key or remove the passphrase");
        }
        if f.require_signature.is_some() {
            ck.problem(
                &k("require_signature"),
                "require_signature needs verify_key (the customer's public key); add it or remove require_signature",
            );
        }
        return None;
    }
    if f.decrypt_key.is_none() && (f.passphrase_env.is_some() || f.passphrase_file.is_some()) {
        ck.problem(&k("passphrase_env"), "a passphrase is for decrypt_key, which is not set; add decrypt_key or remove the passphrase");
    }
    if f.verify_key.is_none() && f.require_signature == Some(true) {
        ck.problem(&k("require_signature"), "require_signature needs verify_key (the customer's public key) to check the signature with");
    }
    for (name, v) in [("decrypt_key", &f.decrypt_key), ("verify_key", &f.verify_key)] {
        if v.as_deref().is_some_and(|p| p.trim().is_empty()) {
            ck.problem(&k(name), "expected the path of a key file, e.g. \"secrets/acme.key.asc\"");
        }
    }
    Some(PgpSettings {
        decrypt_key: f.decrypt_key.as_deref().map(|p| resolve(dir, p)),
        passphrase: passphrase.flatten(),
        verify_key: f.verify_key.as_deref().map(|p| resolve(dir, p)),
        require_signature: f.require_signature.unwrap_or(f.verify_key.is_some()),
    })
}

/// Notices need a mail server: a connector with `[notify]` and no `[smtp]` is refused.
pub(super) fn require_smtp(ck: &mut Checker, cfg: &mut super::Config) {
    if cfg.smtp.is_some() {
        return;
    }
    let without: Vec<String> = cfg.connectors.iter().filter(|(_, c)| c.exchange.notify.is_some()).map(|(n, _)| n.clone()).collect();
    for name in without {
        ck.connector = Some(name.clone());
        ck.problem(&format!("connectors.{name}.notify"), "notices need a mail server: add an [smtp] section (host, from, tls)");
        ck.connector = None;
        cfg.connectors.remove(&name);
        cfg.broken.push(name);
    }
}
