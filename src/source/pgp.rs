//! OpenPGP exports (`[connectors.NAME.file]` `decrypt_key`, `verify_key`): the customer
//! encrypts the export to our key and signs it with theirs; we decrypt it as it downloads
//! and check the signature at its end. rPGP (the `pgp` crate): pure Rust on RustCrypto, no
//! nettle or OpenSSL, and a streaming reader (docs/exchange.md says why this crate).
//!
//! Nothing read from an OpenPGP file is used before it is authenticated: the plaintext goes
//! to a download file of its own (`crate::spool`) that readers see the end of only once the
//! integrity check and the signature passed (`sync::fetch`), so a parse of altered bytes is
//! thrown away, never planned.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use pgp::composed::{Deserializable, Message, SignedPublicKey, SignedSecretKey, TheRing};
use pgp::types::{KeyDetails, Password, Seipdv1ReadMode};

use crate::exit::{Classify, Exit};
use crate::secret::{SecretError, SecretRef};

/// Names that say a file is OpenPGP (`.gpg`, `.pgp`, `.asc`).
pub const EXTENSIONS: [&str; 3] = [".gpg", ".pgp", ".asc"];

/// Chunk of plaintext handed on at a time.
const CHUNK: usize = 1 << 20;

/// How a connector's OpenPGP exports are read (the `[file]` keys).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgpSettings {
    /// Our secret key (armored or binary), to decrypt with.
    pub decrypt_key: Option<PathBuf>,
    /// Its passphrase, when it has one.
    pub passphrase: Option<SecretRef>,
    /// The customer's public key, to check the signature with.
    pub verify_key: Option<PathBuf>,
    /// Refuse a file that carries no signature (default true with `verify_key`).
    pub require_signature: bool,
}

/// Whether a file's name says it is OpenPGP.
pub fn is_pgp_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    EXTENSIONS.iter().any(|e| lower.ends_with(e))
}

/// The name without its OpenPGP extension ("employees.csv.gpg" → "employees.csv").
pub fn inner_name(name: &str) -> &str {
    let lower = name.to_ascii_lowercase();
    match EXTENSIONS.iter().find(|e| lower.ends_with(*e)) {
        Some(e) => &name[..name.len() - e.len()],
        None => name,
    }
}

/// Why an OpenPGP key or file was refused. A key problem is the configuration's (exit 2);
/// a file that does not decrypt or verify is the file's (exit 4), and says which.
#[derive(Debug, thiserror::Error)]
pub enum PgpError {
    #[error("cannot read {what} {}: {source}; check the path and that the service's user may read it", path.display())]
    KeyUnreadable { what: &'static str, path: PathBuf, source: io::Error },
    #[error("{what} {} is not an OpenPGP {expected} key ({detail}); {fix}", path.display())]
    KeyInvalid { what: &'static str, path: PathBuf, expected: &'static str, detail: String, fix: &'static str },
    #[error("{what} {} (fingerprint {fingerprint}) expired on {date}; {fix}", path.display())]
    KeyExpired { what: &'static str, path: PathBuf, fingerprint: String, date: String, fix: &'static str },
    #[error("decrypt_key {} (fingerprint {fingerprint}) has no encryption subkey that is still valid; make one with `gpg --quick-add-key {fingerprint} cv25519 encr` and send the customer the new public key (`rostersync pgp-key NAME`)", path.display())]
    NoEncryptionKey { path: PathBuf, fingerprint: String },
    #[error("verify_key {} (fingerprint {fingerprint}) has no key that may sign; ask the customer for the public key they sign exports with", path.display())]
    NoSigningKey { path: PathBuf, fingerprint: String },
    #[error("the passphrase of decrypt_key {}: {source}", path.display())]
    Passphrase { path: PathBuf, source: SecretError },
    #[error("the passphrase from {source_name} does not unlock decrypt_key {}; check passphrase_env / passphrase_file", path.display())]
    WrongPassphrase { path: PathBuf, source_name: String },
    #[error("{file} is an OpenPGP file but [connectors.{connector}.file] has no decrypt_key or verify_key; add them (docs/exchange.md)")]
    NotConfigured { file: String, connector: String },
    #[error(
        "{file} is not an OpenPGP message ({detail}); the connector expects encrypted exports: ask the customer to encrypt it to the key `rostersync pgp-key` prints"
    )]
    NotOpenPgp { file: String, detail: String },
    #[error(
        "{file} is not encrypted (decrypt_key is set, so every export must be); ask the customer to encrypt it to the key `rostersync pgp-key` prints"
    )]
    NotEncrypted { file: String },
    #[error(
        "{file} does not decrypt: it was encrypted to {recipients}, not to our key {ours}; ask the customer to encrypt to the key `rostersync pgp-key` prints"
    )]
    NotForUs { file: String, recipients: String, ours: String },
    #[error("{file} does not decrypt: {detail}; the file is damaged, or was not encrypted to our key")]
    Undecryptable { file: String, detail: String },
    #[error("{file} was altered after it was encrypted or signed: {detail}; nothing was synced from it, ask the customer to send it again")]
    Altered { file: String, detail: String },
    #[error(
        "{file} is not signed, and verify_key requires a signature from {expected}; ask the customer to sign the export (or set require_signature = false)"
    )]
    Unsigned { file: String, expected: String },
    #[error("{file} is signed by another key ({signers}), not by the customer's key {expected} (verify_key); nothing was synced from it")]
    WrongSigner { file: String, signers: String, expected: String },
    #[error("{file} decrypts to more than max_size ({max} bytes); raise [file] max_size if this is expected")]
    TooLarge { file: String, max: u64 },
    #[error("cannot write the decrypted {file}: {source}")]
    Write { file: String, source: io::Error },
}

