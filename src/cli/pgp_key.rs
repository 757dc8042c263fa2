//! `rostersync pgp-key CONNECTOR`: prints our OpenPGP public key (from the connector's
//! `decrypt_key`) for the customer to encrypt exports to. Like `keyscan`, it changes
//! nothing; the fingerprint goes to stderr, to be read to the customer out of band.

use crate::exit::Exit;

pub fn run(cli: &super::Cli, connector: &str) -> super::Result<i32> {
    let cfg = super::load_config(cli)?;
    // A connector whose mapping is not written yet still has its keys.
    let conn = match cfg.unmapped.get(connector) {
        Some(c) => c,
        None => cfg.connector(connector)?,
    };
    let Some(pgp) = &conn.exchange.pgp else {
        return Err(super::CodedError(
            Exit::Config,
            format!("[connectors.{connector}.file] has no decrypt_key; add our secret key's file there first (docs/exchange.md)"),
        )
        .into());
    };
    match pgp.public_key() {
        Ok(Some((fingerprint, armored))) => {
            if cli.json {
                println!("{}", serde_json::json!({"connector": connector, "fingerprint": fingerprint, "public_key": armored}));
            } else {
                print!("{armored}");
                if !armored.ends_with('\n') {
                    println!();
                }
            }
            eprintln!(
                "Send this public key to the customer of {connector}; they encrypt exports to it. Confirm its fingerprint with them by another channel: {fingerprint}"
            );
            Ok(0)
        }
        Ok(None) => Err(super::CodedError(
            Exit::Config,
            format!("[connectors.{connector}.file] has verify_key but no decrypt_key: there is no key of ours to send"),
        )
        .into()),
        Err(e) => Err(e.into()),
    }
}
