//! Preflight against real files, a real sshd and a real scim2-server: `check` finds what
//! would make a run fail before it starts (exit 2, the connector named); `check --online`
//! reaches every server and exits by the worst connector; secrets from files work end to
//! end and never reach the output; the daemon's /healthz names the connectors that cannot
//! run.

use crate::support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use support::project::{Project, rows};
use support::scim::ScimServer;
use support::sshd::Sshd;

const MAPPING: &str = "unique_id = \"employee_id\"\n[fields]\nemployee_id = \"Personnel Number\"\nemail = \"Email\"\nfirst_name = \"First Name\"\nlast_name = \"Last Name\"\n";

fn run(config: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(support::rostersync_bin());
    c.arg("--config").arg(config).args(args).env_remove("PLATFORM_SCIM_TOKEN").env("RUST_LOG", "off");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run rostersync")
}

fn text(o: &Output) -> (String, String) {
    (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

fn sftp_connector(name: &str, port: u16, auth: &str, host_key: &str, path: &str) -> String {
    format!(
        "\n[connectors.{name}]\nmapping = \"m.toml\"\n[connectors.{name}.sftp]\nhost = \"127.0.0.1\"\nport = {port}\nusername = \"root\"\n{auth}\n{host_key}\n[connectors.{name}.file]\npath = \"{path}\"\nmin_age = \"0s\"\n"
    )
}

#[test]
fn check_finds_what_the_environment_lacks_with_exit_2_and_the_connector_named() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("m.toml"), MAPPING).unwrap();
    std::fs::write(d.join("dates.toml"), format!("{MAPPING}[attributes]\nhire_date = {{ column = \"Hire Date\", date = \"%d/%m/%Q\" }}\n"))
        .unwrap();
    std::fs::create_dir_all(d.join("keys")).unwrap();
    support::sshd::keygen("ed25519", &d.join("keys/open"), "");
    std::fs::set_permissions(d.join("keys/open"), std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::write(d.join("kh"), "127.0.0.1 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n").unwrap();
    let fp = "host_key = \"SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s\"";
    let mut cfg = String::from(
        "[platform]\nkind = \"scim\"\nbase_url = \"http://127.0.0.1:1\"\ntoken_env = \"RS_PREFLIGHT_UNSET_TOKEN\"\n[state]\nurl = \"sqlite://state.db\"\n",
    );
    cfg += &sftp_connector("keyless", 22, "auth = \"key\"\nprivate_key = \"keys/missing\"", fp, "/x/*.csv");
    cfg += &sftp_connector("open", 22, "auth = \"key\"\nprivate_key = \"keys/open\"", fp, "/x/*.csv");
    cfg += &sftp_connector("kh", 22, "auth = \"password\"\npassword_env = \"RS_PREFLIGHT_PW\"", "known_hosts = \"kh\"", "/x/*.csv");
    cfg += &sftp_connector("badhost", 22, "auth = \"password\"\npassword_file = \"pw\"", fp, "/x/*.csv")
        .replace("127.0.0.1", "sftp..acme.example");
    cfg += "\n[connectors.dates]\nmapping = \"dates.toml\"\n[connectors.dates.local]\ndir = \".\"\n[connectors.dates.file]\npath = \"x.csv\"\n";
    std::fs::write(d.join("connectors.toml"), &cfg).unwrap();

    // The service runs as an unprivileged user that cannot read this known_hosts file. As root
    // (these tests are), permissions do not stop reads: run rostersync as nobody instead, with
    // everything else in the project readable by it.
    let root = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(d.join("kh")).unwrap()) == 0;
    let nobody = 65534;
    if root {
        for entry in ["", "m.toml", "dates.toml", "keys", "keys/open", "keys/open.pub", "connectors.toml"] {
            std::os::unix::fs::chown(d.join(entry), Some(nobody), Some(nobody)).unwrap();
        }
    }
    std::fs::set_permissions(d.join("kh"), std::fs::Permissions::from_mode(if root { 0o600 } else { 0o000 })).unwrap();
    let check = |args: &[&str]| {
        let mut c = Command::new(support::rostersync_bin());
        c.arg("--config").arg(d.join("connectors.toml")).args(args).env_remove("PLATFORM_SCIM_TOKEN").env("RS_PREFLIGHT_PW", "pw");
        if root {
            std::os::unix::process::CommandExt::uid(&mut c, nobody);
            std::os::unix::process::CommandExt::gid(&mut c, nobody);
        }
        c.output().expect("run rostersync check")
    };

    let out = check(&["check"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stdout}{stderr}");
    for expected in [
        "every connector: platform.token_env: environment variable RS_PREFLIGHT_UNSET_TOKEN (the platform's SCIM bearer token) is not set",
        "connector keyless: connectors.keyless.sftp.private_key: private key ",
        "keys/missing does not exist; create a key pair with `ssh-keygen -t ed25519",
        "connector open: connectors.open.sftp.private_key: private key ",
        "keys/open is readable by others (mode 0644); run `chmod 600 ",
        "connector kh: connectors.kh.sftp.known_hosts: cannot read known_hosts file ",
        "connector badhost: connectors.badhost.sftp.host: \"sftp..acme.example\" is not a host name or address (an empty label between dots)",
        "connector badhost: connectors.badhost.sftp.password_file: file ",
        "dates.toml:8: attributes.hire_date.date: ",
        "refused until fixed: dates",
    ] {
        assert!(stdout.contains(expected), "missing «{expected}» in:\n{stdout}");
    }

    let out = check(&["--json", "check"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    assert_eq!((v["ok"].as_bool(), v["exit"].as_i64()), (Some(false), Some(2)), "{v}");
    let env: Vec<(String, String)> = v["environment"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["connector"].as_str().unwrap_or("-").to_string(), f["key"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(
        env,
        [
            ("-", "platform.token_env"),
            ("badhost", "connectors.badhost.sftp.host"),
            ("badhost", "connectors.badhost.sftp.password_file"),
            ("keyless", "connectors.keyless.sftp.private_key"),
            ("kh", "connectors.kh.sftp.known_hosts"),
            ("open", "connectors.open.sftp.private_key"),
        ]
        .map(|(a, b)| (a.to_string(), b.to_string())),
        "{v}"
    );
    assert_eq!(v["problems"][0]["connector"], "dates", "the date format is the mapping's: {v}");

    // --no-environment: only the files' own problems.
    let out = check(&["check", "--no-environment"]);
    let (stdout, _) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    assert!(stdout.contains("attributes.hire_date.date") && !stdout.contains("environment"), "{stdout}");
}

#[test]
fn check_online_reaches_sftp_and_the_platform_and_exits_by_the_worst_connector() {
    let scim = ScimServer::start();
    let sshd = Sshd::start();
    let key = sshd.client_key("ed25519", "a passphrase, from a file");
    std::fs::write(
        sshd.data().join("employees_2026-01-01.csv"),
        "Personnel Number,Email,First Name,Last Name\n1001,ada@example.com,Ada,Lovelace\n",
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("m.toml"), MAPPING).unwrap();
    std::fs::write(d.join("passphrase"), "a passphrase, from a file\n").unwrap();
    let glob = format!("{}/employees_*.csv", sshd.data().display());
    let auth = format!("auth = \"key\"\nprivate_key = \"{}\"\npassphrase_file = \"passphrase\"", key.display());
    let mut cfg = format!(
        "[platform]\nkind = \"scim\"\nbase_url = \"{}\"\ntoken_env = \"RS_PREFLIGHT_TOKEN\"\n[state]\nurl = \"sqlite://state.db\"\n",
        scim.base_url
    );
    cfg += &sftp_connector("good", sshd.port, &auth, &format!("host_key = \"{}\"", sshd.fingerprint("ed25519")), &glob);
    // Someone else's fingerprint: the server must be refused, whatever else works.
    cfg += &sftp_connector("impostor", sshd.port, &auth, "host_key = \"SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s\"", &glob);
    let config = d.join("connectors.toml");
    std::fs::write(&config, &cfg).unwrap();

    let out = run(&config, &["check", "--online"], &[("RS_PREFLIGHT_TOKEN", &scim.token)]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(3), "the worst connector's exit (connection): {stdout}{stderr}");
    let line = |name: &str| {
        stdout.lines().find(|l| l.starts_with(&format!("{name} "))).unwrap_or_else(|| panic!("no line for {name}:\n{stdout}")).to_string()
    };
    let good = line("good");
    assert!(good.contains(" ok ") && good.contains("would take ") && good.contains("employees_2026-01-01.csv"), "{good}");
    assert!(good.contains("credentials accepted"), "{good}");
    let impostor = line("impostor");
    assert!(impostor.contains("FAILED (exit 3)") && impostor.contains("host key"), "{impostor}");
    // The mismatch's several lines stay lines, not `\n` escapes.
    assert!(!stdout.contains("\\n"), "a literal \\n in:\n{stdout}");
    assert!(!stdout.contains("a passphrase, from a file") && !stderr.contains("a passphrase, from a file"), "{stdout}{stderr}");

    // A token the platform refuses: every connector fails, with the platform's exit code.
    let out = run(&config, &["--json", "test", "--all"], &[("RS_PREFLIGHT_TOKEN", "not-the-token-1234")]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    assert_eq!(out.status.code(), Some(6), "{v}");
    assert_eq!(v["exit"], 6, "{v}");
    let online = v["online"].as_array().unwrap();
    assert_eq!(online.len(), 2, "{v}");
    for c in online {
        assert_eq!(c["platform"]["ok"], false, "{c}");
        assert!(c["platform"]["message"].as_str().unwrap().contains("RS_PREFLIGHT_TOKEN"), "{c}");
    }
    assert_eq!((online[0]["connector"].as_str(), online[0]["source"]["ok"].as_bool()), (Some("good"), Some(true)), "{v}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("not-the-token-1234"), "{v}");

    // The mapping against the real header: a column the file does not have is found before
    // the first run refuses the file; a customer whose mapping is not written yet is still
    // reached (source and platform are what a new set-up checks first).
    std::fs::write(d.join("wrong.toml"), MAPPING.replace("\"Last Name\"", "\"Surname\"")).unwrap();
    let mut cfg2 = format!(
        "[platform]\nkind = \"scim\"\nbase_url = \"{}\"\ntoken_env = \"RS_PREFLIGHT_TOKEN\"\n[state]\nurl = \"sqlite://state.db\"\n",
        scim.base_url
    );
    let host_key = format!("host_key = \"{}\"", sshd.fingerprint("ed25519"));
    cfg2 += &sftp_connector("good", sshd.port, &auth, &host_key, &glob);
    cfg2 += &sftp_connector("wrongmap", sshd.port, &auth, &host_key, &glob).replace("m.toml", "wrong.toml");
    cfg2 += &sftp_connector("newcust", sshd.port, &auth, &host_key, &glob).replace("m.toml", "mappings/newcust.toml");
    let config2 = d.join("connectors2.toml");
    std::fs::write(&config2, &cfg2).unwrap();
    let out = run(&config2, &["check", "--online"], &[("RS_PREFLIGHT_TOKEN", &scim.token)]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(4), "the mapped column missing from the file is a data error: {stdout}{stderr}");
    let line = |name: &str| {
        stdout.lines().find(|l| l.starts_with(&format!("{name} "))).unwrap_or_else(|| panic!("no line for {name}:\n{stdout}")).to_string()
    };
    let good = line("good");
    assert!(good.contains(" ok ") && good.contains("the mapping's 4 column(s) are in its header"), "{good}");
    let wrong = line("wrongmap");
    assert!(wrong.contains("FAILED (exit 4)") && wrong.contains("\"Surname\"") && wrong.contains("not in the header"), "{wrong}");
    let new = line("newcust");
    assert!(new.contains("FAILED (exit 2)") && new.contains("no mapping to read it with yet"), "{new}");
    assert!(new.contains("its header has 4 column(s)") && new.contains("rostersync mapping suggest"), "{new}");
    let out = run(&config2, &["--json", "check", "--online"], &[("RS_PREFLIGHT_TOKEN", &scim.token)]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    let newcust = v["online"].as_array().unwrap().iter().find(|c| c["connector"] == "newcust").expect("newcust reached").clone();
    assert_eq!((newcust["source"]["ok"].as_bool(), newcust["platform"]["ok"].as_bool()), (Some(true), Some(true)), "{newcust}");
    assert_eq!(newcust["columns"]["ok"], false, "{newcust}");
}

#[test]
fn a_token_file_syncs_end_to_end_and_the_secret_never_shows() {
    let scim = ScimServer::start();
    let p = Project::new(&scim, "");
    let cfg_path = p.path().join("connectors.toml");
    let cfg = std::fs::read_to_string(&cfg_path).unwrap().replace("token_env = \"PLATFORM_SCIM_TOKEN\"", "token_file = \"secrets/token\"");
    std::fs::write(&cfg_path, cfg).unwrap();
    std::fs::create_dir_all(p.path().join("secrets")).unwrap();
    // As `echo "$TOKEN" > secrets/token` writes it: the newline is not part of the token.
    std::fs::write(p.path().join("secrets/token"), format!("{}\n", scim.token)).unwrap();
    p.export("employees_2026-01-01.csv", &rows(3));

    let out = p.command(&["-vv", "--json", "sync", "acme"]).env_remove("PLATFORM_SCIM_TOKEN").output().unwrap();
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    let r: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(r["counts"]["created"], 3, "{r}");
    assert_eq!(scim.users().len(), 3);
    assert!(!stdout.contains(&scim.token) && !stderr.contains(&scim.token), "the token leaked:\n{stdout}\n{stderr}");

    // A missing file: check names the key and the path, the sync fails with exit 2.
    std::fs::remove_file(p.path().join("secrets/token")).unwrap();
    let out = p.command(&["check"]).env_remove("PLATFORM_SCIM_TOKEN").output().unwrap();
    let (stdout, _) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    assert!(
        stdout.contains("platform.token_file: file ") && stdout.contains("secrets/token (the platform's SCIM bearer token) does not exist"),
        "{stdout}"
    );
    p.export("employees_2026-01-02.csv", &rows(4));
    let out = p.command(&["sync", "acme"]).env_remove("PLATFORM_SCIM_TOKEN").output().unwrap();
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("secrets/token"), "{stderr}");

    // Both a variable and a file: refused, neither guessed.
    let both = std::fs::read_to_string(&cfg_path).unwrap().replace("token_file = ", "token_env = \"PLATFORM_SCIM_TOKEN\"\ntoken_file = ");
    std::fs::write(&cfg_path, both).unwrap();
    let out = p.run(&["check", "--no-environment"]);
    let (stdout, _) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    assert!(stdout.contains("platform.token_file: give either token_env or token_file, not both"), "{stdout}");
}

#[test]
fn the_daemon_logs_an_unset_token_at_start_and_healthz_names_the_connector() {
    let scim = ScimServer::start();
    let p = Project::new(&scim, "");
    let port = support::free_port();
    let cfg_path = p.path().join("connectors.toml");
    let cfg =
        std::fs::read_to_string(&cfg_path).unwrap().replace("[state]", &format!("[daemon]\nlisten = \"127.0.0.1:{port}\"\n\n[state]"));
    std::fs::write(&cfg_path, cfg).unwrap();
    let log = p.path().join("daemon.log");
    let mut child = p
        .command(&["daemon"])
        .env_remove("PLATFORM_SCIM_TOKEN")
        .env("RUST_LOG", "rostersync=info")
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("start the daemon");
    support::wait_for_port(port, Duration::from_secs(20), "the daemon's /healthz");
    let get = |path: &str| {
        let out =
            Command::new("curl").args(["-sS", "-w", "\n%{http_code}", &format!("http://127.0.0.1:{port}{path}")]).output().expect("curl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let health = get("/healthz");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !std::fs::read_to_string(&log).unwrap_or_default().contains("cannot run") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let logged = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let _ = child.wait();

    assert!(health.ends_with("\n503"), "the only connector cannot run: {health}");
    assert!(health.starts_with("unhealthy: 1 of 1 connector(s) cannot run: acme\n"), "{health}");
    assert!(health.contains("acme: platform.token_env: environment variable PLATFORM_SCIM_TOKEN"), "{health}");
    assert!(logged.contains("platform.token_env: environment variable PLATFORM_SCIM_TOKEN") && logged.contains("is not set"), "{logged}");
    assert!(logged.contains("connectors that cannot run: acme"), "{logged}");
}

#[test]
fn a_new_customer_is_fetched_before_its_mapping_exists_and_the_suggested_mapping_checks() {
    let sshd = Sshd::start();
    let key = sshd.client_key("ed25519", "");
    let export = sshd.data().join("employees_2026-01-01.csv");
    let mut csv = String::from(support::project::HEADER);
    for r in rows(3) {
        csv.push('\n');
        csv.push_str(&r);
    }
    std::fs::write(&export, csv + "\n").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut cfg = String::from(
        "[platform]\nkind = \"scim\"\nbase_url = \"http://127.0.0.1:1\"\ntoken_env = \"RS_PREFLIGHT_TOKEN\"\n[state]\nurl = \"sqlite://state.db\"\n",
    );
    cfg += &sftp_connector(
        "acme",
        sshd.port,
        &format!("auth = \"key\"\nprivate_key = \"{}\"", key.display()),
        &format!("host_key = \"{}\"", sshd.fingerprint("ed25519")),
        &format!("{}/employees_*.csv", sshd.data().display()),
    )
    .replace("mapping = \"m.toml\"", "mapping = \"mappings/acme.toml\"");
    let config = d.join("connectors.toml");
    std::fs::write(&config, cfg).unwrap();
    let env = [("RS_PREFLIGHT_TOKEN", "t0k3n")];

    let out = run(&config, &["check"], &env);
    let (stdout, _) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    assert!(stdout.contains("connectors.acme.mapping: cannot read mapping file"), "{stdout}");

    let out = run(&config, &["fetch", "acme", "--to", d.join("samples").to_str().unwrap()], &env);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "fetch works before the mapping exists: {stdout}{stderr}");
    let sample = d.join("samples/employees_2026-01-01.csv");
    assert_eq!(std::fs::read(&sample).unwrap(), std::fs::read(&export).unwrap());

    let out = run(&config, &["mapping", "suggest", sample.to_str().unwrap()], &env);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out).1);
    std::fs::create_dir_all(d.join("mappings")).unwrap();
    std::fs::write(d.join("mappings/acme.toml"), &out.stdout).unwrap();
    let out = run(&config, &["check"], &env);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out).0);
}