impl PgpError {
    /// The `[file]` key a key problem is about.
    pub fn key(&self) -> &'static str {
        match self {
            PgpError::KeyUnreadable { what, .. } | PgpError::KeyInvalid { what, .. } | PgpError::KeyExpired { what, .. } => what,
            PgpError::NoSigningKey { .. } => "verify_key",
            PgpError::Passphrase { .. } | PgpError::WrongPassphrase { .. } => "passphrase_env",
            _ => "decrypt_key",
        }
    }
}

impl Classify for PgpError {
    fn exit(&self) -> Exit {
        match self {
            PgpError::KeyUnreadable { .. }
            | PgpError::KeyInvalid { .. }
            | PgpError::KeyExpired { .. }
            | PgpError::NoEncryptionKey { .. }
            | PgpError::NoSigningKey { .. }
            | PgpError::Passphrase { .. }
            | PgpError::WrongPassphrase { .. }
            | PgpError::NotConfigured { .. } => Exit::Config,
            PgpError::Write { .. } => Exit::Other,
            _ => Exit::Data,
        }
    }
}

/// The keys read for one run.
pub struct Keys {
    decrypt: Option<(SignedSecretKey, Password)>,
    verify: Option<SignedPublicKey>,
    require_signature: bool,
}

impl PgpSettings {
    /// Reads the keys (and the passphrase); the same checks as `check` makes.
    pub fn load(&self) -> Result<Keys, PgpError> {
        let decrypt = match &self.decrypt_key {
            Some(path) => {
                let key = read_secret(path)?;
                let pw = self.password(path)?;
                unlock_check(&key, &pw, path, self.passphrase.as_ref())?;
                Some((key, pw))
            }
            None => None,
        };
        let verify = self.verify_key.as_deref().map(read_public).transpose()?;
        Ok(Keys { decrypt, verify, require_signature: self.require_signature })
    }

    /// Every problem of the key files, for `rostersync check`: readable, of the right type,
    /// not expired, an encryption subkey present, the passphrase unlocking it.
    pub fn check(&self) -> Vec<PgpError> {
        let mut out = Vec::new();
        if let Some(path) = &self.decrypt_key {
            match read_secret(path) {
                Ok(key) => {
                    let pw = self.password(path);
                    match pw {
                        Ok(pw) => out.extend(unlock_check(&key, &pw, path, self.passphrase.as_ref()).err()),
                        Err(e) => out.push(e),
                    }
                }
                Err(e) => out.push(e),
            }
        }
        if let Some(path) = &self.verify_key
            && let Err(e) = read_public(path)
        {
            out.push(e);
        }
        out
    }

    fn password(&self, path: &Path) -> Result<Password, PgpError> {
        match &self.passphrase {
            None => Ok(Password::empty()),
            Some(s) => s
                .read("the passphrase of decrypt_key")
                .map(Password::from)
                .map_err(|source| PgpError::Passphrase { path: path.to_path_buf(), source }),
        }
    }

    /// Our public key, armored, to send to the customer (`rostersync pgp-key`).
    pub fn public_key(&self) -> Result<Option<(String, String)>, PgpError> {
        let Some(path) = &self.decrypt_key else { return Ok(None) };
        let key = read_secret(path)?;
        let public = key.to_public_key();
        let armored = public.to_armored_string(Default::default()).map_err(|e| PgpError::KeyInvalid {
            what: "decrypt_key",
            path: path.clone(),
            expected: "secret",
            detail: e.to_string(),
            fix: SECRET_FIX,
        })?;
        Ok(Some((format!("{:X}", key.fingerprint()), armored)))
    }
}

