//! Every secret value rostersync knows, and the one function that scrubs them out of text
//! that came from a server.
//!
//! Servers echo what they were sent: a SCIM server that puts the request's Authorization
//! header in its error detail, a token endpoint that repeats the client secret, an SFTP
//! banner. Whatever a server says reaches messages, logs, `--json`, the run history and the
//! state, so it passes through [`redact`] first. Secrets are registered where they are
//! read (the environment, the config), process-wide: a secret is a secret for every
//! connector and every thread.

use std::borrow::Cow;
use std::sync::RwLock;

/// What a secret is replaced with.
pub const MASK: &str = "***";

/// Shorter values are not registered: replacing every "ab" in a message would make it
/// unreadable and protects nothing a server could echo recognisably. The config checker
/// asks for real secrets; these are test-sized at most.
const MIN_LEN: usize = 4;

/// Longest first, so a secret that contains another is masked whole.
static SECRETS: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Remembers `secret` (and the forms a server may echo it in: percent-encoded, as in a
/// query or a form body) so that [`redact`] masks it from now on.
pub fn register(secret: &str) {
    let secret = secret.trim();
    if secret.chars().count() < MIN_LEN {
        return;
    }
    let encoded: String = url::form_urlencoded::byte_serialize(secret.as_bytes()).collect();
    let Ok(mut all) = SECRETS.write() else { return };
    for s in [secret.to_string(), encoded] {
        if !all.contains(&s) {
            all.push(s);
        }
    }
    all.sort_by_key(|s| std::cmp::Reverse(s.len()));
}

/// `text` with every registered secret replaced by [`MASK`]. Borrowed when there is none
/// in it (the usual case costs one scan per secret).
pub fn redact(text: &str) -> Cow<'_, str> {
    let Ok(all) = SECRETS.read() else { return Cow::Borrowed(text) };
    let mut out = Cow::Borrowed(text);
    for s in all.iter() {
        if out.contains(s.as_str()) {
            out = Cow::Owned(out.replace(s.as_str(), MASK));
        }
    }
    out
}

/// [`redact`] into an owned String (for `format!` results and error fields).
pub fn redacted(text: impl AsRef<str>) -> String {
    redact(text.as_ref()).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_secrets_are_masked_in_every_form() {
        register("s3cr3t/with+plus");
        register("s3cr3t");
        register("ab"); // too short: never registered
        assert_eq!(redact("token s3cr3t/with+plus and s3cr3t"), "token *** and ***");
        assert_eq!(redact("form: client_secret=s3cr3t%2Fwith%2Bplus"), "form: client_secret=***");
        assert_eq!(redact("abacus"), "abacus");
        assert!(matches!(redact("nothing here"), Cow::Borrowed(_)));
    }
}
