//! The SFTP source against real servers on loopback: OpenSSH sshd (keys, host keys,
//! algorithms, files) and rclone's SFTP server (passwords); plus a silent server and a
//! proxy that cuts or stalls transfers for the fault cases, which go through the run's one
//! retry loop (`source::retrieve`).

use crate::support;

use std::fs;
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant, SystemTime};

use rostersync::config::{After, FileRule, HostKeyPolicy, Pick, Sftp, SftpAuth, SourceConfig};
use rostersync::exit::{Classify, Exit};
use rostersync::retry::{Budget, GiveUp};
use rostersync::source::select::{self, Selection};
use rostersync::source::sftp::{SftpSource, keyscan};
use rostersync::source::{Choice, Fetched, RemoteFile, Request, Retrieved, Source, SourceError};
use sha2::Digest;
use support::sshd::{RcloneSftp, Sshd, SshdOptions};
use support::{TcpFault, TcpProxy, cutting_proxy_then};

const PASSPHRASE: &str = "correct horse battery staple";

/// Secrets reach the source through the environment, as in production. Set once, before
/// any test reads them (every test calls this first), so no test races another's set_var.
fn env() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| unsafe {
        std::env::set_var("RS_TEST_PASSPHRASE", PASSPHRASE);
        std::env::set_var("RS_TEST_WRONG_PASSPHRASE", "not the passphrase");
        std::env::set_var("RS_TEST_PASSWORD", "s3cret-Pa55");
        std::env::set_var("RS_TEST_WRONG_PASSWORD", "guess");
        std::env::set_var("RS_TEST_KBD_PASSWORD", support::sshd::TEST_USER_PASSWORD);
        std::env::remove_var("RS_TEST_UNSET");
    });
}

fn cfg(port: u16, user: &str, auth: SftpAuth, host_key: HostKeyPolicy) -> Sftp {
    Sftp { host: "127.0.0.1".into(), port, username: user.into(), auth, host_key, timeout: Duration::from_secs(10) }
}

fn key(path: &Path, passphrase_env: Option<&str>) -> SftpAuth {
    SftpAuth::Key { private_key: path.to_path_buf(), passphrase: passphrase_env.map(rostersync::config::SecretRef::env) }
}

fn pinned(s: &Sshd) -> HostKeyPolicy {
    HostKeyPolicy::Pinned(s.fingerprint("ed25519"))
}

fn refused(c: &Sftp) -> SourceError {
    match SftpSource::connect(c) {
        Ok(_) => panic!("connected to {}:{}, but it should have been refused", c.host, c.port),
        Err(e) => e,
    }
}

fn connect(c: &Sftp) -> SftpSource {
    SftpSource::connect(c).unwrap_or_else(|e| panic!("connect: {e}"))
}

/// Writes a file with some rows and returns its sha256.
fn put(dir: &Path, name: &str, bytes: usize, age: Duration) -> String {
    let line = b"1001,Ada,Lovelace,ada@example.com,en,yes\n";
    let data: Vec<u8> = line.iter().copied().cycle().take(bytes).collect();
    let p = dir.join(name);
    fs::write(&p, &data).unwrap();
    fs::File::options().write(true).open(&p).unwrap().set_modified(SystemTime::now() - age).unwrap();
    hex::encode(sha2::Sha256::digest(&data))
}

/// Lists and downloads `name` from the served folder, checking size and hash.
fn round_trip(src: &mut SftpSource, dir: &Path, name: &str) {
    let sum = put(dir, name, 300_000, Duration::from_secs(3600));
    let files = src.list(&format!("{}/*.csv", dir.display())).unwrap();
    let f = files.iter().find(|f| f.name() == name).unwrap_or_else(|| panic!("{name} not listed: {files:?}"));
    assert_eq!(f.size, 300_000);
    let mut out = Vec::new();
    let got = src.fetch(f, &mut out, 1 << 30).unwrap();
    assert_eq!((got.bytes, got.sha256.as_str(), out.len()), (300_000, sum.as_str(), 300_000));
}

/// The run's one retry loop over `c`: lists `pattern` and downloads the first file listed
/// into memory.
fn retrieve(c: &Sftp, pattern: &str, budget: &Budget) -> Result<(RemoteFile, Vec<u8>, Fetched), SourceError> {
    let source = SourceConfig::Sftp(c.clone());
    let req = Request { source: &source, pattern, max_size: 1 << 30, budget };
    let take = |_: &mut dyn Source, files: Vec<RemoteFile>| {
        Ok(match files.into_iter().next() {
            Some(f) => Choice::Take(f, Vec::new()),
            None => Choice::Stop(()),
        })
    };
    match rostersync::source::retrieve(&req, take)? {
        Retrieved::Done { file, sink, fetched, .. } => Ok((file, sink, fetched)),
        Retrieved::Stopped(()) => panic!("nothing listed for {pattern}"),
    }
}

