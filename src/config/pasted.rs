//! Passwords pasted into values that are not secrets: `sftp://user:PW@host` or `user:PW@host`
//! as an SFTP `host`, `user:PW` as its `username`, a state URL with a password in it
//! (`postgres://u:PW@h/db`, `postgresql+psycopg://u:PW@h/db`, `…?password=PW`,
//! `jdbc:postgresql://h/db?user=u&password=PW`). Such a value is refused, and never
//! echoed: the message says where the password is, not what it is. The password found is
//! registered with the redactor, so that a message built elsewhere from the value masks it.
//!
//! Pure: reading a value, never the environment.

/// Where in a value the password was found: what the message names instead of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Place {
    /// `user:PASSWORD@host`.
    Userinfo,
    /// `user:PASSWORD` (a username holding the password after a colon).
    AfterColon,
    /// A `KEY=PASSWORD` parameter (query or JDBC `;` properties); the key as written.
    Parameter(String),
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Place::Userinfo => f.write_str("as user:password@ before the host"),
            Place::AfterColon => f.write_str("after the colon in user:password"),
            Place::Parameter(k) => write!(f, "as the {k}= parameter"),
        }
    }
}

/// Parameter names that carry a password in the URL forms drivers accept.
const PASSWORD_KEYS: [&str; 4] = ["password", "passwd", "pwd", "pass"];

/// The password in a URL-like value (a URL, `user:pw@host`, a JDBC URL), and where it is.
pub(super) fn in_url(value: &str) -> Option<(String, Place)> {
    let v = value.trim();
    // "jdbc:postgresql://…": the URL after the prefix.
    let v = v.get(..5).filter(|p| p.eq_ignore_ascii_case("jdbc:")).map_or(v, |_| &v[5..]);
    let rest = v.split_once("://").map_or(v, |(_, r)| r);
    // The authority ends at the query; the password may itself hold '/' or '@', so the
    // user information is everything before the last '@' there.
    let before_query = rest.split(['?', ';']).next().unwrap_or(rest);
    if let Some((userinfo, _host)) = before_query.rsplit_once('@')
        && let Some((_user, pw)) = userinfo.split_once(':')
        && !pw.is_empty()
    {
        return Some((pw.to_string(), Place::Userinfo));
    }
    parameter(rest)
}

/// A `password=` (or `pwd=`, …) parameter anywhere after the authority: a query
/// (`?a=b&password=…`) or JDBC properties (`;password=…`).
fn parameter(rest: &str) -> Option<(String, Place)> {
    let params = rest.split_once(['?', ';'])?.1;
    params.split(['&', ';', '?']).find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        let key = percent_encoding::percent_decode_str(k.trim()).decode_utf8_lossy().to_ascii_lowercase();
        (PASSWORD_KEYS.contains(&key.as_str()) && !v.is_empty()).then(|| (v.to_string(), Place::Parameter(k.trim().to_string())))
    })
}

/// The password in a username: `user:PW` or `user:PW@host`.
pub(super) fn in_username(value: &str) -> Option<(String, Place)> {
    let (_user, rest) = value.split_once(':')?;
    let (pw, place) = match rest.rsplit_once('@') {
        Some((pw, _host)) => (pw, Place::Userinfo),
        None => (rest, Place::AfterColon),
    };
    (!pw.is_empty()).then(|| (pw.to_string(), place))
}

/// Registers a found password with the redactor, as written and percent-decoded (a URL
/// carries `p%40ss` for `p@ss`; the server or a driver may say either).
pub(super) fn register(password: &str) {
    crate::redact::register(password);
    let decoded = percent_encoding::percent_decode_str(password).decode_utf8_lossy();
    crate::redact::register(&decoded);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(v: &str) -> Option<(String, Place)> {
        in_url(v)
    }

    #[test]
    fn passwords_are_found_in_every_url_form() {
        let p = |v: &str| url(v).map(|(pw, place)| (pw, place.to_string()));
        let userinfo = Some(("PW-1".to_string(), "as user:password@ before the host".to_string()));
        assert_eq!(p("postgres://u:PW-1@db.example/rs"), userinfo);
        assert_eq!(p("postgresql+psycopg://u:PW-1@db.example:5432/rs"), userinfo);
        assert_eq!(p("jdbc:postgresql://u:PW-1@db.example/rs"), userinfo);
        assert_eq!(p("sftp://u:PW-1@sftp.example"), userinfo);
        assert_eq!(p("u:PW-1@sftp.example"), userinfo);
        assert_eq!(p("u:p@ss/w:rd@h").map(|x| x.0), Some("p@ss/w:rd".to_string()), "the last @ ends the password");
        let param = |k: &str| Some(("PW-2".to_string(), format!("as the {k}= parameter")));
        assert_eq!(p("postgres://u@db/rs?sslmode=require&password=PW-2"), param("password"));
        assert_eq!(p("jdbc:postgresql://db/rs?user=u&password=PW-2"), param("password"));
        assert_eq!(p("jdbc:sqlserver://db;user=u;Password=PW-2"), param("Password"));
        assert_eq!(p("postgres://db/rs?PWD=PW-2"), param("PWD"));
    }

    #[test]
    fn values_without_a_password_pass() {
        for v in [
            "postgres://rs@db.example:5433/rostersync?sslmode=verify-full",
            "postgresql://db/rs",
            "sqlite://state/rostersync.db",
            "sftp.example",
            "sftp.example:2222",
            "[::1]",
            "u@sftp.example",
            "postgres://u@db/rs?password=",
            "mysql://db/x",
        ] {
            assert_eq!(url(v), None, "{v}");
        }
    }

    #[test]
    fn a_username_holding_a_password() {
        assert_eq!(in_username("u:PW-3"), Some(("PW-3".into(), Place::AfterColon)));
        assert_eq!(in_username("u:PW-3@sftp.example"), Some(("PW-3".into(), Place::Userinfo)));
        assert_eq!(in_username("user@customer.example"), None);
        assert_eq!(in_username("DOMAIN\\user"), None);
        assert_eq!(in_username("u:"), None);
    }
}
