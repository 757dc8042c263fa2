//! Secrets never leave through what a server says. Servers that echo requests: a SCIM
//! server repeating the Authorization header (and the body) in its error detail, an OAuth2
//! token endpoint repeating the client secret and the Basic credentials. The secret must
//! appear nowhere: stdout (`--json` report), stderr (debug logs), `history --json`.

use crate::support;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::Output;

use base64::Engine;
use support::fault_proxy::{Fault, FaultProxy};
use support::project::{Project, rows};
use support::scim::ScimServer;

fn text(o: &Output) -> String {
    format!("{}\n{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// Points the project at `base_url` (a proxy) instead of the server it was made for.
fn retarget(p: &Project, from: &str, to: &str) {
    let path = p.path().join("connectors.toml");
    let cfg = std::fs::read_to_string(&path).unwrap().replace(from, to);
    std::fs::write(path, cfg).unwrap();
}

/// A sync (debug logs on) and the history after it: everything the engineer can see.
fn everything(p: &Project) -> (i32, String) {
    let sync = p.command(&["-v", "--json", "sync", "acme"]).output().unwrap();
    let history = p.run(&["--json", "history"]);
    assert!(history.status.success(), "history: {}", text(&history));
    (sync.status.code().unwrap_or(-1), format!("{}\n{}", text(&sync), text(&history)))
}

#[test]
fn a_scim_server_echoing_the_bearer_token_does_not_leak_it() {
    let server = ScimServer::start();
    // Every create is refused with a detail that repeats the request, token included.
    let proxy = FaultProxy::start(
        server.port,
        |_, method, path| {
            if method == "POST" && path.starts_with("/Users") { Fault::Echo(400) } else { Fault::Pass }
        },
    );
    let p = Project::new(&server, "");
    retarget(&p, &server.base_url, &proxy.base_url);
    p.export("employees_1.csv", &rows(3));
    let (code, all) = everything(&p);
    assert_ne!(code, 0, "the creates failed: {all}");
    assert!(all.contains("cannot process this request"), "the server's words are reported: {all}");
    assert!(all.contains("Bearer ***"), "with the token masked: {all}");
    assert!(!all.contains(&server.token), "the bearer token leaked: {all}");
}

#[test]
fn a_scim_server_echoing_the_token_in_a_401_does_not_leak_it() {
    let server = ScimServer::start();
    let proxy = FaultProxy::start(server.port, |_, _, path| if path.starts_with("/Users") { Fault::Echo(401) } else { Fault::Pass });
    let p = Project::new(&server, "");
    retarget(&p, &server.base_url, &proxy.base_url);
    p.export("employees_1.csv", &rows(2));
    let (code, all) = everything(&p);
    assert_eq!(code, 6, "credentials refused: {all}");
    assert!(all.contains("Bearer ***"), "the refusal is reported, masked: {all}");
    assert!(!all.contains(&server.token), "the bearer token leaked: {all}");
}

const CLIENT_ID: &str = "rostersync-redaction";
const CLIENT_SECRET: &str = "oauth-client-secret-5d1e";

/// A token endpoint that refuses every client, repeating the secret it was sent (from the
/// Basic credentials) and the header itself in its error description.
fn echoing_token_endpoint() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let mut r = BufReader::new(s.try_clone().unwrap());
            let (mut auth, mut len, mut line) = (String::new(), 0usize, String::new());
            while r.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                let l = line.to_ascii_lowercase();
                if l.starts_with("authorization:") {
                    auth = line["authorization:".len()..].trim().to_string();
                }
                if let Some(v) = l.strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
                line.clear();
            }
            let mut body = vec![0; len];
            let _ = r.read_exact(&mut body);
            let decoded = auth
                .strip_prefix("Basic ")
                .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
                .map(|b| String::from_utf8_lossy(&b).to_string())
                .unwrap_or_default();
            let json = serde_json::json!({
                "error": "invalid_client",
                "error_description": format!("client {decoded} refused (Authorization: {auth})"),
            })
            .to_string();
            let _ = write!(
                s,
                "HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{json}",
                json.len()
            );
        }
    });
    format!("http://127.0.0.1:{port}/oauth/token")
}

#[test]
fn a_token_endpoint_echoing_the_client_secret_does_not_leak_it() {
    let server = ScimServer::start();
    let token_url = echoing_token_endpoint();
    let p = Project::new(&server, "");
    let path = p.path().join("connectors.toml");
    let cfg = std::fs::read_to_string(&path).unwrap().replace(
        "token_env = \"PLATFORM_SCIM_TOKEN\"\n",
        &format!("oauth2 = {{ token_url = \"{token_url}\", client_id = \"{CLIENT_ID}\", client_secret_env = \"OAUTH_SECRET\" }}\n"),
    );
    std::fs::write(&path, cfg).unwrap();
    p.export("employees_1.csv", &rows(2));
    let sync = p.command(&["-v", "--json", "sync", "acme"]).env("OAUTH_SECRET", CLIENT_SECRET).output().unwrap();
    let history = p.command(&["--json", "history"]).env("OAUTH_SECRET", CLIENT_SECRET).output().unwrap();
    let all = format!("{}\n{}", text(&sync), text(&history));
    assert_eq!(sync.status.code(), Some(6), "client refused: {all}");
    assert!(all.contains("invalid_client"), "the endpoint's words are reported: {all}");
    assert!(all.contains(&format!("client {CLIENT_ID}:*** refused")), "with the secret masked: {all}");
    assert!(!all.contains(CLIENT_SECRET), "the client secret leaked: {all}");
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"));
    assert!(!all.contains(&basic), "the Basic credentials leaked: {all}");
}