/// Runs `f` with its log lines captured (the retry warnings), as plain text.
fn logged<R>(f: impl FnOnce() -> R) -> (R, String) {
    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buf = Buf::default();
    let writer = buf.clone();
    let sub = tracing_subscriber::fmt().with_writer(move || writer.clone()).with_ansi(false).finish();
    let r = tracing::subscriber::with_default(sub, f);
    let text = String::from_utf8_lossy(&buf.0.lock().unwrap()).into_owned();
    (r, text)
}

// ---------- keys ----------

#[test]
fn each_client_key_type_logs_in_and_fetches() {
    env();
    let s = Sshd::start();
    for kind in ["ed25519", "ecdsa", "rsa"] {
        let k = s.client_key(kind, "");
        let mut src = connect(&cfg(s.port, &s.user, key(&k, None), pinned(&s)));
        round_trip(&mut src, &s.data(), &format!("{kind}.csv"));
        assert_eq!(src.describe(), format!("sftp://root@127.0.0.1:{}", s.port));
    }
}

#[test]
fn passphrase_key_right_missing_and_wrong() {
    env();
    let s = Sshd::start();
    let k = s.client_key("ed25519", PASSPHRASE);
    let mut src = connect(&cfg(s.port, &s.user, key(&k, Some("RS_TEST_PASSPHRASE")), pinned(&s)));
    round_trip(&mut src, &s.data(), "locked.csv");

    let e = refused(&cfg(s.port, &s.user, key(&k, None), pinned(&s)));
    assert!(matches!(e, SourceError::Auth { .. }), "{e}");
    assert!(e.to_string().contains("protected by a passphrase; add passphrase_env"), "{e}");

    let e = refused(&cfg(s.port, &s.user, key(&k, Some("RS_TEST_UNSET")), pinned(&s)));
    assert!(e.to_string().contains("RS_TEST_UNSET (the key's passphrase) is not set"), "{e}");

    let e = refused(&cfg(s.port, &s.user, key(&k, Some("RS_TEST_WRONG_PASSPHRASE")), pinned(&s)));
    let msg = e.to_string();
    assert!(msg.contains("most likely the passphrase in RS_TEST_WRONG_PASSPHRASE is wrong"), "{msg}");
    assert!(!msg.contains("not the passphrase") && !msg.contains(PASSPHRASE), "secret leaked: {msg}");
    assert_eq!((e.exit(), e.retriable()), (Exit::Connection, false));
}

#[test]
fn unauthorized_key_is_refused_with_the_fix() {
    env();
    let s = Sshd::start();
    let stranger = s.scratch().join("stranger");
    support::sshd::keygen("ed25519", &stranger, "");
    let e = refused(&cfg(s.port, &s.user, key(&stranger, None), pinned(&s)));
    assert!(e.to_string().contains("the server refused key") && e.to_string().contains("authorized_keys"), "{e}");
    assert_eq!(e.exit(), Exit::Connection);
}

#[test]
fn putty_and_ssh2_keys_say_how_to_convert() {
    env();
    let s = Sshd::start();
    let ppk = s.scratch().join("key.ppk");
    fs::write(&ppk, "PuTTY-User-Key-File-3: ssh-ed25519\nEncryption: none\nComment: x\nPublic-Lines: 2\nAAAAC3NzaC1lZDI1NTE5\nAAAA\n")
        .unwrap();
    let e = refused(&cfg(s.port, &s.user, key(&ppk, None), pinned(&s)));
    assert!(e.to_string().contains(&format!("puttygen {} -O private-openssh-new", ppk.display())), "{e}");

    // A real SSH2 (RFC 4716) file, as `ssh-keygen -e` writes it.
    let k = s.client_key("ed25519", "");
    let out = std::process::Command::new("ssh-keygen").arg("-e").arg("-f").arg(&k).output().unwrap();
    let ssh2 = s.scratch().join("key.ssh2");
    fs::write(&ssh2, &out.stdout).unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("---- BEGIN SSH2"));
    let e = refused(&cfg(s.port, &s.user, key(&ssh2, None), pinned(&s)));
    assert!(e.to_string().contains("public key"), "{e}");

    let fake = s.scratch().join("key.sec");
    fs::write(
        &fake,
        "---- BEGIN SSH2 ENCRYPTED PRIVATE KEY ----\nComment: \"x\"\nP2/56wAAAi4AAAA3\n---- END SSH2 ENCRYPTED PRIVATE KEY ----\n",
    )
    .unwrap();
    let e = refused(&cfg(s.port, &s.user, key(&fake, None), pinned(&s)));
    assert!(e.to_string().contains(&format!("ssh-keygen -i -f {}", fake.display())), "{e}");

    let e = refused(&cfg(s.port, &s.user, key(&s.scratch().join("nope"), None), pinned(&s)));
    assert!(e.to_string().contains("cannot read private key"), "{e}");
}

