//! OpenPGP exports, made by GnuPG, through a real sshd to scim2-server: encrypted and signed
//! (binary, armored, compressed or not), altered, signed by another key, unsigned, and our
//! key with a passphrase. A refused file is exit 4 naming the fault, and the platform is
//! left as it was. Also `check` on the key files and `rostersync pgp-key`.

use crate::support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::project::{HEADER, row, rows};
use support::scim::ScimServer;
use support::sshd::Sshd;

/// A GnuPG home of its own, with three keys: ours (which the customer encrypts to), the
/// customer's (which signs) and a stranger's.
struct Gpg {
    home: tempfile::TempDir,
    ours: String,
    customer: String,
    stranger: String,
}

impl Gpg {
    /// `our_passphrase` protects our secret key ("" for none).
    fn new(our_passphrase: &str) -> Gpg {
        support::require_binary(&[PathBuf::from("/usr/bin/gpg")], "gpg", "apt-get install gnupg (scripts/install-test-deps.sh)");
        // Short: gpg-agent's socket path must fit in a sockaddr_un.
        let home = tempfile::Builder::new().prefix("gpg").tempdir_in("/tmp").unwrap();
        let mut g = Gpg { home, ours: String::new(), customer: String::new(), stranger: String::new() };
        g.ours = g.key("Rostersync <rostersync@example.test>", our_passphrase);
        g.customer = g.key("Acme HR <hr@acme.example>", "");
        g.stranger = g.key("Mallory <mallory@example.test>", "");
        g
    }

    fn gpg(&self, args: &[&str]) -> std::process::Output {
        let out = Command::new("gpg")
            .env("GNUPGHOME", self.home.path())
            .args(["--batch", "--yes", "--pinentry-mode", "loopback", "--trust-model", "always"])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "gpg {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        out
    }

    /// An ed25519 signing key with a cv25519 encryption subkey; its fingerprint.
    fn key(&self, uid: &str, passphrase: &str) -> String {
        self.gpg(&["--passphrase", passphrase, "--quick-gen-key", uid, "ed25519", "cert,sign", "never"]);
        let list = String::from_utf8(self.gpg(&["--with-colons", "--list-keys", uid]).stdout).unwrap();
        let fpr = list.lines().find_map(|l| l.strip_prefix("fpr:")).unwrap().trim_matches(':').to_string();
        self.gpg(&["--passphrase", passphrase, "--quick-add-key", &fpr, "cv25519", "encr", "never"]);
        fpr
    }

    fn export_secret(&self, fpr: &str, passphrase: &str, to: &Path) {
        let out = self.gpg(&["--passphrase", passphrase, "--armor", "--export-secret-keys", fpr]);
        std::fs::write(to, out.stdout).unwrap();
    }

    fn export_public(&self, fpr: &str, to: &Path) {
        std::fs::write(to, self.gpg(&["--armor", "--export", fpr]).stdout).unwrap();
    }

    /// `plain` encrypted to our key, signed by `signer` (None: unsigned), with extra options.
    fn encrypt(&self, plain: &Path, out: &Path, signer: Option<&str>, extra: &[&str]) {
        let (o, p) = (out.to_str().unwrap(), plain.to_str().unwrap());
        let mut args = vec!["--passphrase", "", "--recipient", &self.ours, "--output", o];
        args.extend_from_slice(extra);
        match signer {
            Some(s) => args.extend_from_slice(&["--local-user", s, "--sign", "--encrypt", p]),
            None => args.extend_from_slice(&["--encrypt", p]),
        }
        self.gpg(&args);
    }
}

impl Drop for Gpg {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf").env("GNUPGHOME", self.home.path()).args(["--kill", "gpg-agent"]).status();
    }
}

struct Setup {
    sshd: Sshd,
    scim: ScimServer,
    gpg: Gpg,
    dir: tempfile::TempDir,
}

