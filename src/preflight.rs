//! Preflight: what the configuration files cannot say about themselves, checked against
//! the machine a run would start on (as `vector validate` does). Every variable a
//! connector names is set; every secret file and key file exists and can be read; a key
//! file holds a private key that only its owner may read; a known_hosts file can be read
//! and knows the host; hosts are well formed. No network: `online` connects.
//!
//! The decisions are pure: `environment` asks an [`Environment`] (the process's, or a table
//! in tests) and returns one [`Finding`] per problem, each naming the connector, the key
//! and what to do. `check`, the daemon's start and `/healthz` show them.

pub mod online;

use std::ffi::OsString;
use std::io::Read;
use std::path::Path;

use crate::config::{Config, Connector, HostKeyPolicy, PlatformAuth, SecretRef, SftpAuth, SourceConfig};
use crate::source::sftp::auth::{KeyFile, inspect_key};
use crate::source::sftp::hostkey::known_keys;

/// One problem of the environment. `connector` is None for the platform (then every
/// connector is affected).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Finding {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connector: Option<String>,
    /// Dotted key of the setting, e.g. "connectors.acme.sftp.private_key".
    pub key: String,
    pub message: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// What a file looks like to the process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    Missing,
    /// Exists but cannot be read (permissions, a folder, …): the reason.
    Unreadable(String),
    /// Read: the permission bits and the first [`READ_LIMIT`] bytes.
    Read {
        mode: u32,
        bytes: Vec<u8>,
    },
}

/// Key files, known_hosts files and secrets are small; a larger file is read only this far.
pub const READ_LIMIT: u64 = 1 << 20;

/// The questions preflight asks of the machine.
pub trait Environment {
    fn var(&self, name: &str) -> Option<OsString>;
    fn file(&self, path: &Path) -> Probe;
    fn is_dir(&self, path: &Path) -> bool;
}

/// This process's environment and file system.
pub struct System;

impl Environment for System {
    fn var(&self, name: &str) -> Option<OsString> {
        std::env::var_os(name)
    }

    fn is_dir(&self, path: &Path) -> bool {
        path.is_dir()
    }

    fn file(&self, path: &Path) -> Probe {
        use std::os::unix::fs::PermissionsExt;
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Probe::Missing,
            Err(e) => return Probe::Unreadable(e.to_string()),
        };
        if !meta.is_file() {
            return Probe::Unreadable("not a regular file".into());
        }
        let mut bytes = Vec::new();
        match std::fs::File::open(path).and_then(|f| f.take(READ_LIMIT).read_to_end(&mut bytes)) {
            Ok(_) => Probe::Read { mode: meta.permissions().mode() & 0o7777, bytes },
            Err(e) => Probe::Unreadable(e.to_string()),
        }
    }
}

/// Every problem of the environment for the platform and the valid connectors.
pub fn environment(cfg: &Config, env: &dyn Environment) -> Vec<Finding> {
    let mut out = Vec::new();
    // Each target's credential once: `[platform]`'s keys for the default, else the first
    // connector that names it.
    let default = cfg.platform.as_ref().map(crate::config::platform::key_of);
    let all = cfg.targets();
    let mut targets: Vec<(Option<String>, String, &crate::config::Platform)> = Vec::new();
    if let Some(p) = &cfg.platform {
        targets.push((None, "platform".into(), p));
    }
    for (t, names) in &all {
        if Some(&t.key) != default.as_ref() {
            let c = names.first().map(|n| n.to_string()).unwrap_or_default();
            targets.push((Some(c.clone()), format!("connectors.{c}.platform"), &t.platform));
        }
    }
    for (connector, table, p) in targets {
        let mut f = |key: String, message: String| out.push(Finding { connector: connector.clone(), key, message });
        match &p.auth {
            PlatformAuth::Bearer { token } => {
                if let Some(m) = secret(env, token, "the platform's SCIM bearer token") {
                    f(secret_key(&table, "token", token), m);
                }
            }
            PlatformAuth::OAuth2 { client_secret, .. } => {
                if let Some(m) = secret(env, client_secret, "the platform's OAuth2 client secret") {
                    f(secret_key(&format!("{table}.oauth2"), "client_secret", client_secret), m);
                }
            }
        }
    }
    out.extend(state(&cfg.state, env));
    for c in cfg.connectors.values() {
        out.extend(connector(c, env));
    }
    out
}