// ---------- passwords (rclone's server: no system account needed) ----------

#[test]
fn password_right_and_wrong() {
    env();
    let r = RcloneSftp::start();
    let pin = HostKeyPolicy::Pinned(r.fingerprint());
    let mut src = connect(&cfg(r.port, &r.user, SftpAuth::Password { password: "RS_TEST_PASSWORD".into() }, pin.clone()));
    put(&r.data(), "pw.csv", 5000, Duration::from_secs(600));
    let files = src.list("/*.csv").unwrap();
    assert_eq!(files.iter().map(|f| f.path.as_str()).collect::<Vec<_>>(), vec!["/pw.csv"]);
    let mut out = Vec::new();
    assert_eq!(src.fetch(&files[0], &mut out, 1 << 20).unwrap().bytes, 5000);

    let e = refused(&cfg(r.port, &r.user, SftpAuth::Password { password: "RS_TEST_WRONG_PASSWORD".into() }, pin.clone()));
    let msg = e.to_string();
    assert!(msg.contains("wrong user name or password: check RS_TEST_WRONG_PASSWORD"), "{msg}");
    assert!(!msg.contains("guess"), "secret leaked: {msg}");
    assert_eq!((e.exit(), e.retriable()), (Exit::Connection, false));

    let e = refused(&cfg(r.port, &r.user, SftpAuth::Password { password: "RS_TEST_UNSET".into() }, pin));
    assert!(e.to_string().contains("RS_TEST_UNSET (the password) is not set"), "{e}");
}

#[test]
fn keyboard_interactive_against_sshd_with_pam() {
    env();
    let (user, password) = support::sshd::test_user();
    assert_eq!(std::env::var("RS_TEST_KBD_PASSWORD").as_deref(), Ok(password));
    let s = Sshd::with(SshdOptions { keyboard_interactive: true, ..Default::default() });
    put(&s.data(), "kbd.csv", 1000, Duration::from_secs(600));
    // Only keyboard-interactive is on: auth = "password" falls back to it, as OpenSSH does.
    for auth in [
        SftpAuth::KeyboardInteractive { password: "RS_TEST_KBD_PASSWORD".into() },
        SftpAuth::Password { password: "RS_TEST_KBD_PASSWORD".into() },
    ] {
        let mut src = SftpSource::connect(&cfg(s.port, user, auth, pinned(&s))).unwrap_or_else(|e| panic!("{e}\nsshd log:\n{}", s.log()));
        let files = src.list(&format!("{}/*.csv", s.data().display())).unwrap();
        assert_eq!(files.len(), 1);
    }
    let e = refused(&cfg(s.port, user, SftpAuth::KeyboardInteractive { password: "RS_TEST_WRONG_PASSWORD".into() }, pinned(&s)));
    assert!(e.to_string().contains("wrong user name or password (keyboard-interactive): check RS_TEST_WRONG_PASSWORD"), "{e}");
    assert!(!e.to_string().contains("guess"));
    // A key for a server that takes only keyboard-interactive for this user says so.
    let k = s.client_key("ed25519", "");
    let e = refused(&cfg(s.port, "nobody-here", key(&k, None), pinned(&s)));
    assert!(matches!(e, SourceError::Auth { .. }), "{e}");
}

// ---------- host keys ----------

#[test]
fn wrong_pin_is_refused_with_the_offered_fingerprint() {
    env();
    let s = Sshd::start();
    let k = s.client_key("ed25519", "");
    let pin = "SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s";
    let e = refused(&cfg(s.port, &s.user, key(&k, None), HostKeyPolicy::Pinned(pin.into())));
    let msg = e.to_string();
    let fp = s.fingerprint("ed25519");
    assert!(matches!(e, SourceError::HostKey(_)), "{msg}");
    assert!(msg.contains(&format!("ssh-ed25519 {fp}")), "{msg}");
    assert!(msg.contains(&format!("host_key = \"{fp}\"")), "{msg}");
    assert!(msg.contains(pin), "{msg}");
    assert_eq!((e.exit(), e.retriable()), (Exit::Connection, false));
}

#[test]
fn a_pin_of_the_servers_other_key_type_is_found() {
    env();
    let s = Sshd::with(SshdOptions { host_keys: vec!["ed25519", "ecdsa", "rsa"], ..Default::default() });
    let k = s.client_key("ed25519", "");
    for kind in ["ecdsa", "rsa"] {
        let mut src = connect(&cfg(s.port, &s.user, key(&k, None), HostKeyPolicy::Pinned(s.fingerprint(kind))));
        round_trip(&mut src, &s.data(), &format!("pin-{kind}.csv"));
    }
}