/// The forms a secret is echoed in: as it is, its first 8 characters (a truncated echo),
/// percent-encoded (every symbol, escapes in upper and lower case), base64 of it and of
/// `Bearer SECRET` in both alphabets, padded and not.
fn forms(secret: &str) -> Vec<String> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    let pct: String =
        secret.bytes().map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") }).collect();
    let mut all = vec![secret.to_string(), secret.chars().take(8).collect(), pct.clone(), pct.to_ascii_lowercase()];
    for plain in [secret.to_string(), format!("Bearer {secret}")] {
        for engine in [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD] {
            all.push(engine.encode(&plain));
        }
    }
    all
}

/// Panics naming the form (never printing `haystack`'s secret in a passing run).
fn assert_no_form(what: &str, haystack: &str, secret: &str) {
    for f in forms(secret) {
        assert!(!haystack.contains(&f), "{what}: the secret leaked as «{f}»:\n{haystack}");
    }
}

/// Every file under the state folder, as bytes read lossily (SQLite file, WAL, journal).
fn state_bytes(p: &Project) -> String {
    let Ok(dir) = std::fs::read_dir(p.path().join("state")) else { return String::new() };
    dir.flatten().map(|e| String::from_utf8_lossy(&std::fs::read(e.path()).unwrap_or_default()).to_string()).collect()
}

const PASTED: &str = "Pw/h0st+s3cr3t!9";
const FP: &str = "SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s";

/// A password pasted into an SFTP host and username, and into the state URL in each form
/// it comes in: every command refuses, says where, and shows the password in no form —
/// stdout, stderr (debug logs), `--json`, and no state is written.
#[test]
fn a_password_pasted_into_host_username_or_state_url_is_never_shown() {
    let server = ScimServer::start();
    for url in [
        format!("postgres://rs:{PASTED}@127.0.0.1:1/rs"),
        format!("postgres://rs@127.0.0.1:1/rs?sslmode=verify-full&password={PASTED}"),
        format!("postgresql+psycopg://rs:{PASTED}@127.0.0.1:1/rs"),
        format!("jdbc:postgresql://127.0.0.1:1/rs?user=rs&password={PASTED}"),
    ] {
        let p = Project::new(&server, "");
        p.set_state(&format!("[state]\nurl = \"{url}\"\n"));
        let path = p.path().join("connectors.toml");
        let mut cfg = std::fs::read_to_string(&path).unwrap();
        cfg.push_str(&format!(
            "\n[connectors.globex]\nmapping = \"mappings/demo.toml\"\n[connectors.globex.sftp]\nhost = \"sftp://u:{PASTED}@sftp.example\"\n\
             username = \"u:{PASTED}\"\nauth = \"password\"\npassword_env = \"SFTP_PW\"\nhost_key = \"{FP}\"\n[connectors.globex.file]\npath = \"x.csv\"\n"
        ));
        std::fs::write(&path, cfg).unwrap();
        p.export("employees_1.csv", &rows(2));
        let check = p.run(&["check"]);
        let out = text(&check);
        assert_eq!(check.status.code(), Some(2), "{out}");
        assert!(out.contains("state.url: the URL contains a password"), "{out}");
        assert!(out.contains("connectors.globex.sftp.host: holds a password"), "{out}");
        assert!(out.contains("connectors.globex.sftp.username: holds a password"), "{out}");
        assert!(out.contains("password_env") && out.contains("password_file"), "says what to do: {out}");
        let mut all = out;
        for args in [
            &["--json", "check"][..],
            &["-v", "test", "acme"],
            &["-v", "test", "globex"],
            &["-v", "--json", "sync", "acme"],
            &["-v", "--json", "sync", "globex"],
            &["-v", "--json", "sync", "--all"],
            &["-v", "status"],
            &["-v", "--json", "history"],
            &["-v", "daemon"],
        ] {
            let o = p.run(args);
            // `test acme` shows the file and says the plan was not made: it does not need the store.
            if args != ["-v", "test", "acme"] {
                assert_ne!(o.status.code(), Some(0), "{args:?} refused: {}", text(&o));
            }
            all.push_str(&text(&o));
        }
        assert_no_form(&url, &all, PASTED);
        assert!(!p.path().join("state").exists(), "no state store was created in place of the refused one");
    }
}

/// A SCIM server echoing the bearer token cut short, percent-encoded in lower case, and
/// base64-encoded (alone and as its `Bearer` header): none of these forms reaches the
/// output, the logs, the history or the state file.
#[test]
fn a_token_echoed_in_encoded_forms_reaches_no_output_and_no_state() {
    let server = ScimServer::start();
    let token = server.token.clone();
    let echoes = forms(&token).join(" | ");
    let detail = serde_json::json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"],
        "status": "400",
        "detail": format!("cannot process this request; token {} was cut, encoded: {echoes}", &token[..token.len() - 3]),
    })
    .to_string();
    let proxy = FaultProxy::start(server.port, move |_, method, path| {
        if method == "POST" && path.starts_with("/Users") { Fault::Body(400, detail.clone()) } else { Fault::Pass }
    });
    let p = Project::new(&server, "");
    retarget(&p, &server.base_url, &proxy.base_url);
    p.export("employees_1.csv", &rows(3));
    let (code, all) = everything(&p);
    assert_ne!(code, 0, "the creates failed: {all}");
    assert!(all.contains("cannot process this request"), "the server's words are reported: {all}");
    assert_no_form("sync and history", &all, &token);
    let state = state_bytes(&p);
    assert!(!state.is_empty(), "the run was stored");
    assert_no_form("the state file", &state, &token);
}
