//! Every secret value rostersync knows, and the one function that scrubs them out of text
//! that came from a server.
//!
//! Servers echo what they were sent: a SCIM server that puts the request's Authorization
//! header in its error detail, a token endpoint that repeats the client secret, an SFTP
//! banner. Whatever a server says reaches messages, logs, `--json`, the run history and the
//! state, so it passes through [`redact`] first. Secrets are registered where they are
//! read (the environment, the config), process-wide: a secret is a secret for every
//! connector and every thread.
//!
//! A server rarely echoes a secret as it was given: it percent-encodes it (in upper or
//! lower case hex), base64-encodes the header it came in (`Bearer TOKEN`), or cuts it
//! short ("token abcdefgh… is invalid"). So each secret is registered with those forms, and
//! a form matches from its first [`PREFIX_CHARS`] characters on: a truncated echo is
//! masked as far as it goes.

use std::borrow::Cow;
use std::sync::RwLock;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// What a secret is replaced with.
pub const MASK: &str = "***";

/// Shorter values are not registered: replacing every "ab" in a message would make it
/// unreadable and protects nothing a server could echo recognisably. The config checker
/// asks for real secrets; these are test-sized at most.
const MIN_LEN: usize = 4;

/// A secret's first this many characters are masked wherever they appear, with as much of
/// the rest as follows them: shorter, a prefix is too likely to be ordinary text.
pub const PREFIX_CHARS: usize = 8;

/// What RFC 3986 leaves unescaped; what a URL or a form body escapes is everything else.
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// One form a secret may be echoed in.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Form {
    /// The form's text; lower case when `fold` (compared against lower-cased text).
    text: String,
    /// How many bytes of `text` must match before a match counts: the whole form, or its
    /// first [`PREFIX_CHARS`] characters for forms a server may cut short.
    head: usize,
    /// Compared ASCII-case-insensitively: percent escapes come in either case.
    fold: bool,
}

/// Longest first, so a secret that contains another is masked whole.
static FORMS: RwLock<Vec<Form>> = RwLock::new(Vec::new());

/// Remembers `secret` and the forms a server may echo it in (percent-encoded in either
/// case, base64 of it and of `Bearer SECRET`, any prefix of [`PREFIX_CHARS`] characters or
/// more) so that [`redact`] masks them from now on.
pub fn register(secret: &str) {
    let secret = secret.trim();
    if secret.chars().count() >= MIN_LEN {
        add(forms_of(secret));
    }
}

/// Remembers `text` as it is, matched whole only: for a value that is a credential as a
/// whole but shares its start with ordinary text (a webhook URL begins with "https://").
pub fn register_exact(text: &str) {
    let text = text.trim();
    if text.chars().count() >= MIN_LEN {
        add(vec![Form { text: text.to_string(), head: text.len(), fold: false }]);
    }
}

fn add(forms: Vec<Form>) {
    let Ok(mut all) = FORMS.write() else { return };
    for f in forms {
        if !all.iter().any(|g| g.text == f.text && g.fold == f.fold) {
            all.push(f);
        }
    }
    all.sort_by_key(|f| std::cmp::Reverse(f.text.len()));
}

/// Every form of `secret` to look for. Pure: the registry is [`add`]'s.
fn forms_of(secret: &str) -> Vec<Form> {
    // The byte length of the first PREFIX_CHARS characters of `s` (encoded by `enc`).
    let head = |enc: &dyn Fn(&str) -> String| {
        let cut = secret.char_indices().nth(PREFIX_CHARS).map_or(secret.len(), |(i, _)| i);
        enc(&secret[..cut]).len()
    };
    let mut forms = vec![Form { text: secret.to_string(), head: head(&|s| s.to_string()), fold: false }];
    // Percent-encoded as a URL (space as %20, only unreserved kept, or every symbol
    // escaped) and as a form body (space as '+'): escapes in either case.
    let url_enc = |s: &str| utf8_percent_encode(s, UNRESERVED).to_string();
    let all_enc = |s: &str| utf8_percent_encode(s, NON_ALPHANUMERIC).to_string();
    let form_enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    for enc in [&url_enc as &dyn Fn(&str) -> String, &all_enc, &form_enc] {
        let text = enc(secret);
        if text != secret {
            forms.push(Form { text: text.to_ascii_lowercase(), head: head(enc), fold: true });
        }
    }
    // Base64 of the secret and of the Authorization header carrying it, in both alphabets,
    // with and without padding: matched whole (a base64 prefix is mostly the "Bearer ").
    for plain in [secret.to_string(), format!("Bearer {secret}")] {
        for engine in [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD] {
            let text = engine.encode(&plain);
            forms.push(Form { head: text.len(), text, fold: false });
        }
    }
    forms
}

