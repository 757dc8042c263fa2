//! A real OpenSSH sshd for tests, serving internal-sftp on a free loopback port with its
//! own host keys and authorized_keys in a temporary folder; and `rclone serve sftp` for
//! password logins (no system account needed). Both stop when the handle drops.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{free_port, require_binary, wait_for_port};

/// How to set up the server.
#[derive(Debug, Clone)]
pub struct SshdOptions {
    /// Host key types to generate (`ssh-keygen -t`): "ed25519", "ecdsa", "rsa".
    pub host_keys: Vec<&'static str>,
    /// `HostKeyAlgorithms`, when the server must offer only some (e.g. "ssh-rsa").
    pub host_key_algorithms: Option<String>,
    /// Extra sshd_config lines.
    pub extra: Vec<String>,
    /// Keyboard-interactive through PAM (password logins of [`test_user`]); keys otherwise.
    pub keyboard_interactive: bool,
}

impl Default for SshdOptions {
    fn default() -> Self {
        SshdOptions { host_keys: vec!["ed25519"], host_key_algorithms: None, extra: Vec::new(), keyboard_interactive: false }
    }
}

pub struct Sshd {
    child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
    /// Login user (tests run as root; sshd allows it here).
    pub user: String,
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// `ssh-keygen -t TYPE` into `path`, with an optional passphrase.
pub fn keygen(kind: &str, path: &Path, passphrase: &str) {
    let _ = fs::remove_file(path);
    let mut cmd = Command::new(ssh_keygen());
    cmd.args(["-q", "-t", kind, "-N", passphrase, "-C", "rostersync-test", "-f"]).arg(path);
    if kind == "rsa" {
        cmd.args(["-b", "3072"]);
    }
    run(&mut cmd);
}

fn ssh_keygen() -> PathBuf {
    require_binary(&[PathBuf::from("/usr/bin/ssh-keygen")], "ssh-keygen", "apt-get install -y openssh-client")
}

/// The SHA256 fingerprint of a public key file, as `ssh-keygen -l` prints it.
pub fn fingerprint_of(pub_path: &Path) -> String {
    let out = Command::new(ssh_keygen()).arg("-lf").arg(pub_path).output().expect("ssh-keygen -l");
    assert!(out.status.success(), "ssh-keygen -lf {}: {}", pub_path.display(), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).split_whitespace().nth(1).expect("fingerprint field").to_string()
}

impl Sshd {
    pub fn start() -> Sshd {
        Sshd::with(SshdOptions::default())
    }

    pub fn with(opts: SshdOptions) -> Sshd {
        let sshd = require_binary(&[PathBuf::from("/usr/sbin/sshd")], "sshd", "apt-get install -y openssh-server");
        // Privilege separation needs this folder; the package creates it only at boot.
        fs::create_dir_all("/run/sshd").expect("mkdir /run/sshd");
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        fs::create_dir_all(d.join("data")).unwrap();
        fs::write(d.join("authorized_keys"), "").unwrap();
        let port = free_port();
        let kbd = if opts.keyboard_interactive { "yes" } else { "no" };
        let mut conf = format!(
            "Port {port}\nListenAddress 127.0.0.1\nPidFile none\nStrictModes no\nUsePAM {kbd}\nPermitRootLogin yes\n\
             PubkeyAuthentication yes\nPasswordAuthentication no\nKbdInteractiveAuthentication {kbd}\n\
             AuthorizedKeysFile {}\nSubsystem sftp internal-sftp\nLogLevel VERBOSE\n",
            d.join("authorized_keys").display()
        );
        for kind in &opts.host_keys {
            let key = d.join(format!("ssh_host_{kind}_key"));
            keygen(kind, &key, "");
            conf.push_str(&format!("HostKey {}\n", key.display()));
        }
        if let Some(a) = &opts.host_key_algorithms {
            conf.push_str(&format!("HostKeyAlgorithms {a}\n"));
        }
        for l in &opts.extra {
            conf.push_str(l);
            conf.push('\n');
        }
        let conf_path = d.join("sshd_config");
        fs::write(&conf_path, conf).unwrap();
        let log = fs::File::create(d.join("sshd.log")).unwrap();
        let child = Command::new(sshd)
            .args(["-D", "-e", "-f"])
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn sshd");
        let mut s = Sshd { child, port, dir, user: "root".into() };
        if let Ok(Some(status)) = s.child.try_wait() {
            panic!("sshd exited at once ({status}): {}", s.log());
        }
        wait_for_port(port, Duration::from_secs(10), "sshd");
        s
    }

    /// sshd's own log (stderr), for assertion messages.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }

