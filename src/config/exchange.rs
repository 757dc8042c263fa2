//! The exchange with the customer (`crate::exchange`): the OpenPGP keys of
//! `[connectors.NAME.file]`, read and checked here so that
//! `mod.rs` only hooks them in. Every key's `///` comment is its documentation (CONFIG.md).

use std::path::Path;

use super::checker::Checker;
use super::raw::RawFile;
use super::{resolve, secret};
use crate::source::pgp::PgpSettings;

/// The OpenPGP settings of a `[file]` table, None when it names no key (or a problem says
/// what is wrong). Whether the key files read is the environment's business (`check`).
pub(super) fn check_pgp(ck: &mut Checker, dir: &Path, key: &str, f: &RawFile) -> Option<PgpSettings> {
    let table = format!("{key}.file");
    let k = |x: &str| format!("{table}.{x}");
    let passphrase = secret(ck, dir, &table, "passphrase", f.passphrase_env.as_deref(), f.passphrase_file.as_deref());
    let some_key = f.decrypt_key.is_some() || f.verify_key.is_some();
    if !some_key {
        if f.passphrase_env.is_some() || f.passphrase_file.is_some() {
            ck.problem(&k("passphrase_env"), "a passphrase is for decrypt_key, which is not set; add decrypt_key or remove the passphrase");
        }
        if f.require_signature.is_some() {
            ck.problem(&k("require_signature"), "require_signature needs verify_key (the customer's public key); add it or remove require_signature");
        }
        return None;
    }
    if f.decrypt_key.is_none() && (f.passphrase_env.is_some() || f.passphrase_file.is_some()) {
        ck.problem(&k("passphrase_env"), "a passphrase is for decrypt_key, which is not set; add decrypt_key or remove the passphrase");
    }
    if f.verify_key.is_none() && f.require_signature == Some(true) {
        ck.problem(&k("require_signature"), "require_signature needs verify_key (the customer's public key) to check the signature with");
    }
    for (name, v) in [("decrypt_key", &f.decrypt_key), ("verify_key", &f.verify_key)] {
        if v.as_deref().is_some_and(|p| p.trim().is_empty()) {
            ck.problem(&k(name), "expected the path of a key file, e.g. \"secrets/acme.key.asc\"");
        }
    }
    Some(PgpSettings {
        decrypt_key: f.decrypt_key.as_deref().map(|p| resolve(dir, p)),
        passphrase: passphrase.flatten(),
        verify_key: f.verify_key.as_deref().map(|p| resolve(dir, p)),
        require_signature: f.require_signature.unwrap_or(f.verify_key.is_some()),
    })
}
