//! A real PostgreSQL for tests: Debian's `postgresql` package, `initdb` into a temporary
//! folder, the server on a free loopback port, run as the `postgres` OS user when the tests
//! run as root (PostgreSQL refuses to run as root). Password logins over TCP (scram), so the
//! store's `password_env` / `password_file` are exercised; stopped (fast shutdown) on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::free_port;

const INSTALL: &str = "apt-get install -y postgresql (or run scripts/install-test-deps.sh)";

/// The password of the `postgres` role in every test server.
pub const PASSWORD: &str = "pg-test-secret-5e1f";

pub struct Postgres {
    child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
    bin: PathBuf,
    tls: bool,
    /// The extra `-c` settings it was started with (again by `start_again`).
    settings: Vec<String>,
}

/// The host name the TLS server's certificate lists (and the only one: 127.0.0.1 is not in
/// it, so connecting by address is the "wrong host name" case).
pub const TLS_HOST: &str = "localhost";

/// The newest installed server's bin folder (/usr/lib/postgresql/N/bin), or the test fails
/// with how to install it. Never a skip: a missing server is a broken test machine.
fn bin_dir() -> PathBuf {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, p): &(u32, PathBuf)| p.join("initdb").is_file() && p.join("postgres").is_file())
        .collect();
    found.sort();
    match found.pop() {
        Some((_, p)) => p,
        None => panic!("PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb). Install it with: {INSTALL}"),
    }
}