fn known_hosts(s: &Sshd, name: &str, text: &str) -> HostKeyPolicy {
    let p = s.scratch().join(name);
    fs::write(&p, text).unwrap();
    HostKeyPolicy::KnownHosts(p)
}

#[test]
fn known_hosts_plain_and_hashed() {
    env();
    let s = Sshd::start();
    let k = s.client_key("ed25519", "");
    let line = format!("[127.0.0.1]:{} {}\n", s.port, s.host_key_line("ed25519"));
    let plain = known_hosts(&s, "kh_plain", &format!("# other hosts\nexample.com {}\n{line}", s.host_key_line("ed25519")));
    round_trip(&mut connect(&cfg(s.port, &s.user, key(&k, None), plain)), &s.data(), "plain.csv");

    let HostKeyPolicy::KnownHosts(hashed) = known_hosts(&s, "kh_hashed", &line) else { unreachable!() };
    let out = std::process::Command::new("ssh-keygen").arg("-H").arg("-f").arg(&hashed).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(fs::read_to_string(&hashed).unwrap().starts_with("|1|"), "ssh-keygen -H did not hash");
    round_trip(&mut connect(&cfg(s.port, &s.user, key(&k, None), HostKeyPolicy::KnownHosts(hashed))), &s.data(), "hashed.csv");
}

#[test]
fn known_hosts_with_only_another_key_type() {
    env();
    // The server has ed25519 and ECDSA keys; known_hosts holds only the ECDSA one: we must
    // ask for ECDSA and connect, not call the ed25519 key a mismatch.
    let s = Sshd::with(SshdOptions { host_keys: vec!["ed25519", "ecdsa"], ..Default::default() });
    let k = s.client_key("ed25519", "");
    let kh = known_hosts(&s, "kh_ecdsa", &format!("[127.0.0.1]:{} {}\n", s.port, s.host_key_line("ecdsa")));
    round_trip(&mut connect(&cfg(s.port, &s.user, key(&k, None), kh)), &s.data(), "ecdsa-known.csv");

    // A server with only ed25519, and known_hosts with only an ECDSA key for it: unknown, not changed.
    let only = Sshd::start();
    let k = only.client_key("ed25519", "");
    let kh = known_hosts(&only, "kh_other", &format!("[127.0.0.1]:{} {}\n", only.port, s.host_key_line("ecdsa")));
    let e = refused(&cfg(only.port, &only.user, key(&k, None), kh));
    let msg = e.to_string();
    assert!(msg.contains("is not in") && msg.contains("has only ecdsa-sha2-nistp256"), "{msg}");
    assert!(msg.contains(&format!("host_key = \"{}\"", only.fingerprint("ed25519"))), "{msg}");
    assert!(!msg.contains("CHANGED"), "{msg}");
    assert_eq!((e.exit(), e.retriable()), (Exit::Connection, false));
}

#[test]
fn known_hosts_with_a_changed_key() {
    env();
    let s = Sshd::start();
    let other = Sshd::start();
    let k = s.client_key("ed25519", "");
    let kh = known_hosts(&s, "kh_changed", &format!("[127.0.0.1]:{} {}\n", s.port, other.host_key_line("ed25519")));
    let e = refused(&cfg(s.port, &s.user, key(&k, None), kh));
    let msg = e.to_string();
    assert!(msg.contains("HAS CHANGED") && msg.contains(&s.fingerprint("ed25519")) && msg.contains("line(s) 1"), "{msg}");
    assert!(!e.retriable());
}

#[test]
fn ssh_rsa_only_server_is_refused_as_obsolete() {
    env();
    let s = Sshd::with(SshdOptions { host_keys: vec!["rsa"], host_key_algorithms: Some("ssh-rsa".into()), ..Default::default() });
    let k = s.client_key("ed25519", "");
    let e = refused(&cfg(s.port, &s.user, key(&k, None), HostKeyPolicy::Pinned(s.fingerprint("rsa"))));
    let msg = e.to_string();
    assert!(matches!(e, SourceError::Algorithms(_)), "{msg}");
    assert!(msg.contains("offers only obsolete algorithms"), "{msg}");
    assert!(msg.contains("host key algorithms: the server offers ssh-rsa — we accept ssh-ed25519"), "{msg}");
    assert_eq!((e.exit(), e.retriable()), (Exit::Connection, false));

    let e = keyscan("127.0.0.1", s.port, Duration::from_secs(10)).expect_err("keyscan of an ssh-rsa-only server");
    assert!(e.to_string().contains("offers only obsolete algorithms"), "{e}");
}