const SECRET_FIX: &str = "export ours with `gpg --armor --export-secret-keys FINGERPRINT > secrets/NAME.key.asc`";
const PUBLIC_FIX: &str = "ask the customer for their public key (`gpg --armor --export FINGERPRINT`)";

fn read_key_file(what: &'static str, path: &Path) -> Result<Vec<u8>, PgpError> {
    std::fs::read(path).map_err(|source| PgpError::KeyUnreadable { what, path: path.to_path_buf(), source })
}

fn read_secret(path: &Path) -> Result<SignedSecretKey, PgpError> {
    let bytes = read_key_file("decrypt_key", path)?;
    let invalid = |detail: String| PgpError::KeyInvalid {
        what: "decrypt_key",
        path: path.to_path_buf(),
        expected: "secret",
        detail,
        fix: SECRET_FIX,
    };
    let key = match SignedSecretKey::from_reader_single(&bytes[..]) {
        Ok((k, _)) => k,
        Err(e) if SignedPublicKey::from_reader_single(&bytes[..]).is_ok() => {
            return Err(invalid(format!("it holds a public key ({e}); decrypt_key is our secret key")));
        }
        Err(e) => return Err(invalid(e.to_string())),
    };
    key.verify_bindings().map_err(|e| invalid(format!("its self-signatures do not verify: {e}")))?;
    let fingerprint = format!("{:X}", key.fingerprint());
    if let Some(date) = expired(&key.details, key.primary_key.created_at()) {
        return Err(PgpError::KeyExpired {
            what: "decrypt_key",
            path: path.to_path_buf(),
            fingerprint,
            date,
            fix: "extend it with `gpg --quick-set-expire FINGERPRINT 2y '*'` and export it again",
        });
    }
    let encrypts = key.secret_subkeys.iter().any(|s| {
        s.signatures.iter().any(|sig| {
            let f = sig.key_flags();
            (f.encrypt_comms() || f.encrypt_storage()) && !lapsed(sig.key_expiration_time(), s.key.created_at())
        })
    });
    if !encrypts {
        return Err(PgpError::NoEncryptionKey { path: path.to_path_buf(), fingerprint });
    }
    Ok(key)
}

fn read_public(path: &Path) -> Result<SignedPublicKey, PgpError> {
    let bytes = read_key_file("verify_key", path)?;
    let invalid =
        |detail: String| PgpError::KeyInvalid { what: "verify_key", path: path.to_path_buf(), expected: "public", detail, fix: PUBLIC_FIX };
    let key = match SignedPublicKey::from_reader_single(&bytes[..]) {
        Ok((k, _)) => k,
        Err(e) if SignedSecretKey::from_reader_single(&bytes[..]).is_ok() => {
            return Err(invalid(format!(
                "it holds a secret key ({e}); verify_key is the customer's public key, and their secret key should never leave them"
            )));
        }
        Err(e) => return Err(invalid(e.to_string())),
    };
    key.verify_bindings().map_err(|e| invalid(format!("its self-signatures do not verify: {e}")))?;
    let fingerprint = format!("{:X}", key.fingerprint());
    if let Some(date) = expired(&key.details, key.primary_key.created_at()) {
        return Err(PgpError::KeyExpired {
            what: "verify_key",
            path: path.to_path_buf(),
            fingerprint,
            date,
            fix: "ask the customer for their current public key",
        });
    }
    let primary_signs = key.details.users.iter().flat_map(|u| &u.signatures).any(|s| s.key_flags().sign());
    let subkey_signs = key.public_subkeys.iter().any(|s| s.signatures.iter().any(|sig| sig.key_flags().sign()));
    if !primary_signs && !subkey_signs {
        return Err(PgpError::NoSigningKey { path: path.to_path_buf(), fingerprint });
    }
    Ok(key)
}

/// The date a key expired on, from its self-signatures (None: it does not expire, or not yet).
fn expired(details: &pgp::composed::SignedKeyDetails, created: pgp::types::Timestamp) -> Option<String> {
    let sigs = details.users.iter().flat_map(|u| &u.signatures).chain(&details.direct_signatures);
    let expiry = sigs.filter_map(|s| s.key_expiration_time()).map(std::time::Duration::from).max()?;
    if expiry.is_zero() {
        return None;
    }
    let at = std::time::SystemTime::from(created) + expiry;
    (at < std::time::SystemTime::now()).then(|| chrono::DateTime::<chrono::Utc>::from(at).format("%Y-%m-%d").to_string())
}

