//! What a packager ships, checked against the binary: `--version`, the completion
//! scripts, the committed man page (fresh), the systemd unit (`systemd-analyze verify`,
//! and its ExecReload really reloads a running daemon), the license files.

use crate::support;

use std::process::Command;
use std::time::Duration;

use support::daemon::{Daemon, connector, header};
use support::scim::ScimServer;

fn rostersync(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(support::rostersync_bin()).args(args).env("RUST_LOG", "off").output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// The path of `tool`, or None after saying why the check cannot run here; under CI=true a
/// missing tool fails the test (scripts/install-test-deps.sh installs it).
fn tool(name: &str, install: &str) -> Option<std::path::PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| std::env::split_paths(&paths).map(|d| d.join(name)).find(|p| p.is_file()));
    if found.is_none() {
        assert!(!under_ci(), "{name} is not installed; install it with: {install} (scripts/install-test-deps.sh does)");
        eprintln!("NOT CHECKED: {name} is not installed here ({install}); under CI=true this fails");
    }
    found
}

#[test]
fn version_names_the_version_commit_and_build_date() {
    let (code, out, err) = rostersync(&["--version"]);
    assert_eq!(code, 0, "{err}");
    let line = out.trim();
    let rest = line.strip_prefix(&format!("rostersync {} (commit ", env!("CARGO_PKG_VERSION"))).unwrap_or_else(|| panic!("{line}"));
    let (commit, rest) = rest.split_once(", built ").unwrap_or_else(|| panic!("{line}"));
    let date = rest.strip_suffix(')').unwrap_or_else(|| panic!("{line}"));
    assert!(chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").is_ok(), "build date {date:?} in {line}");
    // Built from this checkout: the commit is its HEAD (a build outside git says "unknown").
    let head = Command::new("git").args(["rev-parse", "--short=12", "HEAD"]).current_dir(support::repo_root()).output();
    match head {
        Ok(h) if h.status.success() => assert_eq!(commit, String::from_utf8_lossy(&h.stdout).trim(), "{line}"),
        _ => assert_eq!(commit, "unknown", "{line}"),
    }
}

#[test]
fn completions_for_bash_zsh_and_fish_name_every_command() {
    let commands = ["check", "keyscan", "test", "fetch", "sync", "daemon", "mapping", "history", "status", "completions", "man"];
    for shell in ["bash", "zsh", "fish"] {
        let (code, script, err) = rostersync(&["completions", shell]);
        assert_eq!(code, 0, "{shell}: {err}");
        for c in commands {
            assert!(script.contains(c), "the {shell} completions lack {c}:\n{script}");
        }
        assert!(script.contains("--log-format") || script.contains("log-format"), "{shell}: {script}");
    }
    // The bash script is valid bash.
    let (_, script, _) = rostersync(&["completions", "bash"]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rostersync.bash");
    std::fs::write(&path, &script).unwrap();
    let st = Command::new("bash").arg("-n").arg(&path).status().expect("bash");
    assert!(st.success(), "bash -n refused the completion script");
    let (code, _, err) = rostersync(&["completions", "tcsh"]);
    assert_eq!(code, 2, "an unknown shell is a usage error: {err}");
    assert!(err.contains("bash") && err.contains("fish"), "the error lists the shells: {err}");
}

#[test]
fn the_committed_man_page_is_the_generated_one_and_renders_cleanly() {
    let (code, page, err) = rostersync(&["man"]);
    assert_eq!(code, 0, "{err}");
    let committed_path = support::repo_root().join("packaging/rostersync.1");
    let committed = std::fs::read_to_string(&committed_path).unwrap_or_default();
    assert!(
        committed == page,
        "packaging/rostersync.1 is stale: regenerate it with `cargo run -- man > packaging/rostersync.1` and commit it"
    );
    assert!(page.starts_with(".ie") && page.contains(".TH rostersync 1"), "{page}");
    for section in ["ROSTERSYNC SYNC", "ROSTERSYNC DAEMON", "ROSTERSYNC COMPLETIONS", "SUBCOMMANDS", "VERSION"] {
        assert!(page.contains(&format!(".SH \"{section}\"")) || page.contains(&format!(".SH {section}")), "no {section} section");
    }
    assert!(page.contains("\\-\\-allow\\-mass\\-change"), "a command's own options are on the page");
    if let Some(groff) = tool("groff", "apt-get install groff-base") {
        let out = Command::new(groff).args(["-K", "utf8", "-man", "-Tutf8", "-ww", "-z"]).arg(&committed_path).output().unwrap();
        assert!(out.status.success() && out.stderr.is_empty(), "groff warns about the man page: {}", String::from_utf8_lossy(&out.stderr));
    }
}

fn unit() -> String {
    std::fs::read_to_string(support::repo_root().join("packaging/rostersync.service")).expect("packaging/rostersync.service")
}

/// The value of every `key=` line of the unit (comments skipped).
fn directive<'a>(unit: &'a str, key: &str) -> Vec<&'a str> {
    unit.lines().filter(|l| !l.starts_with('#')).filter_map(|l| l.strip_prefix(key)?.strip_prefix('=')).collect()
}