#[test]
fn sha1_only_key_exchange_and_macs_are_refused_as_obsolete() {
    env();
    let s = Sshd::with(SshdOptions {
        extra: vec!["KexAlgorithms diffie-hellman-group14-sha1".into(), "Ciphers aes128-ctr,aes128-cbc".into(), "MACs hmac-sha1".into()],
        ..Default::default()
    });
    let k = s.client_key("ed25519", "");
    let e = refused(&cfg(s.port, &s.user, key(&k, None), pinned(&s)));
    let msg = e.to_string();
    assert!(matches!(e, SourceError::Algorithms(_)), "{msg}");
    assert!(msg.contains("key exchange: the server offers diffie-hellman-group14-sha1 — we accept curve25519-sha256"), "{msg}");
    assert!(msg.contains("MACs: the server offers hmac-sha1 — we accept hmac-sha2-256-etm@openssh.com"), "{msg}");
    assert!(!msg.contains("host key algorithms:"), "the host keys were fine: {msg}");
}

#[test]
fn keyscan_reports_each_modern_host_key() {
    env();
    let s = Sshd::with(SshdOptions { host_keys: vec!["ed25519", "ecdsa", "rsa"], ..Default::default() });
    let keys = keyscan("127.0.0.1", s.port, Duration::from_secs(10)).unwrap();
    assert_eq!(
        keys,
        vec![
            ("ssh-ed25519".to_string(), s.fingerprint("ed25519")),
            ("ecdsa-sha2-nistp256".to_string(), s.fingerprint("ecdsa")),
            ("ssh-rsa".to_string(), s.fingerprint("rsa")),
        ]
    );
}

// ---------- files ----------

fn rule(path: &str, pick: Pick, min_age: Duration) -> FileRule {
    FileRule { path: path.into(), pick, format: None, min_age, after: After::Keep, stale_after: None, max_size: 1 << 30 }
}

#[test]
fn file_selection_glob_newest_last_name_and_min_age() {
    env();
    let s = Sshd::start();
    let k = s.client_key("ed25519", "");
    let mut src = connect(&cfg(s.port, &s.user, key(&k, None), pinned(&s)));
    let d = s.data();
    put(&d, "employees_2026-01-31.csv", 100, Duration::from_secs(7200));
    put(&d, "employees_2026-01-15.csv", 100, Duration::from_secs(600));
    put(&d, "notes.csv", 100, Duration::from_secs(60));
    fs::create_dir(d.join("employees_dir.csv")).unwrap();
    let pattern = format!("{}/employees_*.csv", d.display());
    let files = src.list(&pattern).unwrap();
    let mut names: Vec<&str> = files.iter().map(|f| f.name()).collect();
    names.sort();
    assert_eq!(names, vec!["employees_2026-01-15.csv", "employees_2026-01-31.csv"], "folders and non-matching files are left out");
    assert!(files.iter().all(|f| f.mtime.is_some() && f.size == 100));

    let now = chrono::Utc::now();
    let pick = |r: FileRule| match select::select(&files, &r, now) {
        Selection::Picked(f) => f.name().to_string(),
        other => format!("{other:?}"),
    };
    assert_eq!(pick(rule(&pattern, Pick::Newest, Duration::ZERO)), "employees_2026-01-15.csv");
    assert_eq!(pick(rule(&pattern, Pick::LastName, Duration::ZERO)), "employees_2026-01-31.csv");
    // The newest is 10 minutes old: with min_age 30m it is still being written.
    assert_eq!(pick(rule(&pattern, Pick::Newest, Duration::from_secs(1800))), "employees_2026-01-31.csv");
    assert!(matches!(select::select(&files, &rule(&pattern, Pick::Newest, Duration::from_secs(86400)), now), Selection::TooYoung { .. }));

    // An exact path lists that file; a missing folder is a file error (exit 4).
    assert_eq!(src.list(&format!("{}/notes.csv", d.display())).unwrap().len(), 1);
    let e = src.list("/no/such/folder/*.csv").unwrap_err();
    assert_eq!(e.exit(), Exit::Data, "{e}");
    assert!(e.to_string().contains("/no/such/folder"), "{e}");

    // Ranges, negated sets and alternatives (globset), on the server's listing.
    put(&d, "employees_5.csv", 100, Duration::from_secs(600));
    put(&d, "employees_x.csv", 100, Duration::from_secs(600));
    let mut names = |glob: &str| {
        let mut v: Vec<String> = src.list(&format!("{}/{glob}", d.display())).unwrap().iter().map(|f| f.name().to_string()).collect();
        v.sort();
        v
    };
    assert_eq!(names("employees_[0-9].csv"), vec!["employees_5.csv"]);
    assert_eq!(names("employees_[!0-9].csv"), vec!["employees_x.csv"]);
    assert_eq!(names("{notes,employees_5}.csv"), vec!["employees_5.csv", "notes.csv"]);
    assert_eq!(names("EMPLOYEES_5.csv"), Vec::<String>::new(), "case-sensitive, as the server's file system");
    let e = src.list(&format!("{}/employees_[0-9.csv", d.display())).unwrap_err();
    assert_eq!(e.exit(), Exit::Config, "{e}");
}