impl Setup {
    /// A connector reading `employees_*.csv.gpg` (or .asc) over SFTP with our key (with
    /// `passphrase`) and the customer's.
    fn new(passphrase: &str) -> Setup {
        let gpg = Gpg::new(passphrase);
        let sshd = Sshd::start();
        let key = sshd.client_key("ed25519", "");
        let scim = ScimServer::start();
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("mappings")).unwrap();
        std::fs::create_dir_all(dir.path().join("secrets")).unwrap();
        std::fs::copy(support::repo_root().join("mappings/demo.toml"), dir.path().join("mappings/demo.toml")).unwrap();
        std::fs::create_dir_all(sshd.data().join("exports")).unwrap();
        gpg.export_secret(&gpg.ours, passphrase, &dir.path().join("secrets/ours.key.asc"));
        gpg.export_public(&gpg.customer, &dir.path().join("secrets/acme.pub.asc"));
        let pass = if passphrase.is_empty() { String::new() } else { "passphrase_env = \"PGP_PASSPHRASE\"\n".to_string() };
        let cfg = format!(
            r#"[platform]
kind = "scim"
base_url = "{base}"
token_env = "PLATFORM_SCIM_TOKEN"

[state]
url = "sqlite://state/rostersync.db"

[connectors.acme]
mapping = "mappings/demo.toml"

{source}decrypt_key = "secrets/ours.key.asc"
{pass}verify_key = "secrets/acme.pub.asc"
"#,
            base = scim.base_url,
            source = sshd.acme_source(&key, "exports/employees_*"),
        );
        std::fs::write(dir.path().join("connectors.toml"), cfg).unwrap();
        Setup { sshd, scim, gpg, dir }
    }

    /// Writes the export as GnuPG makes it on the SFTP server; returns its path there.
    fn export(&self, name: &str, rows: &[String], signer: Option<&str>, extra: &[&str]) -> PathBuf {
        let plain = self.dir.path().join("plain.csv");
        std::fs::write(&plain, format!("{HEADER}\n{}\n", rows.join("\n"))).unwrap();
        let out = self.sshd.data().join("exports").join(name);
        self.gpg.encrypt(&plain, &out, signer, extra);
        std::fs::remove_file(plain).unwrap();
        out
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(support::rostersync_bin());
        c.arg("--config")
            .arg(self.dir.path().join("connectors.toml"))
            .args(args)
            .env("PLATFORM_SCIM_TOKEN", &self.scim.token)
            .env("PGP_PASSPHRASE", "correct horse");
        c
    }

    fn sync(&self) -> (i32, serde_json::Value) {
        let out = self.command(&["--json", "sync", "acme"]).output().unwrap();
        let v = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!("not one JSON report ({e}): {}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
        });
        (out.status.code().unwrap(), v)
    }

    /// The active flags of the platform's users, by externalId.
    fn active(&self) -> Vec<(String, bool)> {
        let mut v: Vec<(String, bool)> = self
            .scim
            .users()
            .iter()
            .map(|u| (u["externalId"].as_str().unwrap().to_string(), u["active"].as_bool().unwrap_or(true)))
            .collect();
        v.sort();
        v
    }
}

fn message(r: &serde_json::Value) -> String {
    r["message"].as_str().unwrap_or_default().to_string()
}