/// The uid and gid to run the server as: `postgres` when we are root, else ourselves.
fn server_user() -> Option<(u32, u32)> {
    let me = std::fs::read_to_string("/proc/self/status").ok()?;
    let uid: u32 = me.lines().find_map(|l| l.strip_prefix("Uid:"))?.split_whitespace().next()?.parse().ok()?;
    if uid != 0 {
        return None;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let line = passwd.lines().find(|l| l.starts_with("postgres:"));
    let Some(line) = line else {
        panic!("running as root, but there is no `postgres` OS user to run PostgreSQL as. Install it with: {INSTALL}")
    };
    let f: Vec<&str> = line.split(':').collect();
    Some((f[2].parse().expect("uid in /etc/passwd"), f[3].parse().expect("gid in /etc/passwd")))
}

fn as_server_user(cmd: &mut Command, user: Option<(u32, u32)>) -> &mut Command {
    use std::os::unix::process::CommandExt;
    if let Some((uid, gid)) = user {
        cmd.uid(uid).gid(gid);
    }
    cmd
}

fn chown_all(path: &Path, user: Option<(u32, u32)>) {
    if let Some((uid, gid)) = user {
        for e in walk(path) {
            std::os::unix::fs::chown(&e, Some(uid), Some(gid)).unwrap_or_else(|err| panic!("chown {}: {err}", e.display()));
        }
    }
}

fn walk(p: &Path) -> Vec<PathBuf> {
    let mut out = vec![p.to_path_buf()];
    if p.is_dir() {
        for e in std::fs::read_dir(p).unwrap().flatten() {
            out.extend(walk(&e.path()));
        }
    }
    out
}

impl Postgres {
    pub fn start() -> Postgres {
        Postgres::with_settings(&[])
    }

    /// With extra `-c name=value` server settings (e.g. `shared_preload_libraries=pg_stat_statements`).
    pub fn with_settings(settings: &[&str]) -> Postgres {
        Postgres::launch(settings, false)
    }

    /// A server with `ssl = on`: a CA made for this server (`ca_file`) signed its certificate,
    /// which names `TLS_HOST` only. Plain-text logins stay allowed (pg_hba `host`), so what a
    /// client demands (sslmode) is what is tested. `other_ca_file` is a CA that signed nothing.
    pub fn with_tls() -> Postgres {
        Postgres::launch(&[], true)
    }

    /// `with_tls`, with extra `-c name=value` settings (e.g. `log_connections=on`).
    pub fn with_tls_settings(settings: &[&str]) -> Postgres {
        Postgres::launch(settings, true)
    }

    /// The CA that signed the TLS server's certificate (PEM).
    pub fn ca_file(&self) -> PathBuf {
        assert!(self.tls, "ca_file: this server was started without TLS (use Postgres::with_tls)");
        self.dir.path().join("tls/ca.pem")
    }

    /// A CA that did not sign the server's certificate (PEM).
    pub fn other_ca_file(&self) -> PathBuf {
        assert!(self.tls, "other_ca_file: this server was started without TLS (use Postgres::with_tls)");
        self.dir.path().join("tls/other-ca.pem")
    }

    /// The URL of database `db` by a host `host` (e.g. `TLS_HOST`), with these query
    /// parameters (e.g. "sslmode=verify-full"); no password.
    pub fn url_at(&self, host: &str, db: &str, query: &str) -> String {
        let q = if query.is_empty() { String::new() } else { format!("?{query}") };
        format!("postgres://postgres@{host}:{}/{db}{q}", self.port)
    }

    fn launch(settings: &[&str], tls: bool) -> Postgres {
        let bin = bin_dir();
        let user = server_user();
        let dir = tempfile::tempdir().expect("tempdir");
        // The folder must be the server user's (and only its: initdb checks).
        std::fs::write(dir.path().join("pwfile"), PASSWORD).unwrap();
        if tls {
            make_certificates(&dir.path().join("tls"));
        }
        chown_all(dir.path(), user);
        let data = dir.path().join("data");
        let out = as_server_user(&mut Command::new(bin.join("initdb")), user)
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "--auth-host=scram-sha-256", "--auth-local=trust", "--no-sync", "-E", "UTF8", "--locale=C"])
            .arg(format!("--pwfile={}", dir.path().join("pwfile").display()))
            .output()
            .unwrap_or_else(|e| panic!("cannot run initdb: {e}"));
        assert!(out.status.success(), "initdb failed: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        let port = free_port();
        let settings: Vec<String> = settings.iter().map(|s| s.to_string()).collect();
        let child = Postgres::spawn(&bin, dir.path(), port, &settings, tls);
        let pg = Postgres { child, port, dir, bin, tls, settings };
        pg.wait_ready(Duration::from_secs(30));
        pg
    }

    /// The server process on `dir`'s data folder.
    fn spawn(bin: &Path, dir: &Path, port: u16, settings: &[String], tls: bool) -> Child {
        let mut cmd = Command::new(bin.join("postgres"));
        as_server_user(&mut cmd, server_user())
            .arg("-D")
            .arg(dir.join("data"))
            .arg("-p")
            .arg(port.to_string())
            .arg("-c")
            .arg("listen_addresses=127.0.0.1")
            .arg("-c")
            .arg(format!("unix_socket_directories={}", dir.display()))
            // A test server: durability is not what is tested, speed on two shared cores is.
            .args(["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off", "-c", "max_connections=200"]);
        for s in settings {
            cmd.arg("-c").arg(s);
        }
        if tls {
            let tls_dir = dir.join("tls");
            cmd.args(["-c", "ssl=on"]);
            cmd.arg("-c").arg(format!("ssl_cert_file={}", tls_dir.join("server.pem").display()));
            cmd.arg("-c").arg(format!("ssl_key_file={}", tls_dir.join("server.key").display()));
        }
        let log = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("server.log")).unwrap();
        cmd.stdin(Stdio::null()).stdout(log.try_clone().unwrap()).stderr(log).spawn().expect("spawn postgres")
    }

    /// Stops the server (fast shutdown: clients cut off), as an outage does; `start_again`
    /// brings it back on the same port with its data.
    pub fn stop(&mut self) {
        let _ = Command::new("kill").args(["-INT", &self.child.id().to_string()]).status();
        let _ = self.child.wait();
    }

    pub fn start_again(&mut self) {
        self.child = Postgres::spawn(&self.bin, self.dir.path(), self.port, &self.settings, self.tls);
        self.wait_ready(Duration::from_secs(30));
    }

    /// Until the server accepts connections (not just the port: "starting up" refuses).
    fn wait_ready(&self, timeout: Duration) {
        let start = Instant::now();
        while start.elapsed() < timeout {
            let ok = Command::new(self.bin.join("pg_isready"))
                .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-q"])
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("PostgreSQL did not become ready on 127.0.0.1:{} within {timeout:?}; its log:\n{}", self.port, self.log());
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// The URL of database `db`, without the password (that comes from `password_env`).
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// The URL with the password in it, for the tests' own connections.
    pub fn admin_url(&self, db: &str) -> String {
        format!("postgres://postgres:{PASSWORD}@127.0.0.1:{}/{db}", self.port)
    }

    /// Runs SQL through `psql` on the local socket (as the server user), returning stdout
    /// (unaligned, tuples only); a failure fails the test.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        self.try_psql(db, sql).unwrap_or_else(|e| panic!("psql {sql:?} failed: {e}"))
    }

    /// As `psql`, the error (stderr) returned rather than failing the test.
    pub fn try_psql(&self, db: &str, sql: &str) -> Result<String, String> {
        let out = as_server_user(&mut Command::new(self.bin.join("psql")), server_user())
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-U", "postgres", "-p", &self.port.to_string(), "-h"])
            .arg(self.dir.path())
            .args(["-d", db, "-c", sql])
            .output()
            .expect("run psql");
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// A new, empty database.
    pub fn create_db(&self, name: &str) -> String {
        self.psql("postgres", &format!("CREATE DATABASE \"{name}\""));
        self.url(name)
    }
}

/// Runs `openssl` with these arguments in `dir`; a failure fails the test with its output.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").args(args).current_dir(dir).output().unwrap_or_else(|e| {
        panic!("cannot run openssl ({e}). Install it with: apt-get install -y openssl (or run scripts/install-test-deps.sh)")
    });
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Into `dir`: ca.pem (a CA made now), server.pem + server.key (signed by it, naming
/// `TLS_HOST` only, for serverAuth), other-ca.pem (an unrelated CA). P-256 keys: quick to make.
fn make_certificates(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    for (name, cn) in [("ca", "rostersync test CA"), ("other-ca", "rostersync unrelated CA")] {
        let (key, pem, subj) = (format!("{name}.key"), format!("{name}.pem"), format!("/CN={cn}"));
        let mut args = vec!["req", "-x509", "-days", "2", "-subj", &subj, "-keyout", &key, "-out", &pem];
        args.extend(ec);
        args.extend(["-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"]);
        openssl(dir, &args);
    }
    let mut args = vec!["req", "-new", "-subj", "/CN=localhost", "-keyout", "server.key", "-out", "server.csr"];
    args.extend(ec);
    openssl(dir, &args);
    std::fs::write(
        dir.join("server.ext"),
        format!("subjectAltName=DNS:{TLS_HOST}\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"),
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "server.ext",
            "-out",
            "server.pem",
        ],
    );
    // PostgreSQL refuses a key file others can read.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.join("server.key"), std::fs::Permissions::from_mode(0o600)).unwrap();
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // SIGINT is PostgreSQL's fast shutdown: clients are disconnected, no waiting for them.
        let _ = Command::new("kill").args(["-INT", &self.child.id().to_string()]).status();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
