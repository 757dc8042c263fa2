//! SFTP source (ssh2 / libssh2): key, password and keyboard-interactive auth; host keys
//! verified against a pinned fingerprint or known_hosts; modern algorithms only.
//!
//! Every network step runs under the connector's `timeout` (libssh2's default waits
//! forever). Downloads read 2 MiB at a time so libssh2 keeps several MiB of SFTP reads in
//! flight; with small reads a 20 ms round trip caps the rate at a few hundred KiB/s.
//!
//! Every call makes one attempt; `source::retrieve` decides about another. A connection
//! that failed is abandoned (its socket shut down) so that nothing waits on it again: in
//! blocking mode libssh2 would spend a further `timeout` on each of closing the file, the
//! channel and the session of a server that stopped answering.

pub mod algorithms;
pub mod auth;
pub mod hostkey;

use std::io::{Read, Seek, SeekFrom, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use ssh2::{ErrorCode, Session};

use super::settings::{After, HostKeyPolicy, Sftp};
use super::{RemoteFile, Source, SourceError, select};

/// Bytes asked of libssh2 per read; it pipelines up to 4× this (capped at 8 MiB) in flight.
const READ_CHUNK: usize = 2 << 20;

// libssh2 session error codes we act on.
const LIBSSH2_ERROR_KEX_FAILURE: i32 = -5;
const LIBSSH2_ERROR_KEY_EXCHANGE_FAILURE: i32 = -8;
const LIBSSH2_ERROR_TIMEOUT: i32 = -9;
// SFTP status codes.
const FX_NO_SUCH_FILE: i32 = 2;
const FX_PERMISSION_DENIED: i32 = 3;

pub struct SftpSource {
    cfg: Sftp,
    sess: Session,
    sftp: ssh2::Sftp,
    /// The session's socket, to shut down when the connection is given up.
    tcp: TcpStream,
    /// Set once the connection failed: nothing more is sent on it.
    dead: AtomicBool,
}

/// "host:port", as errors show it.
pub(crate) fn at(host: &str, port: u16) -> String {
    if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") }
}

/// TCP connect to every address the name resolves to, each under `timeout`.
pub(crate) fn tcp_connect(host: &str, port: u16, timeout: Duration) -> std::io::Result<TcpStream> {
    let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, format!("{host} resolves to no address"));
    for addr in (host, port).to_socket_addrs()? {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

fn code(e: &ssh2::Error) -> i32 {
    match e.code() {
        ErrorCode::Session(c) | ErrorCode::SFTP(c) => c,
    }
}

fn timeout_ms(t: Duration) -> u32 {
    t.as_millis().clamp(1, u32::MAX as u128) as u32
}

/// TCP connect and SSH handshake offering only our algorithms, with `host_keys` as the
/// host key preference. No host key verification here. Returns the session and its socket.
fn handshake(host: &str, port: u16, timeout: Duration, host_keys: &[&str]) -> Result<(Session, TcpStream), SourceError> {
    let tcp = tcp_connect(host, port, timeout).map_err(|e| match e.kind() {
        std::io::ErrorKind::TimedOut => SourceError::Timeout { host: at(host, port), step: "TCP connect".into(), secs: timeout.as_secs() },
        _ => SourceError::Connect { host: host.into(), port, detail: e.to_string() },
    })?;
    let mut sess = Session::new().map_err(|e| SourceError::Other(format!("cannot create an SSH session: {e}")))?;
    sess.set_timeout(timeout_ms(timeout));
    algorithms::restrict(&sess, host_keys).map_err(|e| SourceError::Other(format!("cannot restrict SSH algorithms: {e}")))?;
    let socket = tcp.try_clone().map_err(|e| SourceError::Connect { host: host.into(), port, detail: e.to_string() })?;
    sess.set_tcp_stream(tcp);
    match sess.handshake() {
        Ok(()) => Ok((sess, socket)),
        Err(e) if code(&e) == LIBSSH2_ERROR_TIMEOUT => Err(SourceError::Timeout {
            host: at(host, port),
            step: "SSH handshake (the server sent no or too little data)".into(),
            secs: timeout.as_secs(),
        }),
        Err(e) if matches!(code(&e), LIBSSH2_ERROR_KEX_FAILURE | LIBSSH2_ERROR_KEY_EXCHANGE_FAILURE) => {
            // libssh2 does not say which list had nothing in common; the server's KEXINIT does.
            match algorithms::probe(host, port, timeout) {
                Ok(offer) => match offer.obsolete() {
                    Some(gaps) => Err(obsolete(host, port, &offer.banner, &gaps)),
                    None => Err(SourceError::Connect {
                        host: host.into(),
                        port,
                        detail: format!("SSH key exchange failed: {}", crate::redact::redact(e.message())),
                    }),
                },
                Err(_) => Err(SourceError::Connect {
                    host: host.into(),
                    port,
                    detail: format!("SSH key exchange failed: {}", crate::redact::redact(e.message())),
                }),
            }
        }
        Err(e) => Err(SourceError::Connect {
            host: host.into(),
            port,
            detail: format!("SSH handshake failed: {}", crate::redact::redact(e.message())),
        }),
    }
}

fn obsolete(host: &str, port: u16, banner: &str, gaps: &str) -> SourceError {
    SourceError::Algorithms(format!(
        "{} ({banner}) offers only obsolete algorithms, which rostersync refuses (SHA-1, ssh-rsa, CBC, small DH groups): {gaps}. \
         Ask the server's administrator to enable modern ones (OpenSSH 7.4 or later has them all by default).",
        at(host, port)
    ))
}

/// The offered host key: (blob, key type, fingerprint).
fn offered(sess: &Session, host: &str, port: u16) -> Result<(Vec<u8>, String, String), SourceError> {
    let (blob, _) =
        sess.host_key().ok_or_else(|| SourceError::Connect { host: host.into(), port, detail: "the server sent no host key".into() })?;
    Ok((blob.to_vec(), hostkey::blob_type(blob), hostkey::fingerprint(blob)))
}

/// The host key algorithms that use keys of the types in `types`, in our order of preference.
fn algorithms_for(types: &[String]) -> Vec<&'static str> {
    algorithms::HOST_KEYS.iter().copied().filter(|alg| types.iter().any(|t| hostkey::algorithms_for_key_type(t).contains(alg))).collect()
}

/// The key type a host key algorithm uses.
fn key_type_of(alg: &str) -> &str {
    if alg.starts_with("rsa-sha2-") { "ssh-rsa" } else { alg }
}

/// Connects and verifies the host key according to the policy. The session is not authenticated.
fn connect_verified(cfg: &Sftp) -> Result<(Session, TcpStream), SourceError> {
    let (host, port, t) = (cfg.host.as_str(), cfg.port, cfg.timeout);
    match &cfg.host_key {
        HostKeyPolicy::Pinned(pin) => {
            let (sess, tcp) = handshake(host, port, t, algorithms::HOST_KEYS)?;
            let (_, ty, fp) = offered(&sess, host, port)?;
            if &fp == pin {
                return Ok((sess, tcp));
            }
            drop(sess);
            // The pin may be another of the server's keys (say its ECDSA key, from an older
            // ssh client's known_hosts): ask for each other type it offers before refusing.
            let mut seen = vec![(ty, fp)];
            if let Ok(offer) = algorithms::probe(host, port, t) {
                for alg in algorithms::HOST_KEYS.iter().filter(|a| offer.host_keys.iter().any(|o| o == *a)) {
                    if seen.iter().any(|(t, _)| t == key_type_of(alg)) {
                        continue;
                    }
                    let (sess, tcp) = handshake(host, port, t, &[alg])?;
                    let (_, ty, fp) = offered(&sess, host, port)?;
                    if &fp == pin {
                        return Ok((sess, tcp));
                    }
                    seen.push((ty, fp));
                }
            }
            Err(SourceError::HostKey(format!(
                "host key of {} does not match the pinned host_key {pin}: the server offers {}. \
                 If the server's key was changed on purpose (confirm with its administrator, out of band), pin the new one:\n  host_key = \"{}\"\n\
                 Otherwise someone may be intercepting the connection: leave the pin as it is.",
                at(host, port),
                seen.iter().map(|(t, f)| format!("{t} {f}")).collect::<Vec<_>>().join(", "),
                seen[0].1
            )))
        }
        HostKeyPolicy::KnownHosts(path) => {
            let known = hostkey::read_known_keys(path, host, port).map_err(SourceError::HostKey)?;
            // Ask first for the key types known_hosts holds for this host, as OpenSSH does,
            // so a file with only the ECDSA key is not read as a mismatch of the ed25519 one.
            let types: Vec<String> = known.iter().filter(|k| !k.revoked).map(|k| k.key_type.clone()).collect();
            let mut prefs = algorithms_for(&types);
            let rest: Vec<&str> = algorithms::HOST_KEYS.iter().copied().filter(|a| !prefs.contains(a)).collect();
            prefs.extend(rest);
            let (sess, tcp) = handshake(host, port, t, &prefs)?;
            let (blob, ty, fp) = offered(&sess, host, port)?;
            let name = if port == 22 { host.to_string() } else { format!("[{host}]:{port}") };
            let line = {
                use base64::Engine;
                format!("{name} {ty} {}", base64::engine::general_purpose::STANDARD.encode(&blob))
            };
            match hostkey::check_known(&known, &blob) {
                hostkey::HostKeyStatus::Trusted => Ok((sess, tcp)),
                hostkey::HostKeyStatus::Revoked { line: n } => Err(SourceError::HostKey(format!(
                    "host key {ty} {fp} of {} is marked @revoked in {} line {n}; refusing to connect. Ask the server's administrator for its new key.",
                    at(host, port),
                    path.display()
                ))),
                hostkey::HostKeyStatus::Changed { lines } => Err(SourceError::HostKey(format!(
                    "host key of {} HAS CHANGED: the server offers {ty} {fp}, but {} line(s) {} hold another {ty} key. \
                     If the change is expected (confirm with the server's administrator, out of band), replace those lines with:\n  {line}\n\
                     or pin it in the connector with:\n  host_key = \"{fp}\"\nOtherwise someone may be intercepting the connection.",
                    at(host, port),
                    path.display(),
                    lines.iter().map(|l| l.to_string()).collect::<Vec<_>>().join(", ")
                ))),
                hostkey::HostKeyStatus::Unknown => Err(SourceError::HostKey(format!(
                    "host key {ty} {fp} of {} is not in {}{}. After checking the fingerprint with the server's administrator, add this line to it:\n  {line}\n\
                     or pin it in the connector with:\n  host_key = \"{fp}\"",
                    at(host, port),
                    path.display(),
                    if known.is_empty() {
                        " (which has no entry for this host)".to_string()
                    } else {
                        format!(" (which has only {} for this host)", types.join(", "))
                    }
                ))),
            }
        }
    }
}

impl SftpSource {
    pub fn connect(cfg: &Sftp) -> Result<SftpSource, SourceError> {
        let (sess, tcp) = connect_verified(cfg)?;
        let where_ = at(&cfg.host, cfg.port);
        if let Err(fail) = auth::authenticate(&sess, &cfg.username, &cfg.auth) {
            return Err(match fail {
                auth::AuthError::Timeout => {
                    SourceError::Timeout { host: where_, step: "authentication".into(), secs: cfg.timeout.as_secs() }
                }
                auth::AuthError::Refused(detail) => SourceError::Auth { user: cfg.username.clone(), host: where_, detail },
            });
        }
        let sftp = sess.sftp().map_err(|e| match code(&e) {
            LIBSSH2_ERROR_TIMEOUT => {
                SourceError::Timeout { host: at(&cfg.host, cfg.port), step: "starting SFTP".into(), secs: cfg.timeout.as_secs() }
            }
            _ => SourceError::Connect {
                host: cfg.host.clone(),
                port: cfg.port,
                detail: format!(
                    "logged in, but could not start SFTP ({}); check that the server enables the sftp subsystem for this user",
                    crate::redact::redact(e.message())
                ),
            },
        })?;
        Ok(SftpSource { cfg: cfg.clone(), sess, sftp, tcp, dead: AtomicBool::new(false) })
    }

    /// Gives the connection up: shuts its socket so that every later libssh2 call on it
    /// (closing the file, the channel, the session) fails at once instead of waiting for a
    /// server that stopped answering.
    fn abandon(&self) {
        if !self.dead.swap(true, Ordering::AcqRel) {
            let _ = self.tcp.shutdown(Shutdown::Both);
        }
    }

    fn at(&self) -> String {
        at(&self.cfg.host, self.cfg.port)
    }

    /// Maps an error of an SFTP operation: a lost connection or timeout is retriable,
    /// a missing path is a file error, the rest say what failed where.
    fn op_error(&self, e: ssh2::Error, what: String) -> SourceError {
        if matches!(e.code(), ErrorCode::Session(_)) {
            self.abandon();
        }
        match e.code() {
            ErrorCode::Session(LIBSSH2_ERROR_TIMEOUT) => {
                SourceError::Timeout { host: self.at(), step: what, secs: self.cfg.timeout.as_secs() }
            }
            ErrorCode::Session(_) => {
                SourceError::Lost { host: self.at(), step: what, detail: crate::redact::redact(e.message()).to_string() }
            }
            ErrorCode::SFTP(FX_NO_SUCH_FILE) => {
                SourceError::NoFile(format!("{what} on {}: no such file or folder; check [file] path", self.describe()))
            }
            ErrorCode::SFTP(FX_PERMISSION_DENIED) => SourceError::Other(format!(
                "{what} on {}: permission denied for user \"{}\"; ask the server's administrator for access",
                self.describe(),
                self.cfg.username
            )),
            ErrorCode::SFTP(_) => SourceError::Other(format!("{what} on {}: {}", self.describe(), crate::redact::redact(e.message()))),
        }
    }

    /// Keepalives well inside the timeout, so idle periods (a slow consumer) do not get
    /// the connection dropped by NAT boxes or the server's ClientAliveInterval. Sends only
    /// when the interval has passed; a failure shows up on the next read.
    ///
    /// The interval is set only around the send: while it is set, libssh2's blocking waits
    /// stop at the next keepalive due and fail as a timeout, so a server slower than
    /// `timeout / 3` (but well within `timeout`) would be taken for a stalled one.
    fn keepalive(&self) {
        let interval = (self.cfg.timeout.as_secs() / 3).clamp(2, 30) as u32;
        self.sess.set_keepalive(true, interval);
        let _ = self.sess.keepalive_send();
        self.sess.set_keepalive(true, 0);
    }
}

impl Source for SftpSource {
    fn list(&mut self, pattern: &str) -> Result<Vec<RemoteFile>, SourceError> {
        self.keepalive();
        let glob = select::compile_glob(pattern)?;
        let folder = glob.folder.as_str();
        let entries = self.sftp.readdir(Path::new(folder)).map_err(|e| self.op_error(e, format!("cannot list folder {folder}")))?;
        let mut out = Vec::new();
        for (path, stat) in entries {
            let Some(name) = path.file_name().map(|n| n.to_string_lossy().into_owned()) else { continue };
            // A server that sends no permissions does not say what is a file: take it.
            let is_file = stat.perm.is_none() || stat.is_file();
            if !is_file || !glob.matches(&name) {
                continue;
            }
            let path = if folder == "." { name } else { format!("{}/{}", folder.trim_end_matches('/'), name) };
            let mtime = stat.mtime.and_then(|s| DateTime::<Utc>::from_timestamp(s as i64, 0));
            out.push(RemoteFile { path, size: stat.size.unwrap_or(0), mtime });
        }
        Ok(out)
    }

    fn stat(&mut self, path: &str) -> Result<RemoteFile, SourceError> {
        self.keepalive();
        let st = self.sftp.stat(Path::new(path)).map_err(|e| self.op_error(e, format!("cannot stat {path}")))?;
        let mtime = st.mtime.and_then(|s| DateTime::<Utc>::from_timestamp(s as i64, 0));
        Ok(RemoteFile { path: path.to_string(), size: st.size.unwrap_or(0), mtime })
    }

    fn read_from(&mut self, file: &RemoteFile, offset: u64, sink: &mut dyn Write, max_size: u64) -> Result<u64, SourceError> {
        self.keepalive();
        let mut f = self.sftp.open(Path::new(&file.path)).map_err(|e| self.op_error(e, format!("cannot open {}", file.path)))?;
        if offset > 0 {
            // Only sets the offset of the next read request; nothing is sent.
            f.seek(SeekFrom::Start(offset))
                .map_err(|e| SourceError::Other(format!("cannot seek to byte {offset} of {} to resume: {e}", file.path)))?;
        }
        let mut buf = vec![0u8; READ_CHUNK];
        let mut written = 0u64;
        let mut last_keepalive = Instant::now();
        loop {
            let n = match f.read(&mut buf) {
                Ok(n) => n,
                Err(e) => {
                    // The io::Error hides libssh2's code; the session still has it. Abandon
                    // before `f` drops, so closing the file does not wait on a dead server.
                    let timed_out = ssh2::Error::last_session_error(&self.sess).is_some_and(|s| code(&s) == LIBSSH2_ERROR_TIMEOUT);
                    self.abandon();
                    let step = format!("reading {} at byte {}", file.path, offset + written);
                    return Err(if timed_out {
                        SourceError::Timeout { host: self.at(), step, secs: self.cfg.timeout.as_secs() }
                    } else {
                        SourceError::Lost { host: self.at(), step, detail: e.to_string() }
                    });
                }
            };
            if n == 0 {
                return Ok(written);
            }
            sink.write_all(&buf[..n])
                .map_err(|source| SourceError::Io { context: format!("cannot store the download of {}", file.path), source })?;
            written += n as u64;
            if offset + written > max_size {
                return Err(SourceError::TooLarge { path: file.path.clone(), size: offset + written, max: max_size });
            }
            // The sink (a parser) may be slow; keep the session alive between reads.
            if last_keepalive.elapsed() > Duration::from_secs(5) {
                self.keepalive();
                last_keepalive = Instant::now();
            }
        }
    }

    fn finish(&mut self, file: &RemoteFile, after: &After) -> Result<(), SourceError> {
        self.keepalive();
        let src = Path::new(&file.path);
        match after {
            After::Keep => Ok(()),
            After::Delete => self.sftp.unlink(src).map_err(|e| self.op_error(e, format!("cannot delete {}", file.path))),
            After::Move(dir) => {
                let dir = dir.trim_end_matches('/');
                let dir = if dir.is_empty() { "/" } else { dir };
                if self.sftp.stat(Path::new(dir)).is_err() {
                    self.sftp
                        .mkdir(Path::new(dir), 0o750)
                        .map_err(|e| self.op_error(e, format!("cannot create folder {dir} (for after = \"move:{dir}\")")))?;
                }
                let mut target = format!("{}/{}", dir.trim_end_matches('/'), file.name());
                // SFTP v3 rename refuses to overwrite: keep the older copy and date the new one.
                if self.sftp.stat(Path::new(&target)).is_ok() {
                    target = format!("{target}.{}", Utc::now().format("%Y%m%dT%H%M%SZ"));
                }
                self.sftp
                    .rename(src, Path::new(&target), None)
                    .map_err(|e| self.op_error(e, format!("cannot move {} to {target}", file.path)))
            }
        }
    }

    fn put(&mut self, path: &str, bytes: &[u8]) -> Result<(), SourceError> {
        self.keepalive();
        let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
        if !dir.is_empty() && self.sftp.stat(Path::new(dir)).is_err() {
            self.sftp.mkdir(Path::new(dir), 0o750).map_err(|e| self.op_error(e, format!("cannot create folder {dir}")))?;
        }
        let temp = if dir.is_empty() { format!(".{name}.tmp") } else { format!("{dir}/.{name}.tmp") };
        let mut f = self.sftp.create(Path::new(&temp)).map_err(|e| self.op_error(e, format!("cannot create {temp}")))?;
        f.write_all(bytes).map_err(|e| SourceError::Lost { host: self.at(), step: format!("writing {temp}"), detail: e.to_string() })?;
        drop(f);
        // SFTP v3 rename does not replace an existing file: the older result goes first.
        if self.sftp.stat(Path::new(path)).is_ok() {
            self.sftp.unlink(Path::new(path)).map_err(|e| self.op_error(e, format!("cannot replace {path}")))?;
        }
        self.sftp.rename(Path::new(&temp), Path::new(path), None).map_err(|e| self.op_error(e, format!("cannot rename {temp} to {path}")))
    }

    fn describe(&self) -> String {
        format!("sftp://{}@{}", self.cfg.username, self.at())
    }
}

impl Drop for SftpSource {
    fn drop(&mut self) {
        // A polite goodbye, unless the connection was given up (the server is gone).
        if !self.dead.load(Ordering::Acquire) {
            let _ = self.sess.disconnect(None, "rostersync done", None);
        }
    }
}

/// What the server at host:port offers as host keys: (key type, SHA256 fingerprint) for
/// each modern type, best first. No verification: this is how a pin is first obtained.
pub fn keyscan(host: &str, port: u16, timeout: Duration) -> Result<Vec<(String, String)>, SourceError> {
    let offer = algorithms::probe(host, port, timeout).map_err(|e| match e.kind() {
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => {
            SourceError::Timeout { host: at(host, port), step: "reading the SSH banner".into(), secs: timeout.as_secs() }
        }
        _ => SourceError::Connect { host: host.into(), port, detail: e.to_string() },
    })?;
    let mut out: Vec<(String, String)> = Vec::new();
    for alg in algorithms::HOST_KEYS.iter().filter(|a| offer.host_keys.iter().any(|o| o == *a)) {
        if out.iter().any(|(t, _)| t == key_type_of(alg)) {
            continue;
        }
        let (sess, _) = handshake(host, port, timeout, &[alg])?;
        let (_, ty, fp) = offered(&sess, host, port)?;
        let _ = sess.disconnect(None, "keyscan done", None);
        out.push((ty, fp));
    }
    if out.is_empty() {
        let gaps = offer.obsolete().unwrap_or_else(|| format!("host key algorithms: the server offers {}", offer.host_keys.join(", ")));
        return Err(obsolete(host, port, &offer.banner, &gaps));
    }
    Ok(out)
}