/// The state store's password and private CA: without them no run can start.
fn state(s: &crate::config::State, env: &dyn Environment) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut f = |key: &str, message: String| out.push(Finding { connector: None, key: key.to_string(), message });
    match &s.password {
        Some(crate::config::StatePassword::Env(var)) => {
            if let Some(m) = secret(env, &SecretRef::Env(var.clone()), "the state store's password") {
                f("state.password_env", m);
            }
        }
        Some(crate::config::StatePassword::File(path)) => {
            if let Some(m) = secret(env, &SecretRef::File(path.clone()), "the state store's password") {
                f("state.password_file", m);
            }
        }
        None => {}
    }
    if let Some(path) = &s.ca_file {
        let p = path.display();
        match env.file(path) {
            Probe::Missing => f(
                "state.ca_file",
                format!("CA file {p} does not exist; put the PEM certificate of the CA that signed the database's certificate there"),
            ),
            Probe::Unreadable(why) => f("state.ca_file", format!("cannot read CA file {p} ({why}); let the service's user read it")),
            Probe::Read { bytes, .. } if !String::from_utf8_lossy(&bytes).contains("-----BEGIN CERTIFICATE-----") => f(
                "state.ca_file",
                format!("CA file {p} holds no PEM certificate (-----BEGIN CERTIFICATE-----); export the CA certificate as PEM"),
            ),
            Probe::Read { .. } => {}
        }
    }
    out
}

/// The problems of one connector's environment.
pub fn connector(c: &Connector, env: &dyn Environment) -> Vec<Finding> {
    let mut out = Vec::new();
    let table = format!("connectors.{}", c.name);
    let mut f = |key: String, message: String| out.push(Finding { connector: Some(c.name.clone()), key, message });
    match &c.source {
        SourceConfig::Local { dir } => {
            if !env.is_dir(dir) {
                f(format!("{table}.local.dir"), format!("folder {} does not exist; create it or correct dir", dir.display()));
            }
        }
        SourceConfig::Sftp(s) => {
            let sftp = format!("{table}.sftp");
            if let Some(m) = host_problem(&s.host) {
                f(format!("{sftp}.host"), m);
            }
            match &s.auth {
                SftpAuth::Key { private_key, passphrase } => {
                    let encrypted = match key_file(env, private_key) {
                        Ok(encrypted) => encrypted,
                        Err(m) => {
                            f(format!("{sftp}.private_key"), m);
                            None
                        }
                    };
                    match (encrypted, passphrase) {
                        (Some(true), None) => f(
                            format!("{sftp}.passphrase_env"),
                            format!(
                                "private key {} is protected by a passphrase; add passphrase_env = \"NAME\" or passphrase_file = \"PATH\"",
                                private_key.display()
                            ),
                        ),
                        (Some(true) | None, Some(p)) => {
                            if let Some(m) = secret(env, p, "the key's passphrase") {
                                f(secret_key(&sftp, "passphrase", p), m);
                            }
                        }
                        _ => {}
                    }
                }
                SftpAuth::Password { password } | SftpAuth::KeyboardInteractive { password } => {
                    if let Some(m) = secret(env, password, "the SFTP password") {
                        f(secret_key(&sftp, "password", password), m);
                    }
                }
            }
            if let HostKeyPolicy::KnownHosts(path) = &s.host_key {
                match env.file(path) {
                    Probe::Missing => f(
                        format!("{sftp}.known_hosts"),
                        format!(
                            "file {} does not exist; create it with `ssh-keyscan -p {} {} > {}` and check the key out of band",
                            path.display(),
                            s.port,
                            s.host,
                            path.display()
                        ),
                    ),
                    Probe::Unreadable(why) => f(
                        format!("{sftp}.known_hosts"),
                        format!("cannot read known_hosts file {} ({why}); let the service's user read it (chmod 644)", path.display()),
                    ),
                    Probe::Read { bytes, .. } => {
                        if known_keys(&String::from_utf8_lossy(&bytes), &s.host, s.port).is_empty() {
                            f(
                                format!("{sftp}.known_hosts"),
                                format!(
                                    "{} has no key for {}; add it with `ssh-keyscan -p {} {} >> {}` and check it out of band",
                                    path.display(),
                                    if s.port == 22 { s.host.clone() } else { format!("[{}]:{}", s.host, s.port) },
                                    s.port,
                                    s.host,
                                    path.display()
                                ),
                            );
                        }
                    }
                }
            }
        }
    }
    // The OpenPGP key files: read, of the right type, not expired, able to decrypt.
    for e in c.exchange.pgp.iter().flat_map(|p| p.check()) {
        out.push(Finding { connector: Some(c.name.clone()), key: format!("{table}.file.{}", e.key()), message: e.to_string() });
    }
    out
}

