//! The platform targets: `[platform]` (the default) and `[connectors.NAME.platform]` (a
//! connector's own, whose keys override the default's). A *target* is where a connector's
//! people live: one base URL and one credential. Two connectors with the same URL and
//! token share a target (the same directory: their accounts are kept apart by the binding
//! rules); the same URL with another token is another customer's organisation, another
//! target. The identity of a target (`Target::key`) is its normalised URL and *which*
//! credential it uses (the variable's name, the file's path, the OAuth2 client), never the
//! secret.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::checker::Checker;
use super::raw::{Bulk, PlatformKind, RawPlatform};
use super::{SecretRef, secret};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub base_url: url::Url,
    pub auth: PlatformAuth,
    pub max_concurrency: usize,
    pub timeout: Duration,
    pub bulk: bool,
    pub custom_schema: String,
    pub notify_webhook: Option<url::Url>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlatformAuth {
    /// The bearer token, from `token_env` or `token_file`.
    Bearer { token: SecretRef },
    OAuth2 {
        token_url: url::Url,
        client_id: String,
        /// From `client_secret_env` or `client_secret_file`.
        client_secret: SecretRef,
        scope: Option<String>,
    },
}

/// One platform target: what connectors push to, with its identity and its short name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Shown in /metrics (`target` label), `status`, `history`, the status page: the
    /// `name` key, else the URL's host and path (never the token).
    pub name: String,
    /// The identity: the normalised URL and which credential (`key_of`). Connectors with
    /// the same key share accounts, limits and the platform lease.
    pub key: String,
    pub platform: Platform,
}

impl Target {
    pub fn new(name: Option<String>, platform: Platform) -> Target {
        Target { name: name.unwrap_or_else(|| derived_name(&platform.base_url)), key: key_of(&platform), platform }
    }
}

/// The platform as keys, logs and names show it: no credentials (a URL may carry some),
/// no query or fragment, no trailing slash; `url::Url` already lowercases the scheme and
/// host and drops a default port.
pub fn shown_url(base_url: &url::Url) -> String {
    let host = base_url.host_str().unwrap_or_default();
    let port = base_url.port().map(|p| format!(":{p}")).unwrap_or_default();
    format!("{}://{host}{port}{}", base_url.scheme(), base_url.path().trim_end_matches('/'))
}

/// Which credential a target uses, by name: never the secret.
pub fn credential(auth: &PlatformAuth) -> String {
    match auth {
        PlatformAuth::Bearer { token: SecretRef::Env(v) } => format!("token_env={v}"),
        PlatformAuth::Bearer { token: SecretRef::File(f) } => format!("token_file={}", f.display()),
        PlatformAuth::OAuth2 { token_url, client_id, .. } => format!("oauth2 client_id={client_id} at {}", shown_url(token_url)),
    }
}

/// A target's identity: "https://host/path token_env=NAME".
pub fn key_of(p: &Platform) -> String {
    format!("{} {}", shown_url(&p.base_url), credential(&p.auth))
}

/// "host[:port]/path": what a person recognises, without the scheme.
fn derived_name(base_url: &url::Url) -> String {
    let host = base_url.host_str().unwrap_or_default();
    let port = base_url.port().map(|p| format!(":{p}")).unwrap_or_default();
    format!("{host}{port}{}", base_url.path().trim_end_matches('/'))
}

/// The credential's short name, to tell apart two targets on one URL.
fn credential_name(auth: &PlatformAuth) -> String {
    match auth {
        PlatformAuth::Bearer { token: SecretRef::Env(v) } => v.clone(),
        PlatformAuth::Bearer { token: SecretRef::File(f) } => f.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        PlatformAuth::OAuth2 { client_id, .. } => client_id.clone(),
    }
}

/// The keys of `[platform]` that say who we are: a connector that sets one of them sets
/// its credential entirely (a token of its own does not inherit the default's OAuth2).
const AUTH_KEYS: [&str; 3] = ["token_env", "token_file", "oauth2"];