#[test]
fn after_move_and_delete() {
    env();
    let s = Sshd::start();
    let k = s.client_key("ed25519", "");
    let mut src = connect(&cfg(s.port, &s.user, key(&k, None), pinned(&s)));
    let d = s.data();
    put(&d, "a.csv", 10, Duration::from_secs(600));
    put(&d, "b.csv", 10, Duration::from_secs(600));
    let files = src.list(&format!("{}/*.csv", d.display())).unwrap();
    let a = files.iter().find(|f| f.name() == "a.csv").unwrap();
    let b = files.iter().find(|f| f.name() == "b.csv").unwrap();
    let processed = format!("{}/processed/", d.display());
    src.finish(a, &After::Move(processed.clone())).unwrap();
    assert!(!d.join("a.csv").exists() && d.join("processed/a.csv").is_file());
    // Moving a second file of the same name keeps the first.
    put(&d, "a.csv", 20, Duration::from_secs(600));
    src.finish(a, &After::Move(processed)).unwrap();
    assert_eq!(fs::read_dir(d.join("processed")).unwrap().count(), 2);
    src.finish(b, &After::Delete).unwrap();
    assert!(!d.join("b.csv").exists());
    src.finish(b, &After::Keep).unwrap();
    let e = src.finish(b, &After::Delete).unwrap_err();
    assert!(e.to_string().contains("cannot delete") && e.to_string().contains("b.csv"), "{e}");
}

#[test]
fn size_cap_and_a_file_that_changed_after_listing() {
    env();
    let s = Sshd::start();
    let k = s.client_key("ed25519", "");
    let mut src = connect(&cfg(s.port, &s.user, key(&k, None), pinned(&s)));
    put(&s.data(), "big.csv", 50_000, Duration::from_secs(600));
    let f = src.list(&format!("{}/big.csv", s.data().display())).unwrap().remove(0);
    let e = src.fetch(&f, &mut Vec::new(), 1000).unwrap_err();
    assert!(matches!(e, SourceError::TooLarge { .. }) && e.exit() == Exit::Data, "{e}");
    // Rewritten shorter between listing and download: never a silent short read.
    put(&s.data(), "big.csv", 20_000, Duration::from_secs(600));
    let e = src.fetch(&f, &mut Vec::new(), 1 << 30).unwrap_err();
    assert!(matches!(e, SourceError::Truncated { got: 20_000, expected: 50_000, .. }), "{e}");
}

// ---------- faults ----------

#[test]
fn a_silent_server_fails_within_the_timeout() {
    env();
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    // Accepts, keeps the connection open, never says a word.
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in l.incoming() {
            held.push(s);
        }
    });
    let mut c = cfg(port, "root", key(Path::new("/nonexistent"), None), HostKeyPolicy::Pinned("SHA256:x".into()));
    c.timeout = Duration::from_secs(2);
    let start = Instant::now();
    let e = refused(&c);
    let took = start.elapsed();
    assert!(matches!(e, SourceError::Timeout { .. }), "{e}");
    assert!(took >= Duration::from_secs(2) && took < Duration::from_secs(5), "took {took:?}");
    assert!(e.to_string().contains(&format!("127.0.0.1:{port}")), "{e}");
    assert_eq!((e.exit(), e.retriable()), (Exit::Connection, true));

    // keyscan too gives up within its timeout.
    let start = Instant::now();
    let e = keyscan("127.0.0.1", port, Duration::from_secs(2)).expect_err("keyscan of a silent server");
    assert!(matches!(e, SourceError::Timeout { .. }) && start.elapsed() < Duration::from_secs(5), "{e} after {:?}", start.elapsed());
}

#[test]
fn nothing_listening_is_a_retriable_connection_error() {
    env();
    let port = support::free_port();
    let e = refused(&cfg(port, "root", key(Path::new("/nonexistent"), None), HostKeyPolicy::Pinned("SHA256:x".into())));
    assert!(matches!(e, SourceError::Connect { .. }), "{e}");
    assert!(e.to_string().contains(&format!("127.0.0.1:{port}")) && e.to_string().contains("check host, port and firewall"), "{e}");
    assert_eq!((e.exit(), e.retriable()), (Exit::Connection, true));
}