#[test]
fn signed_and_encrypted_exports_sync_and_every_fault_is_exit_4_naming_it_with_the_platform_untouched() {
    let s = Setup::new("");
    // Encrypted to us and signed by the customer, binary and compressed (GnuPG's default).
    s.export("employees_01.csv.gpg", &rows(3), Some(&s.gpg.customer), &[]);
    let (code, r) = s.sync();
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["counts"]["created"], 3, "{r}");
    let before = s.active();
    assert_eq!(before.len(), 3);

    // Each bad file holds one person fewer: synced, it would deactivate them.
    let two = &rows(2);

    // Altered: one byte of the ciphertext flipped (the integrity check fails).
    let p = s.export("employees_02.csv.gpg", two, Some(&s.gpg.customer), &["--compress-algo", "none"]);
    let mut bytes = std::fs::read(&p).unwrap();
    let mid = bytes.len() - 40;
    bytes[mid] ^= 0x01;
    std::fs::write(&p, bytes).unwrap();
    let (code, r) = s.sync();
    assert_eq!(code, 4, "{r}");
    assert!(message(&r).contains("was altered"), "{r}");
    assert!(message(&r).contains("employees_02.csv.gpg"), "{r}");
    assert_eq!(s.active(), before);
    std::fs::remove_file(&p).unwrap();

    // Signed by another key.
    let p = s.export("employees_03.csv.gpg", two, Some(&s.gpg.stranger), &[]);
    let (code, r) = s.sync();
    assert_eq!(code, 4, "{r}");
    assert!(message(&r).contains("signed by another key"), "{r}");
    assert!(message(&r).contains(&s.gpg.customer), "the expected key is named: {r}");
    assert_eq!(s.active(), before);
    std::fs::remove_file(&p).unwrap();

    // Unsigned.
    let p = s.export("employees_04.csv.gpg", two, None, &[]);
    let (code, r) = s.sync();
    assert_eq!(code, 4, "{r}");
    assert!(message(&r).contains("is not signed"), "{r}");
    assert_eq!(s.active(), before);
    std::fs::remove_file(&p).unwrap();

    // Encrypted to the stranger, not to us.
    let plain = s.dir.path().join("plain.csv");
    std::fs::write(&plain, format!("{HEADER}\n{}\n", two.join("\n"))).unwrap();
    let p = s.sshd.data().join("exports/employees_05.csv.gpg");
    s.gpg.gpg(&[
        "--passphrase",
        "",
        "--recipient",
        &s.gpg.stranger,
        "--local-user",
        &s.gpg.customer,
        "--output",
        p.to_str().unwrap(),
        "--sign",
        "--encrypt",
        plain.to_str().unwrap(),
    ]);
    let (code, r) = s.sync();
    assert_eq!(code, 4, "{r}");
    assert!(message(&r).contains("not to our key"), "{r}");
    assert_eq!(s.active(), before);
    std::fs::remove_file(&p).unwrap();

    // A plain CSV where an encrypted export is expected.
    std::fs::write(s.sshd.data().join("exports/employees_06.csv"), format!("{HEADER}\n{}\n", two.join("\n"))).unwrap();
    let (code, r) = s.sync();
    assert_eq!(code, 4, "{r}");
    assert!(message(&r).contains("not an OpenPGP message"), "{r}");
    assert_eq!(s.active(), before);
    std::fs::remove_file(s.sshd.data().join("exports/employees_06.csv")).unwrap();

    // Armored and uncompressed, signed by the customer: synced (one person updated).
    let mut changed = rows(3);
    changed[1] = row(2, "ann2@example.com", true, "Finance");
    s.export("employees_07.csv.asc", &changed, Some(&s.gpg.customer), &["--armor", "--compress-algo", "none"]);
    let (code, r) = s.sync();
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["counts"]["updated"], 1, "{r}");
}

#[test]
fn our_key_with_a_passphrase_decrypts_and_check_and_pgp_key_read_the_keys() {
    let s = Setup::new("correct horse");
    s.export("employees_01.csv.gpg", &rows(2), Some(&s.gpg.customer), &[]);
    let (code, r) = s.sync();
    assert_eq!(code, 0, "{r}");
    assert_eq!(s.active().len(), 2);

    // pgp-key prints our public key, the one GnuPG holds.
    let out = s.command(&["pgp-key", "acme"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("-----BEGIN PGP PUBLIC KEY BLOCK-----"), "{text}");
    assert!(!text.contains("PRIVATE KEY"), "{text}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&s.gpg.ours), "the fingerprint is named: {stderr}");
    let printed = s.dir.path().join("printed.asc");
    std::fs::write(&printed, &text).unwrap();
    let shown = String::from_utf8(s.gpg.gpg(&["--with-colons", "--show-keys", printed.to_str().unwrap()]).stdout).unwrap();
    assert!(shown.contains(&s.gpg.ours), "{shown}");

    // check: fine as it is; a wrong passphrase, then keys swapped, each named.
    let out = s.command(&["check"]).output().unwrap();
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let out = s.command(&["check"]).env("PGP_PASSPHRASE", "wrong").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(all.contains("does not unlock decrypt_key"), "{all}");
    let (code, r) = {
        let out = s.command(&["--json", "sync", "acme", "--force"]).env("PGP_PASSPHRASE", "wrong").output().unwrap();
        (out.status.code().unwrap(), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    assert_eq!(code, 2, "{r}");

    let cfg = s.dir.path().join("connectors.toml");
    let text = std::fs::read_to_string(&cfg).unwrap().replace("secrets/ours.key.asc", "secrets/acme.pub.asc");
    std::fs::write(&cfg, text).unwrap();
    let out = s.command(&["check"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(all.contains("holds a public key"), "{all}");
}