/// A connector's effective platform table: `[platform]`'s keys, overridden by the
/// connector's own. `kind` defaults to "scim" when neither says.
pub(super) fn merged(default: Option<&toml::Table>, own: toml::Table) -> toml::Value {
    let mut out = default.cloned().unwrap_or_default();
    out.remove("notify_webhook");
    // A name is its target's: another target (another URL or token) must not take it.
    out.remove("name");
    if AUTH_KEYS.iter().any(|k| own.contains_key(*k)) {
        for k in AUTH_KEYS {
            out.remove(k);
        }
    }
    out.extend(own);
    out.entry("kind").or_insert_with(|| toml::Value::String("scim".into()));
    toml::Value::Table(out)
}

/// Checks one platform table (`[platform]`, or a connector's merged one at `table`).
pub(super) fn check_platform(ck: &mut Checker, dir: &Path, table: &str, p: RawPlatform) -> Option<(Platform, Option<String>)> {
    let before = ck.problems.len();
    let k = |f: &str| format!("{table}.{f}");
    // One kind today: the value matters only when it is refused.
    let base_url = check_base_url(ck, &k("base_url"), &p.base_url);
    let auth = check_auth(ck, dir, table, &p);
    let _: Option<PlatformKind> = ck.value(&k("kind"), Some(p.kind));
    let max_concurrency = match p.max_concurrency {
        None => 8,
        Some(n) if (1..=256).contains(&n) => n as usize,
        Some(n) => {
            ck.problem(&k("max_concurrency"), format!("expected 1 to 256; got {n}"));
            8
        }
    };
    let timeout = ck.value(&k("timeout"), p.timeout).map_or(Duration::from_secs(30), |d| d.0);
    let bulk = ck.value(&k("bulk"), p.bulk).unwrap_or_default() == Bulk::Auto;
    let notify_webhook = p.notify_webhook.as_ref().and_then(|w| match url::Url::parse(w) {
        // A webhook URL is its own credential (Slack's, Teams'): never echoed back.
        Ok(u) if table == "platform" => {
            // Whole only: its "https://" start is everyone's.
            crate::redact::register_exact(w);
            crate::redact::register_exact(u.as_str());
            Some(u)
        }
        Ok(_) => {
            crate::redact::register_exact(w);
            ck.problem(
                &k("notify_webhook"),
                "the webhook is the daemon's, for every connector: set it in [platform] (the value is not shown)",
            );
            None
        }
        Err(e) => {
            // Not echoed: a webhook URL is a credential, and `check` output is pasted around.
            ck.problem(&k("notify_webhook"), format!("expected a URL ({e}); the value is not shown, as a webhook URL is a secret"));
            None
        }
    });
    let name = p.name.filter(|n| {
        let ok = !n.trim().is_empty() && n.len() <= 64 && !n.chars().any(|c| c.is_control() || c == '"');
        if !ok {
            ck.problem(&k("name"), format!("expected a short name such as \"acme\" (1 to 64 characters, no quotes); got {n:?}"));
        }
        ok
    });
    if ck.problems.len() > before {
        return None;
    }
    let platform = Platform {
        base_url: base_url?,
        auth: auth?,
        max_concurrency,
        timeout,
        bulk,
        custom_schema: p.custom_schema.unwrap_or_else(|| "urn:ietf:params:scim:schemas:extension:rostersync:2.0:User".into()),
        notify_webhook,
    };
    Some((platform, name))
}

fn check_base_url(ck: &mut Checker, key: &str, v: &str) -> Option<url::Url> {
    match url::Url::parse(v) {
        Ok(u) if u.scheme() == "http" || u.scheme() == "https" => Some(u),
        Ok(u) => {
            ck.problem(key, format!("expected an http(s) URL such as \"https://platform.example/scim/v2\"; got scheme \"{}\"", u.scheme()));
            None
        }
        Err(e) => {
            ck.problem(key, format!("expected a URL such as \"https://platform.example/scim/v2\"; got \"{v}\" ({e})"));
            None
        }
    }
}