#[test]
fn a_transfer_cut_once_resumes_where_it_stopped() {
    env();
    let s = Sshd::start();
    let k = s.client_key("ed25519", "");
    let size: u64 = 8 << 20;
    let sum = put(&s.data(), "resume.csv", size as usize, Duration::from_secs(600));
    // Cut after 5 MiB: libssh2 drops what a read call had gathered when the connection
    // fails under it, so the offset reached is that of the last whole 2 MiB read.
    let proxy = TcpProxy::start(s.port, |n| if n == 0 { TcpFault::CutAfter(5 << 20) } else { TcpFault::Pass });
    let c = cfg(proxy.port, &s.user, key(&k, None), pinned(&s));
    let pattern = format!("{}/resume.csv", s.data().display());
    let (got, logs) = logged(|| retrieve(&c, &pattern, &Budget::default()));
    let (_, out, got) = got.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((got.bytes, out.len() as u64), (size, size));
    assert_eq!(got.sha256, sum, "the resumed download must be byte for byte the file");
    assert_eq!(hex::encode(sha2::Sha256::digest(&out)), sum);
    assert_eq!(proxy.connections(), 2);
    // The warning names host, path, attempt and offset.
    let warn = logs.lines().find(|l| l.contains("WARN")).unwrap_or_else(|| panic!("no retry warning: {logs}"));
    for part in [format!("127.0.0.1:{}", proxy.port), pattern.clone(), "attempt 1 of 3".into(), "reconnecting".into(), "to resume".into()] {
        assert!(warn.contains(&part), "{part:?} missing from {warn}");
    }
    let offset: u64 = warn.split("from byte ").nth(1).and_then(|r| r.split(' ').next()).and_then(|n| n.parse().ok()).expect(warn);
    // The cut came after 5 MiB (the proxy forwards 16 KiB at a time); what was written by
    // then depends on how far the reads got, which a loaded machine makes less (libssh2
    // drops what a read call had gathered when the connection fails under it).
    assert!((1..(5 << 20) + 16384).contains(&offset), "resumed from byte {offset}: {warn}");
    // Resumed from that offset, not from byte 0: the second connection carried the rest of
    // the file only (plus the protocol's overhead), not all of it again.
    let rest = size - offset;
    assert!(
        proxy.served() < (5 << 20) + 16384 + rest + (512 << 10),
        "{} bytes through the proxy for a {size}-byte file resumed from byte {offset}",
        proxy.served()
    );
}

#[test]
fn a_transfer_stalled_once_resumes_after_one_timeout() {
    env();
    let s = Sshd::start();
    let k = s.client_key("ed25519", "");
    let size: u64 = 8 << 20;
    let sum = put(&s.data(), "stall.csv", size as usize, Duration::from_secs(600));
    let proxy = TcpProxy::start(s.port, |n| if n == 0 { TcpFault::StallAfter(2 << 20) } else { TcpFault::Pass });
    let mut c = cfg(proxy.port, &s.user, key(&k, None), pinned(&s));
    c.timeout = Duration::from_secs(2);
    let start = Instant::now();
    let (_, out, got) = retrieve(&c, &format!("{}/stall.csv", s.data().display()), &Budget::default()).unwrap_or_else(|e| panic!("{e}"));
    let took = start.elapsed();
    assert_eq!((got.bytes, got.sha256.as_str(), hex::encode(sha2::Sha256::digest(&out))), (size, sum.as_str(), sum.clone()));
    assert!(proxy.served() < size * 3 / 2, "{} bytes through the proxy for a {size}-byte file", proxy.served());
    // One timeout for the stall, none more to close the dead connection, a backoff.
    assert!(took < Duration::from_secs(2 + 4), "took {took:?}");
}