/// The key a secret was given under: `{name}_env` or `{name}_file`.
fn secret_key(table: &str, name: &str, from: &SecretRef) -> String {
    match from {
        SecretRef::Env(_) => format!("{table}.{name}_env"),
        SecretRef::File(_) => format!("{table}.{name}_file"),
    }
}

/// Why the secret cannot be read, if it cannot. The value is looked at only for emptiness.
fn secret(env: &dyn Environment, from: &SecretRef, what: &str) -> Option<String> {
    match from {
        SecretRef::Env(var) => match env.var(var) {
            None => Some(format!("environment variable {var} ({what}) is not set; set it in the service's environment")),
            Some(v) if v.is_empty() => Some(format!("environment variable {var} ({what}) is empty; set it to the value you were given")),
            Some(v) if v.to_str().is_none() => Some(format!("environment variable {var} ({what}) is not valid UTF-8")),
            Some(_) => None,
        },
        SecretRef::File(path) => match env.file(path) {
            Probe::Missing => Some(format!(
                "file {} ({what}) does not exist; write the secret into it (for systemd, LoadCredential=; for Kubernetes, mount the secret there)",
                path.display()
            )),
            Probe::Unreadable(why) => {
                Some(format!("cannot read file {} ({what}): {why}; let the service's user read it (and nobody else)", path.display()))
            }
            Probe::Read { bytes, .. } => {
                let text = String::from_utf8_lossy(&bytes);
                crate::secret::strip_one_newline(&text)
                    .trim()
                    .is_empty()
                    .then(|| format!("file {} ({what}) is empty; write the secret into it", path.display()))
            }
        },
    }
}

/// Whether a private key file is usable: Ok(Some(encrypted)), or why not.
fn key_file(env: &dyn Environment, path: &Path) -> Result<Option<bool>, String> {
    let p = path.display();
    match env.file(path) {
        Probe::Missing => Err(format!(
            "private key {p} does not exist; create a key pair with `ssh-keygen -t ed25519 -N '' -f {p}` and send the customer {p}.pub"
        )),
        Probe::Unreadable(why) => Err(format!("cannot read private key {p} ({why}); let the service's user read it (chmod 600)")),
        Probe::Read { mode, bytes } => {
            // What the file is comes first: a `.pub` named by mistake is readable by all as
            // it should be, and `chmod 600` on it would fix nothing.
            let encrypted = match inspect_key(&String::from_utf8_lossy(&bytes), path) {
                KeyFile::Usable { encrypted } => encrypted,
                KeyFile::Refused(why) => return Err(why),
            };
            // OpenSSH refuses a key others may read or write: so do we, before a run does.
            if mode & 0o077 != 0 {
                return Err(format!(
                    "private key {p} is readable by others (mode {:04o}); run `chmod 600 {p}` — OpenSSH refuses such keys too",
                    mode & 0o777
                ));
            }
            Ok(Some(encrypted))
        }
    }
}