fn check_auth(ck: &mut Checker, dir: &Path, table: &str, p: &RawPlatform) -> Option<PlatformAuth> {
    let bearer = p.token_env.is_some() || p.token_file.is_some();
    match (bearer, &p.oauth2) {
        (true, None) => secret(ck, dir, table, "token", p.token_env.as_deref(), p.token_file.as_deref())
            .flatten()
            .map(|token| PlatformAuth::Bearer { token }),
        (false, Some(o)) => {
            let at = format!("{table}.oauth2");
            let client_secret = secret(ck, dir, &at, "client_secret", o.client_secret_env.as_deref(), o.client_secret_file.as_deref());
            if matches!(client_secret, Some(None)) {
                ck.problem(
                    &format!("{at}.client_secret_env"),
                    "missing: name the variable holding the client secret (client_secret_env = \"PLATFORM_CLIENT_SECRET\") or its file (client_secret_file)",
                );
            }
            match url::Url::parse(&o.token_url) {
                Ok(u) => client_secret.flatten().map(|client_secret| PlatformAuth::OAuth2 {
                    token_url: u,
                    client_id: o.client_id.clone(),
                    client_secret,
                    scope: o.scope.clone(),
                }),
                Err(e) => {
                    ck.problem(&format!("{at}.token_url"), format!("expected a URL; got \"{}\" ({e})", o.token_url));
                    None
                }
            }
        }
        (true, Some(_)) => {
            ck.problem(&format!("{table}.oauth2"), "give either token_env (or token_file) or oauth2, not both");
            None
        }
        (false, None) => {
            ck.problem(
                &format!("{table}.token_env"),
                "missing: name the environment variable holding the bearer token (token_env = \"PLATFORM_SCIM_TOKEN\"), or give oauth2 = { … }",
            );
            None
        }
    }
}

/// What a connector's platform resolved to, before the targets are named.
pub(super) enum Resolved {
    /// No table of its own: `[platform]`.
    Default,
    /// Its own (merged) platform, and its `name` if given.
    Own(Box<Platform>, Option<String>),
    /// Its own table was refused (its problems say why).
    Refused,
}

/// The targets of every connector, one `Arc` per identity (created once, shared), named:
/// a derived name two targets would share gets the credential's name. Problems: two
/// connectors naming one target with other settings, or two targets with one name.
pub(super) struct Named {
    pub by_connector: BTreeMap<String, Option<Arc<Target>>>,
    /// (connector, key, message) of connectors refused here.
    pub problems: Vec<(String, String, String)>,
}

pub(super) fn name_targets(default: Option<(Platform, Option<String>)>, own: Vec<(String, Resolved)>) -> Named {
    let mut problems = Vec::new();
    // Every distinct target, first definition wins; its connectors in order.
    let mut defs: Vec<(Option<String>, Platform, Vec<String>)> = Vec::new();
    let default_key = default.as_ref().map(|(p, _)| key_of(p));
    if let Some((p, n)) = default {
        defs.push((n, p, Vec::new()));
    }
    for (conn, r) in &own {
        let Resolved::Own(p, n) = r else { continue };
        let p: &Platform = p;
        let key = key_of(p);
        match defs.iter_mut().find(|(_, q, _)| key_of(q) == key) {
            Some((dn, q, conns)) if q == p && (n.is_none() || n == dn) => conns.push(conn.clone()),
            Some((_, _, conns)) => {
                let with = conns.first().map(|c| format!("connector \"{c}\"")).unwrap_or_else(|| "[platform]".into());
                problems.push((
                    conn.clone(),
                    format!("connectors.{conn}.platform"),
                    format!("the same target as {with} (same base_url and credential) with other settings; a target has one set of settings and one name: give the same values, or another credential for another organisation"),
                ));
            }
            None => defs.push((n.clone(), p.clone(), vec![conn.clone()])),
        }
    }
    let names = unique_names(&defs);
    let mut targets: BTreeMap<String, Arc<Target>> = BTreeMap::new();
    for ((_, p, _), name) in defs.into_iter().zip(names) {
        let t = Target { name, key: key_of(&p), platform: p };
        targets.insert(t.key.clone(), Arc::new(t));
    }
    let default = default_key.and_then(|k| targets.get(&k).cloned());
    let mut by_connector = BTreeMap::new();
    for (conn, r) in own {
        let t = match r {
            Resolved::Default => default.clone(),
            Resolved::Own(p, _) => targets.get(&key_of(&p)).cloned(),
            Resolved::Refused => None,
        };
        by_connector.insert(conn, t);
    }
    Named { by_connector, problems }
}