/// `text` with every registered secret replaced by [`MASK`]. Borrowed when there is none
/// in it (the usual case costs one scan per form).
pub fn redact(text: &str) -> Cow<'_, str> {
    let Ok(all) = FORMS.read() else { return Cow::Borrowed(text) };
    // Every form's matches in the original text, then masked once: a secret's forms share
    // starts (its raw text and its percent-encoding), and the longest match must win.
    let mut spans: Vec<(usize, usize)> = all.iter().flat_map(|f| matches(text, f)).collect();
    if spans.is_empty() {
        return Cow::Borrowed(text);
    }
    spans.sort_unstable();
    let (mut out, mut last) = (String::with_capacity(text.len()), 0);
    for (start, end) in spans {
        if end <= last {
            continue; // inside a span already masked
        }
        if start >= last {
            out.push_str(&text[last..start]);
            out.push_str(MASK);
        }
        last = end;
    }
    out.push_str(&text[last..]);
    Cow::Owned(out)
}

/// Where `form` occurs in `text`: its head and as much of the rest as follows, as byte
/// ranges on character boundaries.
fn matches(text: &str, form: &Form) -> Vec<(usize, usize)> {
    // ASCII lower-casing keeps every byte offset, so positions found in `hay` cut `text`.
    let hay: Cow<str> = if form.fold { Cow::Owned(text.to_ascii_lowercase()) } else { Cow::Borrowed(text) };
    let (h, p) = (hay.as_bytes(), form.text.as_bytes());
    let head = &form.text[..form.head];
    let (mut found, mut from) = (Vec::new(), 0);
    while let Some(at) = hay[from..].find(head) {
        let start = from + at;
        let mut end = start + form.head;
        while end < h.len() && end - start < p.len() && h[end] == p[end - start] {
            end += 1;
        }
        // A match may stop inside a character the secret and the text both start.
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        found.push((start, end));
        from = end;
    }
    found
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

    // Each test registers its own secrets: the registry is process-wide and tests share it.
    const TOKEN: &str = "tok/en+with space&ünï-42";

    fn registered() -> &'static str {
        register(TOKEN);
        TOKEN
    }

    #[test]
    fn percent_encoding_in_either_case_is_masked() {
        let t = registered();
        let upper = utf8_percent_encode(t, UNRESERVED).to_string();
        let lower = {
            // Only the escapes lower-cased: the secret's own letters stay as they are.
            let mut s = String::new();
            let mut rest = upper.as_str();
            while let Some(i) = rest.find('%') {
                s.push_str(&rest[..i]);
                s.push_str(&rest[i..i + 3].to_ascii_lowercase());
                rest = &rest[i + 3..];
            }
            s + rest
        };
        assert_ne!(upper, lower);
        let everything = utf8_percent_encode(t, NON_ALPHANUMERIC).to_string().to_ascii_lowercase();
        let form: String = url::form_urlencoded::byte_serialize(t.as_bytes()).collect();
        for enc in [&upper, &lower, &everything, &form] {
            assert_eq!(redact(&format!("q=({enc})")), "q=(***)", "{enc}");
        }
    }

    #[test]
    fn base64_of_the_secret_and_of_its_bearer_header_is_masked_in_both_alphabets() {
        let t = registered();
        for plain in [t.to_string(), format!("Bearer {t}")] {
            for engine in [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD] {
                let b = engine.encode(&plain);
                assert_eq!(redact(&format!("echo <{b}>")), "echo <***>", "{b}");
            }
        }
        // A secret whose base64 differs between the alphabets ('+' and '/' against '-' and '_').
        register("<<??>>-b64-secret");
        let (std, safe) = (STANDARD.encode("<<??>>-b64-secret"), URL_SAFE_NO_PAD.encode("<<??>>-b64-secret"));
        assert_ne!(std.trim_end_matches('='), safe);
        assert_eq!(redact(&format!("{std} {safe}")), "*** ***");
    }

    #[test]
    fn any_prefix_of_eight_characters_or_more_is_masked() {
        register("prefixed-secret-0123456789");
        assert_eq!(redact("token prefixed-secret-01… is invalid"), "token ***… is invalid");
        assert_eq!(redact("token prefixe is not"), "token prefixe is not", "7 characters are not enough");
        assert_eq!(redact("prefixed-xx"), "***xx", "the prefix is masked, what is not the secret is kept");
        // Truncated percent-encoding (escapes in lower case) too.
        let t = registered();
        let cut: String = utf8_percent_encode(&t.chars().take(12).collect::<String>(), UNRESERVED).to_string().to_ascii_lowercase();
        assert_eq!(redact(&format!("[{cut}]")), "[***]", "{cut}");
    }

    #[test]
    fn exact_registrations_do_not_mask_their_prefixes() {
        register_exact("https://hooks.example/T000/B000/secret-part");
        assert_eq!(redact("at https://hooks.example/T000/B000/secret-part"), "at ***");
        assert_eq!(redact("at https://platform.example/scim"), "at https://platform.example/scim");
    }

    #[test]
    fn a_match_stopping_inside_a_character_ends_on_a_boundary() {
        register("multibyte-é-secret");
        // The text's "è" shares its first UTF-8 byte with the secret's "é".
        assert_eq!(redact("multibyte-è"), "***è");
    }
}
