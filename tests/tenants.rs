//! Many customers, many tenants (issue 23): each connector pushes to its own platform
//! target. Two real scim2-server instances with different tokens, and two organisations
//! under path prefixes of one host (`tests/support/tenant_router.rs`, each a real
//! scim2-server behind its prefix). Three customers number their people alike (E0000001 …)
//! for different people: each organisation ends with exactly its customer's people.

use crate::support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::fault_proxy::{Fault, FaultProxy};
use support::project::HEADER;
use support::scim::{ScimServer, TOKEN};
use support::tenant_router::TenantRouter;

const GLOBEX_TOKEN: &str = "token-of-globex-organisation";

/// One customer's export: the same ids as every other customer's, its own people.
fn export(dir: &Path, customer: &str, people: &[(u32, &str, &str)]) {
    std::fs::create_dir_all(dir).unwrap();
    let mut s = format!("{HEADER}\n");
    for (id, first, last) in people {
        let email = format!("{}.{}@{customer}.example", first.to_lowercase(), last.to_lowercase());
        s.push_str(&format!("E{id:07},{first},{last},{email},en,Yes,Sales,Clerk,,Paris,2021-03-04,CC-1\n"));
    }
    std::fs::write(dir.join("employees_1.csv"), s).unwrap();
}

fn people(customer: &str) -> Vec<(u32, &'static str, &'static str)> {
    match customer {
        "acme" => vec![(1, "Ada", "Lovelace"), (2, "Alan", "Turing"), (3, "Grace", "Hopper")],
        "initech" => vec![(1, "Peter", "Gibbons"), (2, "Milton", "Waddams"), (3, "Joanna", "Smith")],
        _ => vec![(1, "Hank", "Scorpio"), (2, "Homer", "Simpson"), (3, "Frank", "Grimes")],
    }
}

/// A connector on its own exports folder, with `platform` its own platform keys (none: the
/// default `[platform]`).
fn connector(dir: &Path, name: &str, platform: &str, schedule: &str) -> String {
    let exports = dir.join(format!("exports-{name}"));
    let mapping = support::repo_root().join("mappings/demo.toml");
    let own = if platform.is_empty() { String::new() } else { format!("[connectors.{name}.platform]\n{platform}\n") };
    format!(
        "\n[connectors.{name}]\n{schedule}mapping = \"{}\"\n[connectors.{name}.local]\ndir = \"{}\"\n[connectors.{name}.file]\npath = \"employees_*.csv\"\n[connectors.{name}.sync]\nmax_deactivations = \"100%\"\n{own}",
        mapping.display(),
        exports.display()
    )
}

/// The emails on a server, sorted.
fn emails(s: &ScimServer) -> Vec<String> {
    let mut v: Vec<String> = s.users().iter().filter_map(|u| u["userName"].as_str().map(str::to_lowercase)).collect();
    v.sort();
    v
}

fn expected(customer: &str) -> Vec<String> {
    let mut v: Vec<String> =
        people(customer).iter().map(|(_, f, l)| format!("{}.{}@{customer}.example", f.to_lowercase(), l.to_lowercase())).collect();
    v.sort();
    v
}

struct Tenants {
    acme: ScimServer,
    initech: ScimServer,
    globex: ScimServer,
    router: TenantRouter,
}

impl Tenants {
    fn start() -> Tenants {
        let (acme, initech) = (ScimServer::start(), ScimServer::start());
        let globex = ScimServer::start_with_token(GLOBEX_TOKEN);
        let router = TenantRouter::start(&[("/scim/v2/org/acme", acme.port), ("/scim/v2/org/initech", initech.port)]);
        Tenants { acme, initech, globex, router }
    }

    /// `[platform]` is acme's organisation; initech overrides the path only (the same
    /// token variable, another organisation), globex the URL and the token.
    fn config(&self, dir: &Path, schedule: &str, extra: &str) -> String {
        let mut cfg = format!(
            "[platform]\nkind = \"scim\"\nbase_url = \"{}\"\ntoken_env = \"PLATFORM_SCIM_TOKEN\"\nname = \"acme-org\"\n\n[state]\nurl = \"sqlite://{}\"\n{extra}",
            self.router.url("/scim/v2/org/acme"),
            dir.join("state.db").display()
        );
        cfg.push_str(&connector(dir, "acme", "", schedule));
        cfg.push_str(&connector(dir, "initech", &format!("base_url = \"{}\"", self.router.url("/scim/v2/org/initech")), schedule));
        cfg.push_str(&connector(
            dir,
            "globex",
            &format!("base_url = \"{}\"\ntoken_env = \"GLOBEX_TOKEN\"\nname = \"globex-org\"", self.globex.base_url),
            schedule,
        ));
        for c in ["acme", "initech", "globex"] {
            export(&dir.join(format!("exports-{c}")), c, &people(c));
        }
        cfg
    }
}

