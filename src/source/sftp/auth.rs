//! Authentication: private keys (looked at first, so a PuTTY, SSH2 or encrypted key gets
//! an error that says how to fix it, not libssh2's "unsupported format"), password and
//! keyboard-interactive. Secrets come from the environment and never enter a message.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ssh2::{ErrorCode, KeyboardInteractivePrompt, Prompt, Session};

use crate::secret::SecretRef;
use crate::source::settings::SftpAuth;

/// What a private key file looks like before libssh2 sees it.
#[derive(Debug, PartialEq, Eq)]
pub enum KeyFile {
    /// OpenSSH (`BEGIN OPENSSH PRIVATE KEY`) or PEM (`BEGIN RSA/EC PRIVATE KEY`), with
    /// whether it is encrypted.
    Usable { encrypted: bool },
    /// Not something we can use; the text says why and what to run.
    Refused(String),
}

/// Classifies a key file's contents; `path` is only echoed in advice.
pub fn inspect_key(text: &str, path: &Path) -> KeyFile {
    let p = path.display();
    let t = text.trim_start();
    if t.starts_with("PuTTY-User-Key-File-") {
        return KeyFile::Refused(format!(
            "{p} is a PuTTY (.ppk) key; convert it to OpenSSH format with `puttygen {p} -O private-openssh-new -o {p}.openssh` (package putty-tools) and point private_key at the new file"
        ));
    }
    if t.starts_with("---- BEGIN SSH2 PUBLIC KEY") || t.starts_with("ssh-") || t.starts_with("ecdsa-") {
        return KeyFile::Refused(format!("{p} holds a public key; private_key must name the private half (the file without .pub)"));
    }
    if t.starts_with("---- BEGIN SSH2") {
        return KeyFile::Refused(format!(
            "{p} is an SSH2 (RFC 4716, ssh.com/Tectia) key; convert it with `ssh-keygen -i -f {p} > {p}.openssh && chmod 600 {p}.openssh` \
             (if it is passphrase-protected use `puttygen {p} -O private-openssh-new -o {p}.openssh`) and point private_key at the new file"
        ));
    }
    if t.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----") {
        return match openssh_cipher(t) {
            Some(c) => KeyFile::Usable { encrypted: c != "none" },
            None => KeyFile::Refused(format!(
                "{p} says it is an OpenSSH private key but its body does not decode; the file is damaged or truncated"
            )),
        };
    }
    if t.starts_with("-----BEGIN DSA PRIVATE KEY-----") {
        return KeyFile::Refused(format!(
            "{p} is a DSA key, which is obsolete and refused; create an ed25519 key with `ssh-keygen -t ed25519 -f NAME`"
        ));
    }
    if t.starts_with("-----BEGIN RSA PRIVATE KEY-----")
        || t.starts_with("-----BEGIN EC PRIVATE KEY-----")
        || t.starts_with("-----BEGIN PRIVATE KEY-----")
    {
        return KeyFile::Usable { encrypted: t.contains("Proc-Type: 4,ENCRYPTED") };
    }
    if t.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----") {
        return KeyFile::Usable { encrypted: true };
    }
    KeyFile::Refused(format!(
        "{p} is not a private key file we know (expected `-----BEGIN OPENSSH PRIVATE KEY-----`); create one with `ssh-keygen -t ed25519 -f NAME`"
    ))
}

/// The cipher name inside an openssh-key-v1 body ("none" when not encrypted).
fn openssh_cipher(text: &str) -> Option<String> {
    let body: String = text.lines().filter(|l| !l.starts_with("-----")).map(str::trim).collect();
    let raw = STANDARD.decode(body).ok()?;
    let rest = raw.strip_prefix(b"openssh-key-v1\0")?;
    let n = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?) as usize;
    Some(String::from_utf8_lossy(rest.get(4..4 + n)?).into_owned())
}

/// Why authentication failed, in words for the integration engineer (no secrets).
type Detail = String;

/// Why authentication did not succeed (`SftpSource::connect` adds user and host).
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("{0}")]
    Refused(Detail),
    /// The server stopped answering; worth a retry, unlike a refusal.
    #[error("the server stopped answering during authentication")]
    Timeout,
}

impl crate::exit::Classify for AuthError {
    fn exit(&self) -> crate::exit::Exit {
        crate::exit::Exit::Connection
    }
    fn retriable(&self) -> bool {
        matches!(self, AuthError::Timeout)
    }
}

const LIBSSH2_ERROR_TIMEOUT: i32 = -9;

fn is_timeout(e: &ssh2::Error) -> bool {
    e.code() == ErrorCode::Session(LIBSSH2_ERROR_TIMEOUT)
}

/// The secret from its variable or file (registered with the redactor there); the error
/// names the source, never the value.
fn read_secret(from: &SecretRef, what: &str) -> Result<String, Detail> {
    from.read(&format!("the {what}")).map_err(|e| e.to_string())
}

/// Authenticates `user` on a handshaken session, or says why not and what to do.
pub fn authenticate(sess: &Session, user: &str, auth: &SftpAuth) -> Result<(), AuthError> {
    // Asking for the methods also tries "none", which some servers accept.
    let offered = match sess.auth_methods(user) {
        Ok(m) => m.to_string(),
        Err(_) if sess.authenticated() => return Ok(()),
        Err(e) if is_timeout(&e) => return Err(AuthError::Timeout),
        Err(e) => {
            return Err(AuthError::Refused(format!(
                "the server did not say which methods it accepts ({})",
                crate::redact::redact(e.message())
            )));
        }
    };
    by_method(sess, user, auth, &offered).map_err(|d| {
        if ssh2::Error::last_session_error(sess).is_some_and(|e| is_timeout(&e)) { AuthError::Timeout } else { AuthError::Refused(d) }
    })
}

