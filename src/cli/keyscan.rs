//! `rostersync keyscan HOST[:PORT]`: prints the server's host keys and the `host_key` line
//! to paste into the connector. It trusts nothing and changes nothing: the fingerprint
//! must still be checked with the server's administrator.

use std::time::Duration;

use crate::exit::Classify;
use crate::source::sftp::keyscan;

const TIMEOUT: Duration = Duration::from_secs(30);

/// Splits "host", "host:port", "[v6]:port" or a bare IPv6 address.
pub fn parse_target(target: &str) -> Result<(String, u16), String> {
    let bad_port = |p: &str| format!("expected HOST or HOST:PORT with a port from 1 to 65535; got \"{target}\" (port \"{p}\")");
    let port = |p: &str| p.parse::<u16>().ok().filter(|&n| n > 0).ok_or_else(|| bad_port(p));
    let t = target.trim();
    if t.is_empty() {
        return Err("expected HOST or HOST:PORT, e.g. `rostersync keyscan sftp.acme.example:22`".into());
    }
    if let Some(rest) = t.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or_else(|| format!("missing `]` in \"{target}\""))?;
        return match after.strip_prefix(':') {
            Some(p) => Ok((host.to_string(), port(p)?)),
            None if after.is_empty() => Ok((host.to_string(), 22)),
            None => Err(format!("unexpected \"{after}\" after `]` in \"{target}\"")),
        };
    }
    match t.matches(':').count() {
        0 => Ok((t.to_string(), 22)),
        1 => {
            let (h, p) = t.split_once(':').unwrap_or((t, "22"));
            Ok((h.to_string(), port(p)?))
        }
        _ => Ok((t.to_string(), 22)), // a bare IPv6 address
    }
}

/// What the command prints for the keys found.
pub fn render(host: &str, port: u16, keys: &[(String, String)]) -> String {
    let at = if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
    let mut out = format!("{at} offers these host keys:\n");
    let width = keys.iter().map(|(t, _)| t.len()).max().unwrap_or(0);
    for (t, fp) in keys {
        out.push_str(&format!("  {t:width$}  {fp}\n"));
    }
    if let Some((_, best)) = keys.first() {
        out.push_str(&format!(
            "\nCheck the fingerprint with the server's administrator (not over this connection), then put in [connectors.NAME.sftp]:\n  host = \"{host}\"\n  port = {port}\n  host_key = \"{best}\"\n"
        ));
    }
    out
}

/// The `--json` form: the keys found and the fingerprint to pin (the first: the type
/// the server prefers among those rostersync accepts).
pub fn to_json(host: &str, port: u16, keys: &[(String, String)]) -> serde_json::Value {
    serde_json::json!({
        "host": host,
        "port": port,
        "keys": keys.iter().map(|(t, fp)| serde_json::json!({"type": t, "fingerprint": fp})).collect::<Vec<_>>(),
        "host_key": keys.first().map(|(_, fp)| fp),
    })
}

pub fn run(target: &str, json: bool) -> super::Result<i32> {
    let fail = |msg: &str, exit: crate::exit::Exit| {
        if json {
            println!("{}", serde_json::json!({"error": msg, "exit": exit.code()}));
        }
        eprintln!("error: {}", super::term::shown_lines(msg));
        Ok(exit.code())
    };
    let (host, port) = match parse_target(target) {
        Ok(hp) => hp,
        Err(msg) => return fail(&msg, crate::exit::Exit::Config),
    };
    match keyscan(&host, port, TIMEOUT) {
        Ok(keys) if json => {
            println!("{}", to_json(&host, port, &keys));
            Ok(0)
        }
        Ok(keys) => {
            print!("{}", render(&host, port, &keys));
            Ok(0)
        }
        Err(e) => fail(&e.to_string(), e.exit()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        assert_eq!(parse_target("sftp.acme.example"), Ok(("sftp.acme.example".into(), 22)));
        assert_eq!(parse_target("10.0.0.5:2222"), Ok(("10.0.0.5".into(), 2222)));
        assert_eq!(parse_target("[::1]:2222"), Ok(("::1".into(), 2222)));
        assert_eq!(parse_target("::1"), Ok(("::1".into(), 22)));
        assert!(parse_target("h:0").unwrap_err().contains("port from 1 to 65535"));
        assert!(parse_target("h:ssh").is_err());
    }

    #[test]
    fn render_gives_the_line_to_paste() {
        let out = render("h", 2222, &[("ssh-ed25519".into(), "SHA256:abc".into()), ("ssh-rsa".into(), "SHA256:def".into())]);
        assert!(out.contains("  ssh-ed25519  SHA256:abc\n  ssh-rsa      SHA256:def\n"), "{out}");
        assert!(out.contains("host_key = \"SHA256:abc\""), "{out}");
        let v = to_json("h", 2222, &[("ssh-ed25519".into(), "SHA256:abc".into())]);
        assert_eq!(v["keys"][0]["type"], "ssh-ed25519");
        assert_eq!((v["host_key"].as_str(), v["port"].as_u64()), (Some("SHA256:abc"), Some(2222)));
    }
}