fn rostersync(dir: &Path, args: &[&str]) -> (i32, Value, String) {
    let out = Command::new(support::rostersync_bin())
        .arg("--config")
        .arg(dir.join("connectors.toml"))
        .args(args)
        .env("PLATFORM_SCIM_TOKEN", TOKEN)
        .env("GLOBEX_TOKEN", GLOBEX_TOKEN)
        .output()
        .expect("run rostersync");
    // What a person reads: the standard output, then the errors.
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let v = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out.status.code().unwrap_or(-1), v, text)
}

#[test]
fn three_customers_with_the_same_ids_each_get_exactly_their_own_people() {
    let t = Tenants::start();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("connectors.toml"), t.config(dir.path(), "", "")).unwrap();
    let (code, _, err) = rostersync(dir.path(), &["check"]);
    assert_eq!(code, 0, "{err}");

    for c in ["acme", "initech", "globex"] {
        let (code, r, err) = rostersync(dir.path(), &["--json", "sync", c]);
        assert_eq!(code, 0, "{c}: {r}\n{err}");
        assert_eq!((r["counts"]["created"].as_u64(), r["counts"]["conflicts"].as_u64()), (Some(3), Some(0)), "{c}: {r}");
    }
    // On the servers: each organisation holds its customer's people, no one else's.
    assert_eq!(emails(&t.acme), expected("acme"));
    assert_eq!(emails(&t.initech), expected("initech"));
    assert_eq!(emails(&t.globex), expected("globex"));

    // Each report, status and history name the target.
    let (_, status, _) = rostersync(dir.path(), &["--json", "status"]);
    let targets: Vec<(String, String)> = status["connectors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["connector"].as_str().unwrap().into(), c["target"].as_str().unwrap_or("").into()))
        .collect();
    let initech_name = format!("127.0.0.1:{}/scim/v2/org/initech", t.router.port);
    assert_eq!(
        targets,
        vec![("acme".into(), "acme-org".into()), ("globex".into(), "globex-org".into()), ("initech".into(), initech_name.clone())]
    );
    let (_, history, _) = rostersync(dir.path(), &["--json", "history", "initech"]);
    assert_eq!(history[0]["target"], Value::from(initech_name), "{history}");

    // Day 2: acme's file changes one person; only acme's organisation changes.
    let (initech_before, globex_before) = (t.initech.users(), t.globex.users());
    let mut day2 = people("acme");
    day2[0] = (1, "Ada", "King");
    export(&dir.path().join("exports-acme"), "acme", &day2);
    let (code, r, err) = rostersync(dir.path(), &["--json", "sync", "acme"]);
    assert_eq!(code, 0, "{r}\n{err}");
    assert_eq!(r["counts"]["updated"].as_u64(), Some(1), "{r}");
    let ada = t.acme.users().into_iter().find(|u| u["externalId"] == "E0000001").unwrap();
    assert_eq!(ada["name"]["familyName"], "King", "{ada}");
    assert_eq!(t.initech.users(), initech_before, "initech's organisation is untouched");
    assert_eq!(t.globex.users(), globex_before, "globex's organisation is untouched");
    for c in ["initech", "globex"] {
        let (code, r, err) = rostersync(dir.path(), &["--json", "sync", c, "--force"]);
        assert_eq!(code, 0, "{c}: {r}\n{err}");
        assert_eq!(r["counts"]["conflicts"].as_u64(), Some(0), "{c}: {r}");
        assert_eq!(r["counts"]["unchanged"].as_u64(), Some(3), "{c}: {r}");
    }
}

/// The same two customers on ONE organisation (no target of its own): the ids collide, and
/// the conflict says so without advising adopt_from (which would hand acme's accounts to
/// initech's people).
#[test]
fn on_one_target_colliding_ids_are_conflicts_that_never_advise_adopt_from() {
    let t = Tenants::start();
    let dir = tempfile::tempdir().unwrap();
    let cfg = t
        .config(dir.path(), "", "")
        .replace(&format!("[connectors.initech.platform]\nbase_url = \"{}\"\n", t.router.url("/scim/v2/org/initech")), "");
    std::fs::write(dir.path().join("connectors.toml"), cfg).unwrap();
    let (code, r, err) = rostersync(dir.path(), &["--json", "sync", "acme"]);
    assert_eq!(code, 0, "{r}\n{err}");
    let (_, r, err) = rostersync(dir.path(), &["--json", "sync", "initech"]);
    assert_eq!(r["counts"]["created"].as_u64(), Some(0), "{r}\n{err}");
    assert_eq!(r["counts"]["conflicts"].as_u64(), Some(3), "{r}\n{err}");
    for e in r["errors"].as_array().unwrap() {
        let m = e["message"].as_str().unwrap();
        assert!(!m.contains("adopt_from = ["), "{m}");
        assert!(m.contains("collide") && m.contains("[connectors.initech.platform]"), "{m}");
    }
    assert_eq!(emails(&t.acme), expected("acme"), "acme's accounts stay acme's people");
}

