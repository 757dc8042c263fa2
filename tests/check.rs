//! `rostersync check`: every problem in one run, each located, exit 2.

use crate::support;

use std::process::Command;

#[test]
fn check_names_all_six_mistakes_with_file_line_and_key() {
    let cfg = support::repo_root().join("tests/fixtures/bad_config/connectors.toml");
    let out = Command::new(support::rostersync_bin()).args(["--config", cfg.to_str().unwrap(), "check"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    for expected in [
        "connectors.toml:3: platform.base_url: expected a URL",
        "connectors.toml:8: connectors.acme.schedule: time out of range",
        "connectors.toml:13: connectors.acme.sftp.port: expected a port from 1 to 65535; got 70000",
        "connectors.toml:15: connectors.acme.sftp.auth: expected \"key\", \"password\" or \"keyboard-interactive\"; got \"certificate\"",
        "connectors.toml:20: connectors.acme.file.pickk: unknown key — did you mean `pick`?",
        "connectors.toml:23: connectors.globex.mapping: cannot read mapping file",
    ] {
        assert!(stdout.contains(expected), "missing «{expected}» in:\n{stdout}");
    }
    assert!(stdout.starts_with("6 problem(s):"), "{stdout}");
}

/// Several typos in one connector and in the platform: one `check` names each of them
/// (serde stops at a table's first unknown key; the checker reads on past it).
#[test]
fn check_names_every_typo_of_every_table_in_one_pass() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("mappings")).unwrap();
    std::fs::copy(support::repo_root().join("mappings/demo.toml"), dir.path().join("mappings/demo.toml")).unwrap();
    std::fs::create_dir_all(dir.path().join("in")).unwrap();
    let cfg = dir.path().join("connectors.toml");
    std::fs::write(
        &cfg,
        "[platform]\nkind = \"scim\"\nbase_url = \"http://127.0.0.1:9/scim\"\ntoken_env = \"PLATFORM_SCIM_TOKEN\"\nmax_concurency = 4\ntimout = \"5s\"\n\n\
         [connectors.demo]\nshedule = \"daily 02:00\"\ntimezone = \"Europe/Paris\"\nmapping = \"mappings/demo.toml\"\ncustommer = \"Demo\"\n\n\
         [connectors.demo.local]\ndir = \"in\"\n\n\
         [connectors.demo.file]\npath = \"employees_*.csv\"\nafter = \"move /x\"\n\n\
         [connectors.demo.sync]\nmax_deactivation = \"10%\"\n",
    )
    .unwrap();
    let out = Command::new(support::rostersync_bin())
        .args(["--config", cfg.to_str().unwrap(), "check"])
        .env("PLATFORM_SCIM_TOKEN", "t")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    for expected in [
        "connectors.toml:5: platform.max_concurency: unknown key — did you mean `max_concurrency`?",
        "connectors.toml:6: platform.timout: unknown key — did you mean `timeout`?",
        "connectors.toml:9: connectors.demo.shedule: unknown key — did you mean `schedule`?",
        "connectors.toml:12: connectors.demo.custommer: unknown key — did you mean `customer`?",
        "connectors.toml:19: connectors.demo.file.after: expected \"keep\", \"delete\" or \"move:/folder/\"; got \"move /x\"",
        "connectors.toml:22: connectors.demo.sync.max_deactivation: unknown key — did you mean `max_deactivations`?",
    ] {
        assert!(stdout.contains(expected), "missing «{expected}» in:\n{stdout}");
    }
    assert!(stdout.starts_with("6 problem(s):"), "exactly the six mistakes, nothing they caused:\n{stdout}");
    // A platform with an unknown key is refused like one with a bad value: nothing runs on it.
    let out = Command::new(support::rostersync_bin())
        .args(["--config", cfg.to_str().unwrap(), "sync", "demo", "--dry-run"])
        .env("PLATFORM_SCIM_TOKEN", "t")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn check_json_lists_problems_and_the_bundled_config_is_valid() {
    let cfg = support::repo_root().join("tests/fixtures/bad_config/connectors.toml");
    let out = Command::new(support::rostersync_bin()).args(["--config", cfg.to_str().unwrap(), "--json", "check"]).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object on stdout");
    assert_eq!(v["ok"], false);
    assert_eq!(v["problems"].as_array().unwrap().len(), 6);
    assert_eq!(v["problems"][2]["line"], 13);

    let good = support::repo_root().join("connectors.toml");
    // `check` also checks the environment: the token variable the bundled file names is set.
    let out = Command::new(support::rostersync_bin())
        .args(["--config", good.to_str().unwrap(), "check"])
        .env("PLATFORM_SCIM_TOKEN", "demo-token")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
}

#[test]
fn mapping_problems_point_into_the_mapping_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("mappings")).unwrap();
    std::fs::write(
        dir.path().join("connectors.toml"),
        "[platform]\nkind = \"scim\"\nbase_url = \"http://127.0.0.1:1\"\ntoken_env = \"T\"\n\n[connectors.a]\nmapping = \"mappings/a.toml\"\n[connectors.a.local]\ndir = \".\"\n[connectors.a.file]\npath = \"x.csv\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("mappings/a.toml"),
        "unique_id = \"badge\"\n[fields]\nfirst_name = \"First\"\nlast_name = { column = \"Last\", transform = [\"shout\"] }\nnickname = \"Nick\"\n",
    )
    .unwrap();
    let out = Command::new(support::rostersync_bin())
        .args(["--config", dir.path().join("connectors.toml").to_str().unwrap(), "check"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    assert!(stdout.contains("a.toml:1: unique_id: expected \"employee_id\" or \"email\"; got \"badge\""), "{stdout}");
    assert!(stdout.contains("a.toml:4: fields.last_name.transform: unknown transform \"shout\""), "{stdout}");
    assert!(stdout.contains("a.toml:5: fields.nickname: unknown platform field"), "{stdout}");
}

/// The CLI's finish: the config from ROSTERSYNC_CONFIG, `history` of an unknown connector
/// exits 2, `status` shows times in the connector's timezone, `keyscan --json` is JSON.
#[test]
fn rostersync_config_history_status_and_keyscan_json() {
    let scim = support::scim::ScimServer::start();
    let p = support::project::Project::new(&scim, "");
    let cfg_path = p.path().join("connectors.toml");
    let cfg = std::fs::read_to_string(&cfg_path)
        .unwrap()
        .replace("[connectors.acme]\n", "[connectors.acme]\nschedule = \"daily 02:00\"\ntimezone = \"Asia/Tokyo\"\n");
    std::fs::write(&cfg_path, cfg).unwrap();
    p.export("employees_2026-01-01.csv", &support::project::rows(2));
    let (code, r) = p.sync_json(&[]);
    assert_eq!(code, 0, "{r}");

    // No --config: the variable names the file.
    let bare = |args: &[&str]| {
        Command::new(support::rostersync_bin())
            .args(args)
            .current_dir(std::env::temp_dir())
            .env("ROSTERSYNC_CONFIG", &cfg_path)
            .env("PLATFORM_SCIM_TOKEN", &p.token)
            .output()
            .unwrap()
    };
    let out = bare(&["status"]);
    let s = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{s}{}", String::from_utf8_lossy(&out.stderr));
    let line = s.lines().find(|l| l.starts_with("acme ")).unwrap_or_else(|| panic!("{s}"));
    // The next run is 02:00 in Tokyo, said so; the last run is in the same zone.
    assert!(line.contains(" 02:00 JST") && line.matches(" JST").count() == 2, "{s}");
    let out = bare(&["--json", "status"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["connectors"][0]["timezone"], "Asia/Tokyo", "{v}");

    let out = bare(&["history", "acmee"]);
    let e = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{e}");
    assert!(e.contains("no connector named \"acmee\"") && e.contains("known: acme"), "{e}");
    assert_eq!(bare(&["history", "acme"]).status.code(), Some(0));

    let sshd = support::sshd::Sshd::start();
    let out = bare(&["--json", "keyscan", &format!("127.0.0.1:{}", sshd.port)]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("keyscan --json prints JSON");
    assert_eq!(out.status.code(), Some(0), "{v}");
    assert_eq!(v["host_key"], sshd.fingerprint("ed25519"), "{v}");
    assert_eq!((v["keys"][0]["type"].as_str(), v["port"].as_u64()), (Some("ssh-ed25519"), Some(sshd.port as u64)), "{v}");
    let out = bare(&["--json", "keyscan", "h:0"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("an error is JSON too");
    assert_eq!((out.status.code(), v["exit"].as_i64()), (Some(2), Some(2)), "{v}");
}

/// A `[state]` that `check` refuses stops every command that needs the store (exit 2),
/// whatever the reason, and no SQLite file is created in its place.
#[test]
fn a_refused_state_url_stops_sync_status_and_history_without_a_sqlite_fallback() {
    for state in [
        "url = \"mysql://db.example/rostersync\"",
        "url = \"postgres://rs@db.example/rs?password=not-here-1\"",
        "url = \"sqlite://state/x.db\"\nlease_ttl = \"1ms\"",
    ] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("exports")).unwrap();
        std::fs::copy(support::repo_root().join("mappings/demo.toml"), dir.path().join("demo.toml")).unwrap();
        let cfg = dir.path().join("connectors.toml");
        std::fs::write(
            &cfg,
            format!(
                "[platform]\nkind = \"scim\"\nbase_url = \"http://127.0.0.1:9\"\ntoken_env = \"T\"\n\n[state]\n{state}\n\n\
                 [connectors.acme]\nmapping = \"demo.toml\"\n[connectors.acme.local]\ndir = \"exports\"\n[connectors.acme.file]\npath = \"e.csv\"\n"
            ),
        )
        .unwrap();
        for args in [&["sync", "acme"][..], &["sync", "--all"], &["status"], &["history"], &["--json", "history"]] {
            let out = Command::new(support::rostersync_bin()).arg("--config").arg(&cfg).args(args).env("T", "tok-1234").output().unwrap();
            let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
            assert_eq!(out.status.code(), Some(2), "{state} / {args:?}: {all}");
            assert!(!all.contains("not-here-1"), "{all}");
        }
        let files: Vec<_> = walk(dir.path()).into_iter().filter(|p| p.to_string_lossy().contains(".db")).collect();
        assert!(files.is_empty(), "{state}: a store was created in place of the refused one: {files:?}");
        assert!(!dir.path().join("state").exists(), "{state}");
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .flat_map(|e| if e.path().is_dir() { walk(&e.path()) } else { vec![e.path()] })
        .collect()
}