fn lapsed(expiry: Option<pgp::types::Duration>, created: pgp::types::Timestamp) -> bool {
    match expiry.map(std::time::Duration::from) {
        Some(d) if !d.is_zero() => std::time::SystemTime::from(created) + d < std::time::SystemTime::now(),
        _ => false,
    }
}

/// A wrong passphrase is found at `check` and at the start of a run, not in the middle of
/// a decryption (where rPGP would say only that no key fits).
fn unlock_check(key: &SignedSecretKey, pw: &Password, path: &Path, source: Option<&SecretRef>) -> Result<(), PgpError> {
    for sub in &key.secret_subkeys {
        if sub.key.unlock(pw, |_, _| Ok(())).is_err() {
            return Err(PgpError::WrongPassphrase {
                path: path.to_path_buf(),
                source_name: source.map_or_else(|| "no passphrase (none is configured)".to_string(), SecretRef::describe),
            });
        }
    }
    Ok(())
}

/// What the decryption found out, for the report and the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    pub encrypted: bool,
    /// The fingerprint of the key whose signature verified.
    pub signer: Option<String>,
    pub bytes: u64,
}

/// rPGP wants its source `Debug`; the download reader is not.
struct Source<R>(R);

impl<R> std::fmt::Debug for Source<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("export")
    }
}

impl<R: Read> Read for Source<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

/// Decrypts (and decompresses) `input` into `out` as it arrives, then checks the signature.
/// `out` holds unauthenticated bytes until this returns Ok: its reader must not see their end
/// before (`sync::fetch` completes the plaintext spool only then).
pub fn decrypt<R: Read + Send, W: Write>(keys: &Keys, file: &str, input: R, mut out: W, max_size: u64) -> Result<Opened, PgpError> {
    let src = BufReader::with_capacity(CHUNK, Source(input));
    let (msg, _) = Message::from_reader(src).map_err(|e| PgpError::NotOpenPgp { file: file.into(), detail: e.to_string() })?;
    let (mut msg, encrypted) = open(msg, keys, file)?;
    let mut bytes = 0u64;
    loop {
        let buf = match msg.fill_buf() {
            Ok(b) => b,
            Err(e) => return Err(PgpError::Altered { file: file.into(), detail: e.to_string() }),
        };
        if buf.is_empty() {
            break;
        }
        let n = buf.len();
        bytes += n as u64;
        if bytes > max_size {
            return Err(PgpError::TooLarge { file: file.into(), max: max_size });
        }
        out.write_all(buf).map_err(|source| PgpError::Write { file: file.into(), source })?;
        msg.consume(n);
    }
    out.flush().map_err(|source| PgpError::Write { file: file.into(), source })?;
    let signer = check_signature(&msg, keys, file)?;
    Ok(Opened { encrypted, signer, bytes })
}

/// Unwraps the layers down to the literal data: decryption with our key (required when
/// decrypt_key is set), then decompression; a signed message stays signed.
fn open<'a>(mut msg: Message<'a>, keys: &Keys, file: &str) -> Result<(Message<'a>, bool), PgpError> {
    let mut encrypted = false;
    // Bounded: a message nests encryption and compression a few times at most.
    for _ in 0..8 {
        msg = match msg {
            Message::Encrypted { .. } if encrypted => {
                return Err(PgpError::Undecryptable { file: file.into(), detail: "it is encrypted twice".into() });
            }
            Message::Encrypted { ref esk, .. } => {
                let Some((key, pw)) = &keys.decrypt else {
                    return Err(PgpError::Undecryptable {
                        file: file.into(),
                        detail: "it is encrypted and no decrypt_key is configured".into(),
                    });
                };
                let recipients = recipients(esk);
                // Streaming: the integrity check (MDC) comes at the end; until it passed, the
                // plaintext's reader does not see the end of it (see the module's comment).
                let ring = TheRing {
                    secret_keys: vec![key],
                    key_passwords: vec![pw],
                    decrypt_options: pgp::composed::DecryptionOptions::new()
                        .enable_gnupg_aead()
                        .set_seipdv1_read_mode(Seipdv1ReadMode::Streaming),
                    ..Default::default()
                };
                encrypted = true;
                match msg.decrypt_the_ring(ring, true) {
                    Ok((m, _)) => m,
                    Err(pgp::errors::Error::MissingKey) => {
                        return Err(PgpError::NotForUs { file: file.into(), recipients, ours: our_ids(key) });
                    }
                    // Our key opened the session key: what fails after is the data itself
                    // (its integrity check, for a message small enough to be read at once).
                    Err(e) => return Err(PgpError::Altered { file: file.into(), detail: e.to_string() }),
                }
            }
            Message::Compressed { .. } => msg.decompress().map_err(|e| PgpError::Altered { file: file.into(), detail: e.to_string() })?,
            Message::Signed { .. } | Message::Literal { .. } => {
                let m = msg.decompress().map_err(|e| PgpError::Altered { file: file.into(), detail: e.to_string() })?;
                if keys.decrypt.is_some() && !encrypted {
                    return Err(PgpError::NotEncrypted { file: file.into() });
                }
                return Ok((m, encrypted));
            }
        };
    }
    Err(PgpError::Undecryptable { file: file.into(), detail: "its layers nest too deeply".into() })
}