/// `adopt_from` naming a connector on another target: its accounts are in another
/// directory, so adopting "from" it would take this target's accounts of whoever has the
/// same id (another customer's people). Refused, saying why.
pub(super) fn adoptions_across_targets(conns: &super::Connectors) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for c in conns.values() {
        for from in &c.sync.adopt_from {
            let (Some(mine), Some(theirs)) = (&c.target, conns.get(from).and_then(|o| o.target.as_ref())) else { continue };
            if mine.key != theirs.key {
                out.push((
                    c.name.clone(),
                    format!("connectors.{}.sync.adopt_from", c.name),
                    format!(
                        "\"{from}\" pushes to another target ({}) than this connector ({}): its accounts are not on this one, so there is nothing to adopt from it; remove it (adopt_from is for a migration between connectors of one target)",
                        theirs.name, mine.name
                    ),
                ));
            }
        }
    }
    out
}

/// The names of the targets: as given, else derived; a derived name two targets share
/// gets the credential's name ("host/path#ACME_TOKEN").
fn unique_names(defs: &[(Option<String>, Platform, Vec<String>)]) -> Vec<String> {
    let derived: Vec<String> = defs.iter().map(|(n, p, _)| n.clone().unwrap_or_else(|| derived_name(&p.base_url))).collect();
    defs.iter()
        .zip(&derived)
        .map(|((given, p, _), d)| {
            if given.is_none() && derived.iter().filter(|x| *x == d).count() > 1 {
                format!("{d}#{}", credential_name(&p.auth))
            } else {
                d.clone()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::{Config, load_str};

    const MAPPING: &str = "unique_id = \"employee_id\"\n[fields]\nemployee_id = \"Id\"\nfirst_name = \"First\"\nlast_name = \"Last\"\n";

    fn load(src: &str) -> Config {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("m.toml"), MAPPING).unwrap();
        load_str(src, &dir.path().join("connectors.toml"), dir.path())
    }

    /// A connector `name` reading a local folder, with `platform` as its own platform table
    /// (none when empty).
    fn conn(name: &str, platform: &str) -> String {
        let own = if platform.is_empty() { String::new() } else { format!("[connectors.{name}.platform]\n{platform}\n") };
        format!(
            "[connectors.{name}]\nmapping = \"m.toml\"\n[connectors.{name}.local]\ndir = \".\"\n[connectors.{name}.file]\npath = \"x.csv\"\n{own}"
        )
    }

    const DEFAULT: &str =
        "[platform]\nkind = \"scim\"\nbase_url = \"https://scim.example.com/v2\"\ntoken_env = \"T\"\nmax_concurrency = 4\n";

    #[test]
    fn a_connector_s_own_keys_override_the_default_and_make_its_own_target() {
        let cfg = load(&format!(
            "{DEFAULT}{}{}{}{}",
            conn("shared", ""),
            conn("acme", "base_url = \"https://scim.example.com/v2/org/acme\"\ntoken_env = \"ACME_TOKEN\"\nname = \"acme\""),
            conn("globex", "token_env = \"GLOBEX_TOKEN\""),
            conn("also_shared", "timeout = \"30s\"\nmax_concurrency = 4"),
        ));
        assert!(cfg.problems.is_empty(), "{:#?}", cfg.problems);
        let t = |n: &str| cfg.connectors[n].target.clone().unwrap();
        let (shared, acme, globex) = (t("shared"), t("acme"), t("globex"));
        assert_eq!(t("acme").name, "acme");
        assert_eq!(shared.key, "https://scim.example.com/v2 token_env=T");
        assert!(std::sync::Arc::ptr_eq(&shared, &t("also_shared")), "the same settings, the same target: one Arc");
        assert_eq!((acme.name.as_str(), acme.key.as_str()), ("acme", "https://scim.example.com/v2/org/acme token_env=ACME_TOKEN"));
        assert_eq!(acme.platform.max_concurrency, 4, "inherited");
        // The same URL with another token is another organisation: another key and name.
        assert_eq!(globex.key, "https://scim.example.com/v2 token_env=GLOBEX_TOKEN");
        assert_eq!(globex.name, "scim.example.com/v2#GLOBEX_TOKEN");
        assert_eq!(shared.name, "scim.example.com/v2#T");
        assert_eq!(cfg.targets().len(), 3);
    }

    #[test]
    fn platform_may_be_absent_when_every_connector_has_its_own() {
        let own = "kind = \"scim\"\nbase_url = \"https://a.example/scim\"\ntoken_file = \"secrets/a\"";
        let cfg = load(&format!("{}{}", conn("a", own), conn("b", "base_url = \"https://b.example/scim\"\ntoken_env = \"B\"")));
        assert!(cfg.problems.is_empty(), "{:#?}", cfg.problems);
        assert_eq!(cfg.connectors["a"].target.as_ref().unwrap().name, "a.example/scim");
        assert!(cfg.connectors["a"].target.as_ref().unwrap().key.ends_with("/secrets/a"), "a file's path, never its content");
        // One without: refused alone, saying what to add.
        let cfg = load(&format!("{}{}", conn("a", own), conn("b", "")));
        assert_eq!(cfg.broken, ["b"]);
        assert_eq!(cfg.problems.len(), 1, "{:#?}", cfg.problems);
        assert!(cfg.problems[0].message.contains("[connectors.b.platform]"), "{}", cfg.problems[0]);
    }

    #[test]
    fn a_connector_s_platform_table_is_checked_like_platform_and_refuses_that_connector_only() {
        let cfg = load(&format!("{DEFAULT}{}{}", conn("good", ""), conn("bad", "base_urll = \"https://x.example\"\nmax_concurrency = 0")));
        assert_eq!(cfg.broken, ["bad"]);
        assert!(cfg.connectors.contains_key("good"));
        let p: Vec<String> = cfg.problems.iter().map(|p| p.to_string()).collect();
        // Both of its mistakes in one pass: the unknown key, and the value read past it.
        assert_eq!(p.len(), 2, "{p:#?}");
        assert!(p[0].contains(":19: connectors.bad.platform.base_urll: unknown key — did you mean `base_url`?"), "{p:#?}");
        assert!(p[1].contains(":20: connectors.bad.platform.max_concurrency: expected 1 to 256; got 0"), "{p:#?}");
        let cfg = load(&format!("{DEFAULT}{}", conn("bad", "max_concurrency = 0\nnotify_webhook = \"https://hooks.example/secret-path\"")));
        let p: Vec<String> = cfg.problems.iter().map(|p| p.to_string()).collect();
        assert!(p.iter().any(|p| p.contains(":13: connectors.bad.platform.max_concurrency: expected 1 to 256; got 0")), "{p:#?}");
        assert!(p.iter().any(|p| p.contains("connectors.bad.platform.notify_webhook: the webhook is the daemon's")), "{p:#?}");
        assert!(!p.iter().any(|p| p.contains("secret-path")), "{p:#?}");
    }

    #[test]
    fn a_name_is_never_inherited_by_another_target() {
        let named = format!("{DEFAULT}name = \"main\"\n");
        let cfg = load(&format!("{named}{}{}", conn("a", ""), conn("b", "base_url = \"https://scim.example.com/v2/org/b\"")));
        assert!(cfg.problems.is_empty(), "{:#?}", cfg.problems);
        assert_eq!(cfg.connectors["a"].target.as_ref().unwrap().name, "main");
        assert_eq!(cfg.connectors["b"].target.as_ref().unwrap().name, "scim.example.com/v2/org/b");
    }

    #[test]
    fn one_target_has_one_set_of_settings() {
        let cfg = load(&format!("{DEFAULT}{}{}", conn("a", ""), conn("b", "max_concurrency = 2")));
        assert_eq!(cfg.broken, ["b"]);
        assert!(cfg.problems[0].message.contains("the same target as [platform]"), "{}", cfg.problems[0]);
        // A token of its own drops the default's credential entirely (no token + oauth2 mix).
        let oauth = "[platform]\nkind = \"scim\"\nbase_url = \"https://s.example\"\noauth2 = { token_url = \"https://idp.example/t\", client_id = \"c\", client_secret_env = \"S\" }\n";
        let cfg = load(&format!("{oauth}{}", conn("b", "token_env = \"B\"")));
        assert!(cfg.problems.is_empty(), "{:#?}", cfg.problems);
        assert_eq!(cfg.connectors["b"].target.as_ref().unwrap().key, "https://s.example token_env=B");
    }
}