    /// The served folder (an absolute path, as the SFTP client sees it too).
    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// A scratch folder for client-side files (keys, known_hosts).
    pub fn scratch(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    pub fn host_key_pub(&self, kind: &str) -> PathBuf {
        self.dir.path().join(format!("ssh_host_{kind}_key.pub"))
    }

    /// The host key's fingerprint, from ssh-keygen (not from our code).
    pub fn fingerprint(&self, kind: &str) -> String {
        fingerprint_of(&self.host_key_pub(kind))
    }

    /// Connector `acme`'s source on this server, as connectors.toml writes it: its
    /// `[connectors.acme.sftp]` table (key auth with `key`, the ed25519 host key pinned) and
    /// the start of its `[connectors.acme.file]` table taking `pattern` under the served
    /// folder (the newest by name, at any age); callers append further file keys.
    #[allow(dead_code)] // not every test binary that includes support uses it
    pub fn acme_source(&self, key: &Path, pattern: &str) -> String {
        format!(
            "[connectors.acme.sftp]\nhost = \"127.0.0.1\"\nport = {}\nusername = \"{}\"\nauth = \"key\"\nprivate_key = \"{}\"\nhost_key = \"{}\"\ntimeout = \"10s\"\n\n[connectors.acme.file]\npath = \"{}/{pattern}\"\npick = \"last-name\"\nmin_age = \"0s\"\n",
            self.port,
            self.user,
            key.display(),
            self.fingerprint("ed25519"),
            self.data().display()
        )
    }

    /// "TYPE BASE64" of a host key, for known_hosts lines.
    pub fn host_key_line(&self, kind: &str) -> String {
        let text = fs::read_to_string(self.host_key_pub(kind)).unwrap();
        text.split_whitespace().take(2).collect::<Vec<_>>().join(" ")
    }

    /// Generates a client key of `kind` (with `passphrase`, "" for none) and authorizes it.
    pub fn client_key(&self, kind: &str, passphrase: &str) -> PathBuf {
        let path = self.dir.path().join(format!("client_{kind}_{}", if passphrase.is_empty() { "plain" } else { "locked" }));
        keygen(kind, &path, passphrase);
        let public = fs::read_to_string(format!("{}.pub", path.display())).unwrap();
        let mut auth = fs::read_to_string(self.dir.path().join("authorized_keys")).unwrap();
        auth.push_str(&public);
        fs::write(self.dir.path().join("authorized_keys"), auth).unwrap();
        path
    }
}

/// A system account with a password, for password and keyboard-interactive logins to
/// sshd (which checks real accounts). Created once; needs root, as the tests run here.
pub const TEST_USER_PASSWORD: &str = "Rs-test-Pa55word";

pub fn test_user() -> (&'static str, &'static str) {
    const USER: &str = "rostersync-test";
    const PASSWORD: &str = TEST_USER_PASSWORD;
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let exists = Command::new("id").arg(USER).output().map(|o| o.status.success()).unwrap_or(false);
        if !exists {
            run(Command::new("useradd").args(["--system", "--home-dir", "/tmp", "--shell", "/bin/sh", USER]));
        }
        let mut child = Command::new("chpasswd").stdin(Stdio::piped()).spawn().expect("chpasswd (run the tests as root)");
        child.stdin.take().unwrap().write_all(format!("{USER}:{PASSWORD}\n").as_bytes()).unwrap();
        assert!(child.wait().unwrap().success(), "chpasswd failed: password tests against sshd need root");
    });
    (USER, PASSWORD)
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `rclone serve sftp` with a user name and password, serving a temporary folder.
pub struct RcloneSftp {
    child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
    pub user: String,
    pub password: String,
}

impl RcloneSftp {
    pub fn start() -> RcloneSftp {
        let rclone = require_binary(&[PathBuf::from("/usr/bin/rclone")], "rclone", "apt-get install -y rclone");
        let dir = tempfile::tempdir().expect("tempdir");
        fs::create_dir_all(dir.path().join("data")).unwrap();
        let key = dir.path().join("host_ed25519");
        keygen("ed25519", &key, "");
        let port = free_port();
        let (user, password) = ("feeder".to_string(), "s3cret-Pa55".to_string());
        let child = Command::new(rclone)
            .args(["serve", "sftp", "--addr", &format!("127.0.0.1:{port}"), "--user", &user, "--pass", &password, "--key"])
            .arg(&key)
            .arg(dir.path().join("data"))
            .env("RCLONE_CONFIG", dir.path().join("rclone.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn rclone serve sftp");
        wait_for_port(port, Duration::from_secs(15), "rclone serve sftp");
        RcloneSftp { child, port, dir, user, password }
    }

    /// The served folder; rclone shows it to the client as "/".
    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn fingerprint(&self) -> String {
        fingerprint_of(&self.dir.path().join("host_ed25519.pub"))
    }
}

impl Drop for RcloneSftp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