fn recipients(esk: &[pgp::composed::Esk]) -> String {
    let ids: Vec<String> = esk
        .iter()
        .map(|e| match e {
            pgp::composed::Esk::PublicKeyEncryptedSessionKey(p) => match p.id() {
                Ok(id) => format!("key {}", hex_id(id)),
                Err(_) => "an anonymous key".to_string(),
            },
            pgp::composed::Esk::SymKeyEncryptedSessionKey(_) => "a password".to_string(),
        })
        .collect();
    if ids.is_empty() { "nobody".into() } else { ids.join(", ") }
}

fn hex_id(id: &pgp::types::KeyId) -> String {
    hex::encode_upper(id.as_ref())
}

fn our_ids(key: &SignedSecretKey) -> String {
    let subs: Vec<String> = key.secret_subkeys.iter().map(|s| hex_id(&s.key.legacy_key_id())).collect();
    format!("{:X} (subkeys {})", key.fingerprint(), subs.join(", "))
}

/// The fingerprint of the customer key whose signature verified; an error naming which
/// fault it is otherwise (unsigned, another signer, or altered content).
fn check_signature(msg: &Message<'_>, keys: &Keys, file: &str) -> Result<Option<String>, PgpError> {
    let Some(verify) = &keys.verify else { return Ok(None) };
    let expected = format!("{:X}", verify.fingerprint());
    let Message::Signed { reader, .. } = msg else {
        return if keys.require_signature { Err(PgpError::Unsigned { file: file.into(), expected }) } else { Ok(None) };
    };
    let mut candidates: Vec<(&dyn pgp::types::VerifyingKey, pgp::types::KeyId)> =
        vec![(&verify.primary_key, verify.primary_key.legacy_key_id())];
    candidates.extend(verify.public_subkeys.iter().map(|s| (&s.key as &dyn pgp::types::VerifyingKey, s.key.legacy_key_id())));
    let mut signers = Vec::new();
    let mut ours_failed = false;
    for i in 0..reader.num_signatures() {
        for (key, _) in &candidates {
            if msg.verify_nested_explicit(i, *key).is_ok() {
                return Ok(Some(expected));
            }
        }
        if let Some(sig) = reader.signature(i) {
            let ids: Vec<String> = sig.issuer_key_id().iter().map(|id| hex_id(id)).collect();
            ours_failed |= sig.issuer_key_id().iter().any(|id| candidates.iter().any(|(_, k)| k == *id))
                || sig.issuer_fingerprint().iter().any(|fp| format!("{fp:X}") == expected);
            signers.extend(sig.issuer_fingerprint().iter().map(|fp| format!("{fp:X}")).chain(ids));
        }
    }
    if ours_failed {
        return Err(PgpError::Altered {
            file: file.into(),
            detail: "its signature by the customer's key does not match its content".into(),
        });
    }
    signers.dedup();
    let signers = if signers.is_empty() { "a key that is not named".to_string() } else { signers.join(", ") };
    Err(PgpError::WrongSigner { file: file.into(), signers, expected })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_are_openpgp() {
        assert!(is_pgp_name("employees.csv.gpg"));
        assert!(is_pgp_name("EMPLOYEES.CSV.PGP"));
        assert!(is_pgp_name("e.csv.asc"));
        assert!(!is_pgp_name("e.csv"));
        assert_eq!(inner_name("employees.csv.GPG"), "employees.csv");
        assert_eq!(inner_name("employees.csv"), "employees.csv");
    }

    #[test]
    fn a_plain_file_is_not_an_openpgp_message() {
        let keys = Keys { decrypt: None, verify: None, require_signature: false };
        let e = decrypt(&keys, "e.csv.gpg", &b"id,name\n1,Ann\n"[..], Vec::new(), 1 << 20).unwrap_err();
        assert!(matches!(e, PgpError::NotOpenPgp { .. }), "{e}");
        assert_eq!(e.exit(), Exit::Data);
    }
}
