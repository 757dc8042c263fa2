//! Host keys: fingerprints as OpenSSH prints them, known_hosts files (plain and hashed
//! entries, `[host]:port`, wildcards, `@revoked`), and the verdict on an offered key.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use sha2::Digest;

/// `SHA256:` + base64 without padding of the key blob's SHA-256, as `ssh-keygen -l` prints.
pub fn fingerprint(blob: &[u8]) -> String {
    format!("SHA256:{}", STANDARD_NO_PAD.encode(sha2::Sha256::digest(blob)))
}

/// The key type named inside a public key blob ("ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256").
pub fn blob_type(blob: &[u8]) -> String {
    let name = blob.get(..4).map(|l| u32::from_be_bytes([l[0], l[1], l[2], l[3]]) as usize).and_then(|n| blob.get(4..4 + n));
    match name {
        Some(n) => String::from_utf8_lossy(n).into_owned(),
        None => "unknown".into(),
    }
}

/// Host key algorithms (what `method_pref` takes) that prove possession of a key of
/// this type. RSA keys are used with SHA-2 signatures only.
pub fn algorithms_for_key_type(key_type: &str) -> &'static [&'static str] {
    match key_type {
        "ssh-ed25519" => &["ssh-ed25519"],
        "ecdsa-sha2-nistp256" => &["ecdsa-sha2-nistp256"],
        "ecdsa-sha2-nistp384" => &["ecdsa-sha2-nistp384"],
        "ecdsa-sha2-nistp521" => &["ecdsa-sha2-nistp521"],
        "ssh-rsa" => &["rsa-sha2-512", "rsa-sha2-256"],
        _ => &[],
    }
}

/// One key line of a known_hosts file that applies to our host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownKey {
    pub key_type: String,
    pub blob: Vec<u8>,
    pub revoked: bool,
    /// 1-based line in the file, for messages.
    pub line: usize,
}

/// The keys a known_hosts text holds for `host` on `port`. Lines that do not parse are
/// skipped, as OpenSSH does; `@cert-authority` lines are ignored (we do not offer certificates).
pub fn known_keys(text: &str, host: &str, port: u16) -> Vec<KnownKey> {
    // OpenSSH writes non-default ports as "[host]:port" and hashes that form.
    let name = if port == 22 { host.to_string() } else { format!("[{host}]:{port}") };
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.split_whitespace();
        let mut first = fields.next().unwrap_or("");
        let mut revoked = false;
        if first.starts_with('@') {
            match first {
                "@revoked" => revoked = true,
                _ => continue,
            }
            first = fields.next().unwrap_or("");
        }
        let (Some(key_type), Some(b64)) = (fields.next(), fields.next()) else { continue };
        if !hosts_match(first, &name) {
            continue;
        }
        let Ok(blob) = STANDARD.decode(b64) else { continue };
        // The blob names its own type; a line whose two disagree is corrupt.
        if blob_type(&blob) != key_type {
            continue;
        }
        out.push(KnownKey { key_type: key_type.to_string(), blob, revoked, line: i + 1 });
    }
    out
}

/// Reads a known_hosts file; an unreadable file is an error worth stopping for.
pub fn read_known_keys(path: &Path, host: &str, port: u16) -> Result<Vec<KnownKey>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read known_hosts file {}: {e}", path.display()))?;
    Ok(known_keys(&text, host, port))
}

/// The host field: a hashed `|1|salt|hash` entry, or comma-separated patterns with `*`,
/// `?` and `!` negation.
fn hosts_match(field: &str, name: &str) -> bool {
    if let Some(rest) = field.strip_prefix("|1|") {
        let Some((salt, hash)) = rest.split_once('|') else { return false };
        let (Ok(salt), Ok(hash)) = (STANDARD.decode(salt), STANDARD.decode(hash)) else { return false };
        return hmac_sha1(&salt, name.as_bytes()).as_slice() == hash.as_slice();
    }
    let mut matched = false;
    for pat in field.split(',') {
        if let Some(neg) = pat.strip_prefix('!') {
            if wildcard(&neg.to_ascii_lowercase(), &name.to_ascii_lowercase()) {
                return false;
            }
        } else if wildcard(&pat.to_ascii_lowercase(), &name.to_ascii_lowercase()) {
            matched = true;
        }
    }
    matched
}

fn wildcard(p: &str, n: &str) -> bool {
    fn m(p: &[u8], n: &[u8]) -> bool {
        match p.first() {
            None => n.is_empty(),
            Some(b'*') => (0..=n.len()).any(|i| m(&p[1..], &n[i..])),
            Some(b'?') => !n.is_empty() && m(&p[1..], &n[1..]),
            Some(c) => n.first() == Some(c) && m(&p[1..], &n[1..]),
        }
    }
    m(p.as_bytes(), n.as_bytes())
}