/// The daemon runs every target's connectors together; a target answering 429 to
/// everything (two connectors on it) holds at most its share of the run slots, so the
/// other targets' runs are not delayed by it.
#[test]
fn the_daemon_runs_the_targets_together_and_a_429_storm_delays_only_its_own() {
    let t = Tenants::start();
    let storm_server = ScimServer::start();
    let storm = FaultProxy::start(storm_server.port, |_, _, _| Fault::TooMany("3".into()));
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let daemon = format!("\n[daemon]\nlisten = \"127.0.0.1:{port}\"\nmax_concurrent_runs = 2\ngrace = \"5s\"\n");
    let schedule = "schedule = \"daily 02:00\"\n";
    let mut cfg = t.config(dir.path(), schedule, &daemon);
    for c in ["a_storm1", "a_storm2"] {
        cfg.push_str(&connector(dir.path(), c, &format!("base_url = \"{}\"\nname = \"storm\"", storm.base_url), schedule));
        export(&dir.path().join(format!("exports-{c}")), c, &people(c));
    }
    let started = Instant::now();
    let d = support::daemon::Daemon::start_env(&cfg, dir, port, &[("PLATFORM_SCIM_TOKEN", TOKEN), ("GLOBEX_TOKEN", GLOBEX_TOKEN)], &[]);
    let ok = |text: &str, target: &str| text.contains(&format!("rostersync_target_runs_total{{target=\"{target}\",outcome=\"ok\"}} 1"));
    let initech = format!("127.0.0.1:{}/scim/v2/org/initech", t.router.port);
    let mut metrics = String::new();
    while started.elapsed() < Duration::from_secs(60) {
        metrics = d.get("/metrics").1;
        if ok(&metrics, "acme-org") && ok(&metrics, "globex-org") && ok(&metrics, &initech) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let took = started.elapsed();
    assert!(ok(&metrics, "acme-org") && ok(&metrics, "globex-org") && ok(&metrics, &initech), "{metrics}\n{}", d.log());
    // A storm run waits 5 × 3 s (Retry-After) before it gives up: 15 s in one slot. Were
    // both storm connectors (named to be scheduled first) to hold both slots, the others
    // would start after that: measured at 16 s with each target's share set to every slot,
    // about 1 s with the share.
    eprintln!("the three healthy targets synced {took:?} after the daemon started");
    assert!(took < Duration::from_secs(13), "the other targets waited for the storm: {took:?}\n{}", d.log());
    assert!(storm.faults() > 0, "the storm happened");
    assert!(!ok(&metrics, "storm"), "{metrics}");
    assert!(metrics.contains("rostersync_connector_target{connector=\"a_storm2\",target=\"storm\"} 1"), "{metrics}");
    assert_eq!(emails(&t.acme), expected("acme"));
    assert_eq!(emails(&t.initech), expected("initech"));
    assert_eq!(emails(&t.globex), expected("globex"));
    assert!(storm_server.users().is_empty());
    // The status page names each connector's target.
    let (_, page) = d.get("/");
    assert!(page.contains("<td class=\"target\">globex-org</td>"), "{page}");
}

/// `check --online` reaches each distinct target once, however many connectors send to it,
/// and a connector's own table is checked like `[platform]`, refusing that connector only.
#[test]
fn check_online_reaches_each_target_once_and_refuses_only_the_connector_whose_table_is_wrong() {
    let t = Tenants::start();
    let counted = FaultProxy::start(t.globex.port, |_, _, _| Fault::Pass);
    let dir = tempfile::tempdir().unwrap();
    let globex = format!("base_url = \"{}\"\ntoken_env = \"GLOBEX_TOKEN\"\nname = \"globex-org\"", t.globex.base_url);
    let mut cfg = t.config(dir.path(), "", "").replace(&globex, &globex.replace(&t.globex.base_url, &counted.base_url));
    cfg.push_str(&connector(dir.path(), "globex2", &format!("base_url = \"{}\"\ntoken_env = \"GLOBEX_TOKEN\"", counted.base_url), ""));
    export(&dir.path().join("exports-globex2"), "globex", &people("globex"));
    std::fs::write(dir.path().join("connectors.toml"), &cfg).unwrap();
    let (code, r, err) = rostersync(dir.path(), &["--json", "check", "--online"]);
    assert_eq!(code, 0, "{r}\n{err}");
    let discovered = counted.seen().iter().filter(|s| s.path.ends_with("/ServiceProviderConfig")).count();
    assert_eq!(discovered, 1, "two connectors, one target, reached once: {:?}", counted.seen());

    cfg.push_str(&connector(dir.path(), "typo", "base_urll = \"https://x.example\"", ""));
    export(&dir.path().join("exports-typo"), "typo", &people("typo"));
    std::fs::write(dir.path().join("connectors.toml"), &cfg).unwrap();
    let (code, _, err) = rostersync(dir.path(), &["check", "--no-environment"]);
    assert_ne!(code, 0);
    assert!(err.contains("connectors.typo.platform.base_urll: unknown key — did you mean `base_url`?"), "{err}");
    assert!(!err.contains("connectors.acme") && !err.contains("connectors.globex"), "the others are fine: {err}");
    let (code, r, err) = rostersync(dir.path(), &["--json", "sync", "acme"]);
    assert_eq!(code, 0, "a refused connector stops only itself: {r}\n{err}");
}