#[test]
fn the_systemd_unit_verifies_and_is_hardened() {
    let u = unit();
    for (key, want) in [
        ("User", "rostersync"),
        ("StateDirectory", "rostersync"),
        ("ProtectSystem", "strict"),
        ("NoNewPrivileges", "yes"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("ExecReload", "/bin/kill -HUP $MAINPID"),
    ] {
        assert_eq!(directive(&u, key), vec![want], "{key}= in packaging/rostersync.service");
    }
    assert!(directive(&u, "ExecStart").iter().all(|e| e.ends_with(" daemon")), "ExecStart runs the daemon");
    assert!(u.contains("LoadCredential=scim-token:"), "the unit shows how secrets come in as systemd credentials");
    let sysusers = std::fs::read_to_string(support::repo_root().join("packaging/rostersync.sysusers")).unwrap();
    assert!(sysusers.lines().any(|l| l.starts_with("u rostersync ")), "{sysusers}");

    let Some(analyze) = tool("systemd-analyze", "apt-get install systemd") else { return };
    // Verified as installed, with ExecStart pointing at this build (verify checks that the
    // command exists and is executable). --man=no: the man page is not installed here.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rostersync.service");
    std::fs::write(&path, u.replace("/usr/bin/rostersync", support::rostersync_bin().to_str().unwrap())).unwrap();
    let out = Command::new(&analyze).args(["verify", "--man=no"]).arg(&path).output().unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "systemd-analyze verify: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The same check on a unit with a typo fails, so the one above proves something.
    std::fs::write(
        &path,
        u.replace("/usr/bin/rostersync", support::rostersync_bin().to_str().unwrap()).replace("ProtectSystem=", "ProtectSistem="),
    )
    .unwrap();
    let out = Command::new(&analyze).args(["verify", "--man=no"]).arg(&path).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("ProtectSistem"), "verify did not see the typo");
}

#[test]
fn the_units_exec_reload_reloads_a_running_daemon() {
    let scim = ScimServer::start();
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let base = header(&scim, dir.path(), port);
    let first = connector(dir.path(), "first", "First", "daily 02:00", "UTC");
    let second = connector(dir.path(), "second", "Second", "daily 03:00", "UTC");
    let d = Daemon::start(&format!("{base}{first}"), dir, port, &scim, &[]);
    std::fs::write(d.config_path(), format!("{base}{first}{second}")).unwrap();
    // Exactly what systemd runs for `systemctl reload`, with $MAINPID the daemon's pid.
    let reload = directive(&unit(), "ExecReload")[0].replace("$MAINPID", &d.pid().to_string());
    let mut words = reload.split_whitespace();
    let st = Command::new(words.next().unwrap()).args(words).status().unwrap();
    assert!(st.success(), "{reload}");
    d.wait_log("the reload", Duration::from_secs(30), |l| l.contains("configuration reloaded: added [second]"));
    let (_, metrics) = d.get("/metrics");
    assert!(metrics.contains("rostersync_config_reloads_total{result=\"ok\"} 1"), "{metrics}");
    assert!(metrics.contains("rostersync_last_success_timestamp_seconds{connector=\"second\"}"), "{metrics}");
}

#[test]
fn the_license_files_match_cargo_toml() {
    let root = support::repo_root();
    let cargo = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    assert!(cargo.contains("\nlicense = \"MIT OR Apache-2.0\"\n"), "Cargo.toml's license field");
    let license = std::fs::read_to_string(root.join("LICENSE")).unwrap();
    assert!(license.contains("MIT OR Apache-2.0") && license.contains("LICENSE-APACHE") && license.contains("LICENSE-MIT"), "{license}");
    assert!(std::fs::read_to_string(root.join("LICENSE-MIT")).unwrap().starts_with("MIT License"));
    assert!(
        std::fs::read_to_string(root.join("LICENSE-APACHE")).unwrap().contains("Apache License\n                           Version 2.0")
    );
    let changelog = std::fs::read_to_string(root.join("CHANGELOG.md")).unwrap();
    assert!(changelog.contains(&format!("## {}", env!("CARGO_PKG_VERSION"))), "CHANGELOG.md has a section for this version");
}

/// Runs scripts/package.sh on the test build; the paths of the .deb and the archive.
fn package(out: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let run = Command::new("bash")
        .arg(support::repo_root().join("scripts/package.sh"))
        .arg(support::rostersync_bin())
        .arg(out)
        .env("DEB_COMPRESSION", "gzip")
        .output()
        .unwrap();
    assert!(run.status.success(), "scripts/package.sh failed: {}", String::from_utf8_lossy(&run.stderr));
    let printed = String::from_utf8_lossy(&run.stdout).into_owned();
    let mut lines = printed.lines().map(std::path::PathBuf::from);
    let (deb, tar) = (lines.next().expect("the .deb's path"), lines.next().expect("the archive's path"));
    assert!(deb.is_file() && tar.is_file(), "{printed}");
    (deb, tar)
}

