//! Host keys: fingerprints as OpenSSH prints them, known_hosts files (plain and hashed
//! entries, `[host]:port`, wildcards, `@revoked`), and the status of an offered key.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
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
///
/// `ssh-key` parses each line (marker, host patterns or hashed name, the key, which it
/// checks against its named type). It does not match hosts, so the matching is here: the
/// `[host]:port` form, `*`/`?` wildcards with `!` negation, and hashed names by HMAC-SHA1.
pub fn known_keys(text: &str, host: &str, port: u16) -> Vec<KnownKey> {
    use ssh_key::known_hosts::{Entry, Marker};
    // OpenSSH writes non-default ports as "[host]:port" and hashes that form.
    let name = if port == 22 { host.to_string() } else { format!("[{host}]:{port}") };
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        // ssh-key splits fields on single spaces; OpenSSH takes any run of blanks.
        let line = raw.split_whitespace().collect::<Vec<_>>().join(" ");
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Ok(entry) = line.parse::<Entry>() else { continue };
        let revoked = match entry.marker() {
            None => false,
            Some(Marker::Revoked) => true,
            Some(Marker::CertAuthority) => continue,
        };
        if !hosts_match(entry.host_patterns(), &name) {
            continue;
        }
        let Ok(blob) = entry.public_key().to_bytes() else { continue };
        out.push(KnownKey { key_type: blob_type(&blob), blob, revoked, line: i + 1 });
    }
    out
}

/// Reads a known_hosts file; an unreadable file is an error worth stopping for.
pub fn read_known_keys(path: &Path, host: &str, port: u16) -> Result<Vec<KnownKey>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read known_hosts file {}: {e}", path.display()))?;
    Ok(known_keys(&text, host, port))
}

/// The host field: a hashed `|1|salt|hash` entry, or comma-separated patterns with `*`,
/// `?` and `!` negation (a negated match wins over every other pattern, as in OpenSSH).
fn hosts_match(patterns: &ssh_key::known_hosts::HostPatterns, name: &str) -> bool {
    use ssh_key::known_hosts::HostPatterns;
    match patterns {
        HostPatterns::HashedName { salt, hash } => {
            use hmac::{KeyInit, Mac};
            let Ok(mut mac) = hmac::Hmac::<sha1::Sha1>::new_from_slice(salt) else { return false };
            mac.update(name.as_bytes());
            mac.verify_slice(hash).is_ok()
        }
        HostPatterns::Patterns(list) => {
            let name = name.to_ascii_lowercase();
            let mut matched = false;
            for pat in list {
                if let Some(neg) = pat.strip_prefix('!') {
                    if wildcard(&neg.to_ascii_lowercase(), &name) {
                        return false;
                    }
                } else if wildcard(&pat.to_ascii_lowercase(), &name) {
                    matched = true;
                }
            }
            matched
        }
    }
}

/// OpenSSH's host wildcards: `*` and `?` only. Not globset: in known_hosts `[` is literal
/// (`[host]:port`), where a glob would read it as a character class. Greedy with one
/// backtrack point, so O(pattern × name) at worst, never exponential.
fn wildcard(p: &str, n: &str) -> bool {
    let (p, n) = (p.as_bytes(), n.as_bytes());
    let (mut i, mut j) = (0, 0);
    // The last `*` seen, and the name position it currently stands for up to.
    let mut star: Option<(usize, usize)> = None;
    while j < n.len() {
        match p.get(i) {
            Some(b'*') => {
                star = Some((i, j));
                i += 1;
            }
            Some(&c) if c == b'?' || c == n[j] => {
                i += 1;
                j += 1;
            }
            _ => match star {
                Some((si, sj)) => {
                    i = si + 1;
                    j = sj + 1;
                    star = Some((si, sj + 1));
                }
                None => return false,
            },
        }
    }
    p[i.min(p.len())..].iter().all(|&c| c == b'*')
}

/// HMAC-SHA1 of `msg` under `key`, as OpenSSH hashes host names.
#[cfg(test)]
fn hmac_sha1(key: &[u8], msg: &[u8]) -> [u8; 20] {
    use hmac::{KeyInit, Mac};
    let mut mac = hmac::Hmac::<sha1::Sha1>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(msg);
    mac.finalize().into_bytes().into()
}

/// What known_hosts says about an offered key.
#[derive(Debug, PartialEq, Eq)]
pub enum HostKeyStatus {
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

pub fn check_known(known: &[KnownKey], blob: &[u8]) -> HostKeyStatus {
    if let Some(k) = known.iter().find(|k| k.revoked && k.blob == blob) {
        return HostKeyStatus::Revoked { line: k.line };
    }
    if known.iter().any(|k| !k.revoked && k.blob == blob) {
        return HostKeyStatus::Trusted;
    }
    let ty = blob_type(blob);
    let lines: Vec<usize> = known.iter().filter(|k| !k.revoked && k.key_type == ty).map(|k| k.line).collect();
    if lines.is_empty() { HostKeyStatus::Unknown } else { HostKeyStatus::Changed { lines } }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::STANDARD;

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
        assert_eq!(check_known(std::slice::from_ref(&other), &blob), HostKeyStatus::Unknown);
        let changed = KnownKey { key_type: "ssh-ed25519".into(), blob: vec![1, 2, 3], revoked: false, line: 4 };
        assert_eq!(check_known(&[other, changed], &blob), HostKeyStatus::Changed { lines: vec![4] });
        let same = KnownKey { key_type: "ssh-ed25519".into(), blob: blob.clone(), revoked: false, line: 5 };
        assert_eq!(check_known(std::slice::from_ref(&same), &blob), HostKeyStatus::Trusted);
        assert_eq!(check_known(&[KnownKey { revoked: true, ..same }], &blob), HostKeyStatus::Revoked { line: 5 });
    }

    #[test]
    fn revoked_markers_blanks_and_corrupt_lines() {
        let blob = STANDARD.decode(ED).unwrap();
        // Tabs and runs of blanks between fields, as people edit these files.
        let text = format!(
            "@revoked\t[bar.example]:2222   ssh-ed25519 {ED} old key\n\
             @cert-authority *.example ssh-ed25519 {ED}\n\
             [bar.example]:2222 ssh-ed25519 AAAAnot-base64!\n\
             [bar.example]:2222 ecdsa-sha2-nistp256 {ED}\n"
        );
        let keys = known_keys(&text, "bar.example", 2222);
        assert_eq!(
            keys,
            vec![KnownKey { key_type: "ssh-ed25519".into(), blob, revoked: true, line: 1 }],
            "CA, corrupt and mistyped lines skipped"
        );
        assert!(known_keys(&text, "a.example", 22).is_empty(), "@cert-authority is not a host key");
    }

    #[test]
    fn host_wildcards() {
        for (p, n, want) in [
            ("*", "anything", true),
            ("*.corp", "a.corp", true),
            ("*.corp", "corp", false),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("[10.0.0.*]:2222", "[10.0.0.7]:2222", true),
            ("[10.0.0.*]:2222", "[10.0.0.7]:22", false),
            ("*a*a*a*a*b", &"a".repeat(3000), false),
            ("", "", true),
            ("**", "", true),
        ] {
            assert_eq!(wildcard(p, n), want, "{p} against {n}");
        }
    }
}