/// Why `host` is not a host name or an IP address, if it is not. Syntax only (RFC 1123
/// labels): whether it resolves is for `check --online`.
pub fn host_problem(host: &str) -> Option<String> {
    let bad = |why: &str| {
        Some(format!("\"{}\" is not a host name or address ({why}); write e.g. \"sftp.acme.example\" or \"10.0.0.5\"", host.escape_debug()))
    };
    if host.parse::<std::net::IpAddr>().is_ok() {
        return None;
    }
    if host.is_empty() {
        return bad("empty");
    }
    if host.contains("://") {
        return bad("a URL: give the host alone, and the port as port = N");
    }
    if host.contains(':') {
        return bad("a port or an IPv6 address in brackets: give the host alone, and the port as port = N");
    }
    if host.len() > 253 {
        return bad("longer than 253 characters");
    }
    let name = host.strip_suffix('.').unwrap_or(host);
    for label in name.split('.') {
        if label.is_empty() {
            return bad("an empty label between dots");
        }
        if label.len() > 63 {
            return bad("a label longer than 63 characters");
        }
        if !label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            return bad("only letters, digits, '-' and '.' are allowed");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return bad("a label starts or ends with '-'");
        }
    }
    None
}

/// The connectors that cannot run and why, for `/healthz` and the daemon's start: every
/// connector when the platform's credentials are missing.
pub fn blocked(cfg: &Config, findings: &[Finding]) -> std::collections::BTreeMap<String, Vec<String>> {
    let mut out: std::collections::BTreeMap<String, Vec<String>> = std::collections::BTreeMap::new();
    for f in findings {
        match &f.connector {
            Some(c) => out.entry(c.clone()).or_default().push(f.to_string()),
            None => {
                for c in cfg.connectors.keys() {
                    out.entry(c.clone()).or_default().push(f.to_string());
                }
            }
        }
    }
    for b in &cfg.broken {
        out.entry(b.clone()).or_default().push("configuration problems (run `rostersync check`)".into());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::path::PathBuf;

    struct Table {
        vars: HashMap<&'static str, &'static str>,
        files: HashMap<PathBuf, Probe>,
    }

    impl Environment for Table {
        fn var(&self, name: &str) -> Option<OsString> {
            self.vars.get(name).map(OsString::from)
        }
        fn file(&self, path: &Path) -> Probe {
            self.files.get(path).cloned().unwrap_or(Probe::Missing)
        }
        fn is_dir(&self, path: &Path) -> bool {
            path == Path::new("/exports")
        }
    }

    /// The head of an unencrypted OpenSSH key (magic, cipher "none", kdf "none"): all
    /// `inspect_key` reads.
    const KEY: &str =
        "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ==\n-----END OPENSSH PRIVATE KEY-----\n";

    /// The config and its folder, which holds the mapping and an empty `kh` (the config
    /// checks that a known_hosts file exists; what it holds is the environment's answer).
    fn cfg(sftp: &str) -> (tempfile::TempDir, Config) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("kh"), "").unwrap();
        std::fs::write(
            dir.path().join("m.toml"),
            "unique_id = \"employee_id\"\n[fields]\nemployee_id = \"Id\"\nfirst_name = \"First\"\nlast_name = \"Last\"\n",
        )
        .unwrap();
        let src = format!(
            "[platform]\nkind = \"scim\"\nbase_url = \"http://127.0.0.1:1\"\ntoken_env = \"TOKEN\"\n[connectors.a]\nmapping = \"m.toml\"\n[connectors.a.sftp]\nusername = \"u\"\n{sftp}\n[connectors.a.file]\npath = \"x.csv\"\n"
        );
        let cfg = crate::config::load_str(&src, &dir.path().join("c.toml"), dir.path());
        assert!(cfg.problems.is_empty(), "{:#?}", cfg.problems);
        (dir, cfg)
    }

    const FP: &str = "host_key = \"SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s\"";

    fn keys(findings: &[Finding]) -> Vec<(Option<&str>, &str)> {
        findings.iter().map(|f| (f.connector.as_deref(), f.key.as_str())).collect()
    }

    #[test]
    fn a_good_environment_has_no_findings() {
        let (_d, c) = cfg(&format!("host = \"sftp.acme.example\"\nauth = \"key\"\nprivate_key = \"/k/id\"\n{FP}"));
        let env = Table {
            vars: HashMap::from([("TOKEN", "t0k3n")]),
            files: HashMap::from([(PathBuf::from("/k/id"), Probe::Read { mode: 0o600, bytes: KEY.into() })]),
        };
        assert_eq!(environment(&c, &env), vec![]);
    }

    #[test]
    fn each_problem_names_its_connector_key_and_remedy() {
        let (_d, c) = cfg(&format!("host = \"sftp.acme.example\"\nauth = \"key\"\nprivate_key = \"/k/id\"\n{FP}"));
        let none = Table { vars: HashMap::new(), files: HashMap::new() };
        let got = environment(&c, &none);
        assert_eq!(keys(&got), vec![(None, "platform.token_env"), (Some("a"), "connectors.a.sftp.private_key")]);
        assert!(got[0].message.contains("TOKEN") && got[0].message.contains("is not set"), "{}", got[0]);
        assert!(got[1].message.contains("ssh-keygen -t ed25519"), "{}", got[1]);
        let blocked = blocked(&c, &got);
        assert_eq!(blocked["a"].len(), 2, "the platform's problem blocks every connector: {blocked:?}");

        let open = Table {
            vars: HashMap::from([("TOKEN", "")]),
            files: HashMap::from([(PathBuf::from("/k/id"), Probe::Read { mode: 0o644, bytes: KEY.into() })]),
        };
        let got = environment(&c, &open);
        assert!(got[0].message.contains("is empty"), "{}", got[0]);
        assert!(got[1].message.contains("readable by others (mode 0644); run `chmod 600 /k/id`"), "{}", got[1]);

        let public = Table {
            vars: HashMap::from([("TOKEN", "x")]),
            files: HashMap::from([(PathBuf::from("/k/id"), Probe::Read { mode: 0o600, bytes: b"ssh-ed25519 AAAA me".to_vec() })]),
        };
        let got = environment(&c, &public);
        assert_eq!(keys(&got), vec![(Some("a"), "connectors.a.sftp.private_key")]);
        assert!(got[0].message.contains("holds a public key"), "{}", got[0]);
        // A `.pub` is world-readable, as it should be: what it is is said, not its mode.
        let public = Table {
            vars: HashMap::from([("TOKEN", "x")]),
            files: HashMap::from([(PathBuf::from("/k/id"), Probe::Read { mode: 0o644, bytes: b"ssh-ed25519 AAAA me".to_vec() })]),
        };
        let got = environment(&c, &public);
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(got[0].message.contains("holds a public key") && !got[0].message.contains("chmod"), "{}", got[0]);
    }

    #[test]
    fn secret_files_and_known_hosts() {
        let (d, c) = cfg("host = \"10.0.0.5\"\nport = 2222\nauth = \"password\"\npassword_file = \"/run/pw\"\nknown_hosts = \"kh\"");
        let kh = d.path().join("kh");
        let env = Table {
            vars: HashMap::from([("TOKEN", "x")]),
            files: HashMap::from([
                (PathBuf::from("/run/pw"), Probe::Read { mode: 0o644, bytes: b"\n".to_vec() }),
                (
                    kh.clone(),
                    Probe::Read {
                        mode: 0o644,
                        bytes: b"other.example ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n".to_vec(),
                    },
                ),
            ]),
        };
        let got = environment(&c, &env);
        assert_eq!(keys(&got), vec![(Some("a"), "connectors.a.sftp.password_file"), (Some("a"), "connectors.a.sftp.known_hosts")]);
        assert!(got[0].message.contains("/run/pw") && got[0].message.contains("is empty"), "{}", got[0]);
        assert!(got[1].message.contains("has no key for [10.0.0.5]:2222"), "{}", got[1]);
        let env = Table {
            vars: HashMap::from([("TOKEN", "x")]),
            files: HashMap::from([(kh.clone(), Probe::Unreadable("permission denied".into()))]),
        };
        let got = environment(&c, &env);
        assert!(got[0].message.contains("does not exist"), "{}", got[0]);
        assert!(got[1].message.starts_with(&format!("cannot read known_hosts file {} (permission denied)", kh.display())), "{}", got[1]);
    }

    #[test]
    fn the_state_stores_password_and_ca_file_are_checked() {
        let (d, mut c) = cfg(&format!("host = \"sftp.acme.example\"\nauth = \"key\"\nprivate_key = \"/k/id\"\n{FP}"));
        let key = (PathBuf::from("/k/id"), Probe::Read { mode: 0o600, bytes: KEY.into() });
        c.state.password = Some(crate::config::StatePassword::File(PathBuf::from("/run/pgpw")));
        c.state.ca_file = Some(d.path().join("ca.pem"));
        let env = Table { vars: HashMap::from([("TOKEN", "x")]), files: HashMap::from([key.clone()]) };
        let got = environment(&c, &env);
        assert_eq!(keys(&got), vec![(None, "state.password_file"), (None, "state.ca_file")]);
        assert!(got[0].message.contains("/run/pgpw") && got[0].message.contains("does not exist"), "{}", got[0]);
        assert!(got[1].message.contains("ca.pem") && got[1].message.contains("does not exist"), "{}", got[1]);
        assert_eq!(blocked(&c, &got)["a"].len(), 2, "no run starts without the state store");

        let env = Table {
            vars: HashMap::from([("TOKEN", "x")]),
            files: HashMap::from([
                key.clone(),
                (PathBuf::from("/run/pgpw"), Probe::Read { mode: 0o600, bytes: b"s3cret\n".to_vec() }),
                (d.path().join("ca.pem"), Probe::Read { mode: 0o644, bytes: b"not a certificate".to_vec() }),
            ]),
        };
        let got = environment(&c, &env);
        assert_eq!(keys(&got), vec![(None, "state.ca_file")]);
        assert!(got[0].message.contains("holds no PEM certificate"), "{}", got[0]);
        assert!(!got[0].message.contains("s3cret"), "{}", got[0]);

        c.state.password = Some(crate::config::StatePassword::Env("PGPW".into()));
        let env = Table {
            vars: HashMap::from([("TOKEN", "x")]),
            files: HashMap::from([
                key,
                (d.path().join("ca.pem"), Probe::Read { mode: 0o644, bytes: b"-----BEGIN CERTIFICATE-----\nMIIB\n".to_vec() }),
            ]),
        };
        let got = environment(&c, &env);
        assert_eq!(keys(&got), vec![(None, "state.password_env")]);
        assert!(got[0].message.contains("PGPW") && got[0].message.contains("is not set"), "{}", got[0]);
    }

    #[test]
    fn a_local_folder_must_exist() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("m.toml"),
            "unique_id = \"employee_id\"\n[fields]\nemployee_id = \"Id\"\nfirst_name = \"F\"\nlast_name = \"L\"\n",
        )
        .unwrap();
        let src = |d: &str| {
            format!(
                "[platform]\nkind = \"scim\"\nbase_url = \"http://127.0.0.1:1\"\ntoken_env = \"TOKEN\"\n[connectors.l]\nmapping = \"m.toml\"\n[connectors.l.local]\ndir = \"{d}\"\n[connectors.l.file]\npath = \"x.csv\"\n"
            )
        };
        let env = Table { vars: HashMap::from([("TOKEN", "x")]), files: HashMap::new() };
        let ok = crate::config::load_str(&src("/exports"), &dir.path().join("c.toml"), dir.path());
        assert_eq!(environment(&ok, &env), vec![]);
        let missing = crate::config::load_str(&src("/nowhere"), &dir.path().join("c.toml"), dir.path());
        let got = environment(&missing, &env);
        assert_eq!(keys(&got), vec![(Some("l"), "connectors.l.local.dir")]);
        assert!(got[0].message.contains("folder /nowhere does not exist"), "{}", got[0]);
    }

    #[test]
    fn hosts() {
        for ok in ["sftp.acme.example", "10.0.0.5", "::1", "localhost", "sftp-01.eu.example.", "my_host"] {
            assert_eq!(host_problem(ok), None, "{ok}");
        }
        for (bad, why) in [
            ("sftp://acme.example", "a URL"),
            ("acme.example:22", "a port"),
            ("acme..example", "empty label"),
            ("-acme.example", "starts or ends with '-'"),
            ("acme example", "only letters"),
            ("", "empty"),
        ] {
            let m = host_problem(bad).unwrap_or_else(|| panic!("{bad} accepted"));
            assert!(m.contains(why), "{bad}: {m}");
        }
    }
}