fn output(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The Debian package installs the binary, the unit, the sysusers file, the man page and the
/// completions where Debian looks for them, each the same as what the repository ships and the
/// binary prints; its control file names the package, version and dependencies.
#[test]
fn the_debian_package_holds_the_binary_unit_sysusers_man_page_and_completions() {
    let Some(_) = tool("dpkg-deb", "apt-get install dpkg") else { return };
    let dir = tempfile::tempdir().unwrap();
    let (deb, _) = package(dir.path());
    let name = deb.file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.starts_with(&format!("rostersync_{}_", env!("CARGO_PKG_VERSION"))) && name.ends_with(".deb"), "{name}");
    let field = |f: &str| output(Command::new("dpkg-deb").args(["-f"]).arg(&deb).arg(f)).trim().to_string();
    assert_eq!(field("Package"), "rostersync");
    assert_eq!(field("Version"), env!("CARGO_PKG_VERSION"));
    assert!(field("Depends").contains("libssl3"), "{}", field("Depends"));

    let root = dir.path().join("root");
    output(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root));
    let installed = root.join("usr/bin/rostersync");
    let version = output(Command::new(&installed).arg("--version"));
    assert!(version.starts_with(&format!("rostersync {}", env!("CARGO_PKG_VERSION"))), "{version}");
    let repo = support::repo_root();
    let same = |installed: &str, shipped: &str| {
        let a = std::fs::read(root.join(installed)).unwrap_or_else(|e| panic!("{installed}: {e}"));
        let b = std::fs::read(repo.join(shipped)).unwrap();
        assert!(a == b, "{installed} differs from {shipped}");
    };
    same("usr/lib/systemd/system/rostersync.service", "packaging/rostersync.service");
    same("usr/lib/sysusers.d/rostersync.conf", "packaging/rostersync.sysusers");
    let man = output(Command::new("gzip").arg("-dc").arg(root.join("usr/share/man/man1/rostersync.1.gz")));
    assert_eq!(man, std::fs::read_to_string(repo.join("packaging/rostersync.1")).unwrap(), "the packaged man page");
    for (path, shell) in [
        ("usr/share/bash-completion/completions/rostersync", "bash"),
        ("usr/share/zsh/vendor-completions/_rostersync", "zsh"),
        ("usr/share/fish/vendor_completions.d/rostersync.fish", "fish"),
    ] {
        let (_, printed, _) = rostersync(&["completions", shell]);
        assert_eq!(std::fs::read_to_string(root.join(path)).unwrap(), printed, "{path}");
    }
    assert!(root.join("usr/share/doc/rostersync/copyright").is_file());
    assert!(root.join("usr/share/doc/rostersync/docs/troubleshooting.md").is_file());
    // The maintainer script makes the service user and does not start anything.
    let postinst = output(Command::new("dpkg-deb").arg("-I").arg(&deb).arg("postinst"));
    assert!(postinst.contains("systemd-sysusers rostersync.conf"), "{postinst}");
    assert!(!postinst.contains("systemctl enable") && !postinst.contains("systemctl start"), "{postinst}");
}

/// The release archive: one folder with the binary, licenses, docs, packaging files and
/// completions, and a binary that runs.
#[test]
fn the_release_archive_holds_one_folder_with_the_binary_docs_and_packaging() {
    let Some(_) = tool("dpkg-deb", "apt-get install dpkg") else { return };
    let dir = tempfile::tempdir().unwrap();
    let (_, tar) = package(dir.path());
    let top = format!("rostersync-{}-{}-linux", env!("CARGO_PKG_VERSION"), std::env::consts::ARCH);
    let listing = output(Command::new("tar").arg("tzf").arg(&tar));
    for f in [
        "rostersync",
        "LICENSE-MIT",
        "LICENSE-APACHE",
        "README.md",
        "CONFIG.md",
        "docs/operations.md",
        "packaging/rostersync.service",
        "packaging/rostersync.1",
        "completions/rostersync.bash",
        "examples/connectors.toml",
    ] {
        assert!(listing.lines().any(|l| l == format!("{top}/{f}")), "{f} missing from the archive:\n{listing}");
    }
    assert!(listing.lines().all(|l| l.starts_with(&format!("{top}/"))), "{listing}");
    output(Command::new("tar").arg("xzf").arg(&tar).arg("-C").arg(dir.path()));
    let version = output(Command::new(dir.path().join(&top).join("rostersync")).arg("--version"));
    assert!(version.starts_with("rostersync "), "{version}");
}