/// HMAC-SHA1 (RFC 2104), used only to match OpenSSH's hashed host names.
fn hmac_sha1(key: &[u8], msg: &[u8]) -> [u8; 20] {
    use sha1::Sha1;
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..20].copy_from_slice(&Sha1::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha1::new();
    inner.update(k.map(|b| b ^ 0x36));
    inner.update(msg);
    let mut outer = Sha1::new();
    outer.update(k.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

/// What known_hosts says about an offered key.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Trusted,
    Revoked {
        line: usize,
    },
    /// A key of the same type is recorded for the host, and it is another key.
    Changed {
        lines: Vec<usize>,
    },
    /// Nothing of this type is recorded for the host (maybe keys of other types).
    Unknown,
}

pub fn check_known(known: &[KnownKey], blob: &[u8]) -> Verdict {
    if let Some(k) = known.iter().find(|k| k.revoked && k.blob == blob) {
        return Verdict::Revoked { line: k.line };
    }
    if known.iter().any(|k| !k.revoked && k.blob == blob) {
        return Verdict::Trusted;
    }
    let ty = blob_type(blob);
    let lines: Vec<usize> = known.iter().filter(|k| !k.revoked && k.key_type == ty).map(|k| k.line).collect();
    if lines.is_empty() { Verdict::Unknown } else { Verdict::Changed { lines } }
}

#[cfg(test)]
mod tests {
    use super::*;

    // `ssh-keygen -l` on this key prints SHA256:E3HtAfoQKI+T8EK272AlIgRPFieaFd0lsvhdsT2fuic.
    const ED: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIELgdQTPta5sFKeZuOWFtjYWrTjAEl8V5NmAbIM9QEjh";

    #[test]
    fn fingerprint_and_type_as_openssh_prints_them() {
        let blob = STANDARD.decode(ED).unwrap();
        assert_eq!(blob_type(&blob), "ssh-ed25519");
        assert_eq!(fingerprint(&blob), "SHA256:E3HtAfoQKI+T8EK272AlIgRPFieaFd0lsvhdsT2fuic");
    }

    #[test]
    fn plain_patterns_ports_and_negation() {
        let text = format!(
            "# comment\nfoo.example,10.0.0.1 ssh-ed25519 {ED}\n[bar.example]:2222 ssh-ed25519 {ED}\n*.corp,!evil.corp ssh-ed25519 {ED}\n"
        );
        assert_eq!(known_keys(&text, "foo.example", 22).len(), 1);
        assert_eq!(known_keys(&text, "10.0.0.1", 22).len(), 1);
        assert_eq!(known_keys(&text, "foo.example", 2222).len(), 0);
        assert_eq!(known_keys(&text, "bar.example", 2222).len(), 1);
        assert_eq!(known_keys(&text, "a.corp", 22).len(), 1);
        assert_eq!(known_keys(&text, "evil.corp", 22).len(), 0);
    }

    #[test]
    fn hashed_entry_matches_its_host_only() {
        // `ssh-keygen -H` writes |1|base64(salt)|base64(HMAC-SHA1(salt, name)).
        let salt = [7u8; 20];
        let hash = hmac_sha1(&salt, b"[127.0.0.1]:2222");
        let text = format!("|1|{}|{} ssh-ed25519 {ED}\n", STANDARD.encode(salt), STANDARD.encode(hash));
        assert_eq!(known_keys(&text, "127.0.0.1", 2222).len(), 1);
        assert_eq!(known_keys(&text, "127.0.0.1", 22).len(), 0);
    }

    #[test]
    fn hmac_sha1_rfc2202_case_2() {
        assert_eq!(hex::encode(hmac_sha1(b"Jefe", b"what do ya want for nothing?")), "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79");
    }

    #[test]
    fn another_type_is_unknown_not_changed() {
        let blob = STANDARD.decode(ED).unwrap();
        let other = KnownKey { key_type: "ecdsa-sha2-nistp256".into(), blob: vec![0, 0, 0, 1, b'x'], revoked: false, line: 3 };
        assert_eq!(check_known(std::slice::from_ref(&other), &blob), Verdict::Unknown);
        let changed = KnownKey { key_type: "ssh-ed25519".into(), blob: vec![1, 2, 3], revoked: false, line: 4 };
        assert_eq!(check_known(&[other, changed], &blob), Verdict::Changed { lines: vec![4] });
        let same = KnownKey { key_type: "ssh-ed25519".into(), blob: blob.clone(), revoked: false, line: 5 };
        assert_eq!(check_known(std::slice::from_ref(&same), &blob), Verdict::Trusted);
        assert_eq!(check_known(&[KnownKey { revoked: true, ..same }], &blob), Verdict::Revoked { line: 5 });
    }
}