#[test]
fn a_slow_server_within_the_timeout_is_not_taken_for_a_stalled_one() {
    env();
    let s = Sshd::start();
    let k = s.client_key("ed25519", "");
    let sum = put(&s.data(), "slow.csv", 4 << 20, Duration::from_secs(600));
    // Silent for 4 s mid-transfer, with timeout = 6s: slow, not dead. (libssh2's own
    // keepalive timer used to end the wait after timeout / 3 = 2 s.)
    let proxy = TcpProxy::start(s.port, |_| TcpFault::PauseAfter(1 << 20, Duration::from_secs(4)));
    let mut c = cfg(proxy.port, &s.user, key(&k, None), pinned(&s));
    c.timeout = Duration::from_secs(6);
    let (_, _, got) = retrieve(&c, &format!("{}/slow.csv", s.data().display()), &Budget::default()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(got.sha256, sum);
    assert_eq!(proxy.connections(), 1, "no reconnection");
}

#[test]
fn a_file_rewritten_while_the_connection_was_down_is_not_resumed() {
    env();
    let s = Sshd::start();
    let k = s.client_key("ed25519", "");
    put(&s.data(), "moving.csv", 8 << 20, Duration::from_secs(600));
    let data = s.data();
    let port = cutting_proxy_then(s.port, 2 << 20, 1, move || {
        put(&data, "moving.csv", 9 << 20, Duration::from_secs(1));
    });
    let c = cfg(port, &s.user, key(&k, None), pinned(&s));
    let e = retrieve(&c, &format!("{}/moving.csv", s.data().display()), &Budget::default()).unwrap_err();
    assert!(
        matches!(e, SourceError::Truncated { .. }) && e.to_string().contains("the file changed on the server during the download"),
        "{e}"
    );
}

#[test]
fn a_transfer_cut_every_time_is_truncated_and_retriable() {
    env();
    let s = Sshd::start();
    let k = s.client_key("ed25519", "");
    put(&s.data(), "cut.csv", 8 << 20, Duration::from_secs(600));
    let proxy = TcpProxy::start(s.port, |_| TcpFault::CutAfter(1 << 20));
    let c = cfg(proxy.port, &s.user, key(&k, None), pinned(&s));
    let e = retrieve(&c, &format!("{}/cut.csv", s.data().display()), &Budget::default()).unwrap_err();
    let SourceError::Truncated { got, expected, .. } = &e else { panic!("expected Truncated, got {e}") };
    assert!(*got < *expected && *expected == 8 << 20, "{e}");
    assert_eq!((e.exit(), e.retriable()), (Exit::Connection, true));
    // Three attempts in all (Policy::SFTP), each resuming where the last stopped.
    assert!(e.to_string().contains("cut.csv") && e.to_string().contains("gave up after 3 attempts"), "{e}");
    assert_eq!(proxy.connections(), 3);
}

#[test]
fn the_runs_budget_bounds_the_retries() {
    env();
    let s = Sshd::start();
    let k = s.client_key("ed25519", "");
    put(&s.data(), "budget.csv", 4 << 20, Duration::from_secs(600));
    let proxy = TcpProxy::start(s.port, |n| if n == 0 { TcpFault::CutAfter(1 << 20) } else { TcpFault::Pass });
    let c = cfg(proxy.port, &s.user, key(&k, None), pinned(&s));
    // SCIM already spent the run's retries: the cut is not retried.
    let spent = Budget::new(0);
    let e = retrieve(&c, &format!("{}/budget.csv", s.data().display()), &spent).unwrap_err();
    assert!(matches!(e, SourceError::Truncated { .. }) && e.to_string().contains("the run used all of its 0 retries"), "{e}");
    assert_eq!(proxy.connections(), 1);
}

#[test]
fn a_hung_server_fails_the_fetch_within_three_timeouts() {
    env();
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    // Accepts, keeps every connection open, never says a word.
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in l.incoming() {
            held.push(s);
        }
    });
    let mut c = cfg(port, "root", key(Path::new("/nonexistent"), None), HostKeyPolicy::Pinned("SHA256:x".into()));
    c.timeout = Duration::from_secs(2);
    let start = Instant::now();
    let e = retrieve(&c, "/exports/*.csv", &Budget::default()).unwrap_err();
    let took = start.elapsed();
    let SourceError::GaveUp { why, last } = &e else { panic!("expected GaveUp, got {e}") };
    assert_eq!(*why, GiveUp::Attempts(3), "{e}");
    assert!(matches!(**last, SourceError::Timeout { .. }), "{e}");
    assert!(took >= Duration::from_secs(6) && took < Duration::from_secs(3 * 2 + 6), "took {took:?}");
    assert!(e.to_string().contains(&format!("127.0.0.1:{port}")) && e.to_string().contains("gave up after 3 attempts"), "{e}");
    assert_eq!((e.exit(), e.retriable()), (Exit::Connection, true));
}

#[test]
fn a_server_that_hangs_for_good_mid_download_fails_within_three_timeouts() {
    env();
    let s = Sshd::start();
    let k = s.client_key("ed25519", "");
    let size: u64 = 8 << 20;
    put(&s.data(), "hang.csv", size as usize, Duration::from_secs(600));
    // The transfer stalls after 2 MiB, and the server never answers again.
    let proxy = TcpProxy::start(s.port, |n| if n == 0 { TcpFault::StallAfter(2 << 20) } else { TcpFault::Silent });
    let mut c = cfg(proxy.port, &s.user, key(&k, None), pinned(&s));
    c.timeout = Duration::from_secs(2);
    let start = Instant::now();
    let e = retrieve(&c, &format!("{}/hang.csv", s.data().display()), &Budget::default()).unwrap_err();
    let took = start.elapsed();
    let SourceError::Truncated { got, expected, .. } = &e else { panic!("expected Truncated, got {e}") };
    assert!(*got > 0 && *got < *expected, "{e}");
    assert!(e.to_string().contains("hang.csv") && e.to_string().contains("gave up after 3 attempts"), "{e}");
    assert_eq!((e.exit(), e.retriable()), (Exit::Connection, true));
    assert_eq!(proxy.connections(), 3);
    assert!(took < Duration::from_secs(3 * 2 + 6), "took {took:?}");
}