fn by_method(sess: &Session, user: &str, auth: &SftpAuth, offered: &str) -> Result<(), Detail> {
    let has = |m: &str| offered.split(',').any(|x| x == m);
    match auth {
        SftpAuth::Key { private_key, passphrase } => {
            if !has("publickey") {
                return Err(format!(
                    "the server does not accept keys for this user (it offers: {offered}); use auth = \"password\" or ask its administrator"
                ));
            }
            key(sess, user, private_key, passphrase.as_ref())
        }
        SftpAuth::Password { password } => {
            let pw = read_secret(password, "password")?;
            let password_env = password.label();
            if has("password") {
                sess.userauth_password(user, &pw).map_err(|e| refused(&e, &format!("wrong user name or password: check {password_env}")))
            } else if has("keyboard-interactive") {
                // What OpenSSH does too: many servers take passwords only this way (PAM).
                interactive(sess, user, &pw, &password_env)
            } else {
                Err(format!("the server does not accept passwords for this user (it offers: {offered}); use auth = \"key\""))
            }
        }
        SftpAuth::KeyboardInteractive { password } => {
            let pw = read_secret(password, "password")?;
            let password_env = password.label();
            if !has("keyboard-interactive") {
                return Err(format!(
                    "the server does not offer keyboard-interactive (it offers: {offered}); use auth = \"password\" or \"key\""
                ));
            }
            interactive(sess, user, &pw, &password_env)
        }
    }
}

fn refused(e: &ssh2::Error, fix: &str) -> Detail {
    format!("{fix} (server: {})", crate::redact::redact(e.message()))
}

fn key(sess: &Session, user: &str, path: &Path, passphrase_from: Option<&SecretRef>) -> Result<(), Detail> {
    let text = std::fs::read(path).map_err(|e| format!("cannot read private key {}: {e}", path.display()))?;
    let text = String::from_utf8_lossy(&text);
    let encrypted = match inspect_key(&text, path) {
        KeyFile::Refused(why) => return Err(why),
        KeyFile::Usable { encrypted } => encrypted,
    };
    let passphrase = match (encrypted, passphrase_from) {
        (true, None) => {
            return Err(format!(
                "private key {} is protected by a passphrase; add passphrase_env = \"NAME\" (or passphrase_file = \"PATH\") to the connector",
                path.display()
            ));
        }
        (true, Some(from)) => Some(read_secret(from, "key's passphrase")?),
        // A passphrase for a key that has none is harmless; ignore it.
        (false, _) => None,
    };
    match sess.userauth_pubkey_file(user, None, path, passphrase.as_deref()) {
        Ok(()) => Ok(()),
        Err(e) => {
            let code = match e.code() {
                ErrorCode::Session(c) => c,
                ErrorCode::SFTP(c) => c,
            };
            // libssh2 reports a wrong passphrase as a file or key-format problem.
            const FILE: i32 = -16;
            const KEYFILE_AUTH: i32 = -48;
            const UNRECOGNIZED: i32 = -18; // also AUTHENTICATION_FAILED
            const UNVERIFIED: i32 = -19;
            Err(match code {
                FILE | KEYFILE_AUTH if encrypted => format!(
                    "cannot decrypt private key {} — most likely the passphrase in {} is wrong (libssh2: {})",
                    path.display(),
                    passphrase_from.map(SecretRef::label).unwrap_or_else(|| "?".into()),
                    crate::redact::redact(e.message())
                ),
                FILE | KEYFILE_AUTH => format!(
                    "cannot load private key {} (libssh2: {}); regenerate it with `ssh-keygen -t ed25519`",
                    path.display(),
                    crate::redact::redact(e.message())
                ),
                UNRECOGNIZED | UNVERIFIED => format!(
                    "the server refused key {}: add its public half (`ssh-keygen -y -f {}`) to ~{user}/.ssh/authorized_keys on the server, and check the user name (server: {})",
                    path.display(),
                    path.display(),
                    crate::redact::redact(e.message())
                ),
                _ => format!("key {} was not accepted: {}", path.display(), crate::redact::redact(e.message())),
            })
        }
    }
}

struct Answer<'a> {
    user: &'a str,
    password: &'a str,
}

impl KeyboardInteractivePrompt for Answer<'_> {
    fn prompt<'b>(&mut self, _username: &str, _instructions: &str, prompts: &[Prompt<'b>]) -> Vec<String> {
        // Hidden prompts want the password; a visible one asks for the user name.
        prompts.iter().map(|p| if p.echo { self.user.to_string() } else { self.password.to_string() }).collect()
    }
}

fn interactive(sess: &Session, user: &str, password: &str, var: &str) -> Result<(), Detail> {
    let mut a = Answer { user, password };
    sess.userauth_keyboard_interactive(user, &mut a)
        .map_err(|e| refused(&e, &format!("wrong user name or password (keyboard-interactive): check {var}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_formats_are_told_apart() {
        let p = Path::new("k");
        assert!(
            matches!(inspect_key("PuTTY-User-Key-File-3: ssh-ed25519\n", p), KeyFile::Refused(m) if m.contains("puttygen k -O private-openssh-new"))
        );
        assert!(
            matches!(inspect_key("---- BEGIN SSH2 ENCRYPTED PRIVATE KEY ----\n", p), KeyFile::Refused(m) if m.contains("ssh-keygen -i -f k"))
        );
        assert!(matches!(inspect_key("ssh-ed25519 AAAA x\n", p), KeyFile::Refused(m) if m.contains("public key")));
        assert!(matches!(inspect_key("-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n", p), KeyFile::Usable { encrypted: true }));
        assert!(matches!(inspect_key("hello", p), KeyFile::Refused(_)));
    }
}
