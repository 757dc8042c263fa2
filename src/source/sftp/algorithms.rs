//! The algorithms we offer (docs/design.md "Security"), and a look at what a server offers:
//! its KEXINIT is sent in clear right after the banners, so a plain TCP probe can read it
//! to explain a failed negotiation or to list its host key types for `keyscan`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// Host key algorithms, best first. Never ssh-rsa (SHA-1 signatures).
pub const HOST_KEYS: &[&str] =
    &["ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521", "rsa-sha2-512", "rsa-sha2-256"];
/// Key exchange: curve25519, ECDH, and finite-field groups of 4096 bits and more.
pub const KEX: &[&str] = &[
    "curve25519-sha256",
    "curve25519-sha256@libssh.org",
    "ecdh-sha2-nistp256",
    "ecdh-sha2-nistp384",
    "ecdh-sha2-nistp521",
    "diffie-hellman-group16-sha512",
    "diffie-hellman-group18-sha512",
];
/// No CBC modes.
pub const CIPHERS: &[&str] =
    &["chacha20-poly1305@openssh.com", "aes256-gcm@openssh.com", "aes128-gcm@openssh.com", "aes256-ctr", "aes192-ctr", "aes128-ctr"];
/// No SHA-1 or MD5 MACs; AEAD ciphers need none.
pub const MACS: &[&str] = &["hmac-sha2-256-etm@openssh.com", "hmac-sha2-512-etm@openssh.com", "hmac-sha2-256", "hmac-sha2-512"];

/// Restricts a session to the lists above (host keys to `host_keys`), before the handshake.
pub fn restrict(sess: &ssh2::Session, host_keys: &[&str]) -> Result<(), ssh2::Error> {
    use ssh2::MethodType::*;
    sess.method_pref(Kex, &KEX.join(","))?;
    sess.method_pref(HostKey, &host_keys.join(","))?;
    for m in [CryptCs, CryptSc] {
        sess.method_pref(m, &CIPHERS.join(","))?;
    }
    for m in [MacCs, MacSc] {
        sess.method_pref(m, &MACS.join(","))?;
    }
    Ok(())
}

/// The name-lists of a server's KEXINIT (RFC 4253 §7.1) that we negotiate on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Offer {
    pub banner: String,
    pub kex: Vec<String>,
    pub host_keys: Vec<String>,
    pub ciphers: Vec<String>,
    pub macs: Vec<String>,
}

impl Offer {
    /// One line per category with nothing in common with us, or None when each has something.
    pub fn obsolete(&self) -> Option<String> {
        let mut gaps = Vec::new();
        let mut check = |what: &str, theirs: &[String], ours: &[&str], needed: bool| {
            if needed && !theirs.iter().any(|t| ours.contains(&t.as_str())) {
                gaps.push(format!("{what}: the server offers {} — we accept {}", theirs.join(", "), ours.join(", ")));
            }
        };
        check("host key algorithms", &self.host_keys, HOST_KEYS, true);
        check("key exchange", &self.kex, KEX, true);
        check("ciphers", &self.ciphers, CIPHERS, true);
        // AEAD ciphers carry their own integrity, so the MAC list matters only without one.
        let aead = self.ciphers.iter().any(|c| c.contains("gcm") || c.contains("chacha20"));
        check("MACs", &self.macs, MACS, !aead);
        if gaps.is_empty() { None } else { Some(gaps.join("; ")) }
    }
}

/// Reads the server's banner and KEXINIT, sending only our banner. No keys are exchanged.
pub fn probe(host: &str, port: u16, timeout: Duration) -> std::io::Result<Offer> {
    let mut s = super::tcp_connect(host, port, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    s.write_all(b"SSH-2.0-rostersync_probe\r\n")?;
    // Servers may send other lines before their banner (RFC 4253 §4.2).
    let mut banner = String::new();
    for _ in 0..50 {
        let line = read_line(&mut s)?;
        if line.starts_with("SSH-") {
            banner = line;
            break;
        }
    }
    if banner.is_empty() {
        return Err(bad("no SSH banner in the server's first 50 lines"));
    }
    let mut len = [0u8; 4];
    s.read_exact(&mut len)?;
    let len = u32::from_be_bytes(len) as usize;
    if !(6..=256 * 1024).contains(&len) {
        return Err(bad("the server's first packet has an impossible length"));
    }
    let mut packet = vec![0u8; len];
    s.read_exact(&mut packet)?;
    let pad = packet[0] as usize;
    let payload = packet.get(1..len.saturating_sub(pad)).ok_or_else(|| bad("bad padding"))?;
    if payload.first() != Some(&20) {
        return Err(bad("the server's first packet is not KEXINIT"));
    }
    let mut rest = payload.get(17..).ok_or_else(|| bad("short KEXINIT"))?; // type + 16-byte cookie
    let mut lists = Vec::new();
    for _ in 0..6 {
        let n = rest.get(..4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize).ok_or_else(|| bad("short KEXINIT"))?;
        let text = rest.get(4..4 + n).ok_or_else(|| bad("short KEXINIT"))?;
        lists.push(String::from_utf8_lossy(text).split(',').filter(|x| !x.is_empty()).map(String::from).collect::<Vec<_>>());
        rest = &rest[4 + n..];
    }
    let mut it = lists.into_iter();
    let (kex, host_keys, ciphers, _, macs) = (
        it.next().unwrap_or_default(),
        it.next().unwrap_or_default(),
        it.next().unwrap_or_default(),
        it.next(),
        it.next().unwrap_or_default(),
    );
    // Pseudo-algorithms that announce extensions are not key exchanges.
    let kex = kex.into_iter().filter(|k| !k.starts_with("ext-info-") && !k.starts_with("kex-strict-")).collect();
    Ok(Offer { banner, kex, host_keys, ciphers, macs })
}

fn read_line(s: &mut TcpStream) -> std::io::Result<String> {
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    while line.len() < 1024 {
        s.read_exact(&mut b)?;
        if b[0] == b'\n' {
            break;
        }
        line.push(b[0]);
    }
    Ok(String::from_utf8_lossy(&line).trim_end_matches('\r').to_string())
}

fn bad(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(x: &[&str]) -> Vec<String> {
        x.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn an_ssh_rsa_only_server_is_obsolete_and_says_why() {
        let o = Offer {
            banner: "SSH-2.0-OpenSSH_6.6".into(),
            kex: v(&["curve25519-sha256"]),
            host_keys: v(&["ssh-rsa"]),
            ciphers: v(&["aes128-ctr"]),
            macs: v(&["hmac-sha2-256"]),
        };
        let msg = o.obsolete().expect("obsolete");
        assert!(msg.contains("host key algorithms: the server offers ssh-rsa — we accept ssh-ed25519"), "{msg}");
        assert!(!msg.contains("ciphers"), "{msg}");
    }

    #[test]
    fn sha1_macs_are_fine_next_to_an_aead_cipher() {
        let o = Offer {
            banner: String::new(),
            kex: v(&["diffie-hellman-group14-sha1", "curve25519-sha256"]),
            host_keys: v(&["rsa-sha2-512"]),
            ciphers: v(&["aes256-gcm@openssh.com"]),
            macs: v(&["hmac-sha1"]),
        };
        assert_eq!(o.obsolete(), None);
    }
}
