//! A fleet: several `rostersync daemon` processes (the real binary) on one real PostgreSQL
//! state store, a real scim2-server, local exports on seconds-level schedules. Workers are
//! SIGKILLed with `kill -KILL`; what ran where is read back with `history --json` and from
//! the database itself.
//!
//! Waiting here is polling for a condition with a deadline (real processes, real clock).

use crate::support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use chrono::Utc;
use support::postgres::{PASSWORD, Postgres};
use support::project::{HEADER, rows};
use support::scim::ScimServer;
use support::{max_overlap, ts};

/// Short, so a dead worker's connectors move within seconds here (the default is 20 s).
const TTL_SECS: u64 = 3;

struct Fleet {
    pg: Postgres,
    scim: ScimServer,
    dir: tempfile::TempDir,
    /// The connector sections, shared by every worker's config.
    connectors: String,
}

struct Worker {
    child: Child,
    log: PathBuf,
    port: u16,
}

impl Worker {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn kill9(&mut self) {
        let ok = Command::new("kill").args(["-KILL", &self.pid().to_string()]).status().expect("kill").success();
        assert!(ok, "kill -KILL failed");
        let _ = self.child.wait();
    }

    /// SIGTERM, then the exit code.
    fn stop(&mut self) -> Option<i32> {
        let _ = Command::new("kill").args(["-TERM", &self.pid().to_string()]).status();
        let start = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st.code();
            }
            if start.elapsed() > Duration::from_secs(60) {
                let _ = self.child.kill();
                panic!("worker {} did not exit within 60 s of SIGTERM; log:\n{}", self.pid(), self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn metrics(&self) -> String {
        let out = Command::new("curl").args(["-sS", &format!("http://127.0.0.1:{}/metrics", self.port)]).output().expect("curl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Fleet {
    fn new() -> Fleet {
        let pg = Postgres::start();
        pg.create_db("fleet");
        Fleet { pg, scim: ScimServer::start(), dir: tempfile::tempdir().unwrap(), connectors: String::new() }
    }

    /// Adds connector `name` on its own exports folder holding `n` rows, on `schedule`.
    fn connector(&mut self, name: &str, schedule: &str, n: u32) -> PathBuf {
        let exports = self.dir.path().join("exports").join(name);
        std::fs::create_dir_all(&exports).unwrap();
        write_export(&exports.join("employees_2026-01-01.csv"), &rows(n));
        let mapping = support::repo_root().join("mappings/demo.toml");
        self.connectors += &format!(
            // The files grow fast between runs here (the fleet is the point, not the growth):
            // no change budget on creates.
            "\n[connectors.{name}]\nschedule = \"{schedule}\"\nmapping = \"{}\"\n[connectors.{name}.local]\ndir = \"{}\"\n[connectors.{name}.file]\npath = \"employees_*.csv\"\npick = \"last-name\"\n[connectors.{name}.sync]\nmax_creates = \"1000000\"\n",
            mapping.display(),
            exports.display()
        );
        exports
    }

    /// A config file for one process: the shared store and connectors, its own listen port.
    fn config(&self, tag: &str, port: u16) -> PathBuf {
        let cfg = format!(
            "[platform]\nkind = \"scim\"\nbase_url = \"{}\"\ntoken_env = \"PLATFORM_SCIM_TOKEN\"\nbulk = \"off\"\n\n\
             [state]\nurl = \"{}\"\npassword_env = \"ROSTERSYNC_PG_PASSWORD\"\nlease_ttl = \"{TTL_SECS}s\"\n\n\
             [daemon]\nlisten = \"127.0.0.1:{port}\"\nmax_concurrent_runs = 4\ngrace = \"30s\"\n{}",
            self.scim.base_url,
            self.pg.url("fleet"),
            self.connectors
        );
        let path = self.dir.path().join(format!("{tag}.toml"));
        std::fs::write(&path, cfg).unwrap();
        path
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(support::rostersync_bin());
        c.arg("--config")
            .arg(self.config("cli", 1))
            .args(args)
            .env("PLATFORM_SCIM_TOKEN", &self.scim.token)
            .env("ROSTERSYNC_PG_PASSWORD", PASSWORD);
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run rostersync")
    }

    fn worker(&self, tag: &str) -> Worker {
        self.worker_in(tag, None)
    }

    /// A worker whose clock reads `offset` from the machine's (`faketime -f "+20s"`), or the
    /// machine's own (None).
    fn worker_in(&self, tag: &str, offset: Option<&str>) -> Worker {
        let port = support::free_port();
        let log = self.dir.path().join(format!("{tag}.log"));
        let mut cmd = match offset {
            Some(o) => faketime(o),
            None => Command::new(support::rostersync_bin()),
        };
        let child = cmd
            .arg("--config")
            .arg(self.config(tag, port))
            .args(["--log-format", "json", "daemon"])
            .env("PLATFORM_SCIM_TOKEN", &self.scim.token)
            .env("ROSTERSYNC_PG_PASSWORD", PASSWORD)
            .env("RUST_LOG", "rostersync=info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start rostersync daemon");
        let w = Worker { child, log, port };
        support::wait_for_port(port, Duration::from_secs(30), &format!("worker {tag} (log: {})", w.log()));
        w
    }

    /// Every run, oldest first (`history --json`).
    fn history(&self) -> Vec<serde_json::Value> {
        let out = self.run(&["--json", "history", "--limit", "100000"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!("history --json is not JSON ({e}): {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
        });
        let mut runs = v.as_array().cloned().unwrap_or_default();
        runs.reverse();
        runs
    }

    fn wait<T>(&self, what: &str, timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
        let start = Instant::now();
        loop {
            if let Some(t) = probe() {
                return t;
            }
            assert!(start.elapsed() < timeout, "timed out after {timeout:?} waiting for {what}; history: {:#?}", self.history());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The holder of `connector`'s lease right now, read from the database.
    fn lease_holder(&self, connector: &str) -> Option<String> {
        // Before the first process has migrated the database there is no table yet.
        let h =
            self.pg.try_psql("fleet", &format!("SELECT holder FROM leases WHERE connector = '{connector}' AND expires_at > now()")).ok()?;
        (!h.is_empty()).then_some(h)
    }

    fn users_on_platform(&self) -> usize {
        self.scim.get("/Users?count=1")["totalResults"].as_u64().unwrap_or(0) as usize
    }
}

/// A command running rostersync with its wall clock moved by `offset` ("+20s", "+200d"):
/// Debian's faketime package (libfaketime through LD_PRELOAD). Its monotonic clock is left alone,
/// as a machine whose wall clock is wrong still counts seconds right.
fn faketime(offset: &str) -> Command {
    // The library itself, not the `faketime` wrapper: the wrapper would stand between the
    // test and the daemon's pid (its signals, its exit code).
    let lib = support::require_binary(
        &[
            PathBuf::from("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"),
            PathBuf::from("/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1"),
        ],
        "libfaketime.so.1",
        "apt-get install faketime",
    );
    let mut c = Command::new(support::rostersync_bin());
    c.env("LD_PRELOAD", lib).env("FAKETIME", offset).env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
    c
}

fn write_export(path: &Path, rows: &[String]) {
    let mut s = String::from(HEADER);
    s.push('\n');
    for r in rows {
        s.push_str(r);
        s.push('\n');
    }
    std::fs::write(path, s).unwrap();
}

fn finished(runs: &[serde_json::Value]) -> Vec<&serde_json::Value> {
    runs.iter().filter(|r| !r["ended_at"].is_null()).collect()
}

fn by_connector(runs: &[serde_json::Value]) -> BTreeMap<String, Vec<serde_json::Value>> {
    let mut m: BTreeMap<String, Vec<serde_json::Value>> = BTreeMap::new();
    for r in runs {
        m.entry(r["connector"].as_str().unwrap().to_string()).or_default().push(r.clone());
    }
    m
}

fn worker_of(pid: u32) -> String {
    format!("{} pid {pid}", gethostname())
}

fn gethostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap().trim().to_string()
}

#[test]
fn a_manual_sync_is_refused_while_another_process_holds_the_lease_and_status_names_the_holder() {
    let mut f = Fleet::new();
    let exports = f.connector("acme", "0 0 0 1 1 *", 1500);
    let mut first = f.command(&["sync", "acme"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let holder = f.wait("the first sync to hold the lease", Duration::from_secs(60), || f.lease_holder("acme"));
    assert!(holder.starts_with(&format!("cli@{} pid {} run ", gethostname(), first.id())), "{holder}");

    // `status` says who runs it, from another process.
    let out = f.run(&["--json", "status"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["connectors"][0]["running_on"].as_str(), Some(holder.as_str()), "{v}");
    let out = f.run(&["status"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("running: {holder}")), "{}", String::from_utf8_lossy(&out.stdout));

    // A second process is refused, naming the first; it records no run and changes nothing.
    write_export(&exports.join("employees_2026-01-02.csv"), &rows(10));
    let out = f.run(&["sync", "acme"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&format!("already running: held by {holder}")), "{stderr}");
    assert!(first.wait().unwrap().success());
    let h = f.history();
    assert_eq!(h.len(), 1, "{h:#?}");
    assert_eq!(h[0]["worker"].as_str(), Some(worker_of(first.id()).as_str()), "history names the worker");
    assert_eq!(h[0]["report"]["counts"]["created"], 1500);
    assert!(f.lease_holder("acme").is_none(), "released at the end");
}

#[test]
fn each_slot_runs_once_across_three_daemons() {
    let mut f = Fleet::new();
    let names: Vec<String> = (0..6).map(|i| format!("cust{i}")).collect();
    for n in &names {
        f.connector(n, "*/2 * * * * *", 5);
    }
    let mut workers: Vec<Worker> = (0..3).map(|i| f.worker(&format!("w{i}"))).collect();
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(20));
    for w in &mut workers {
        assert_eq!(w.stop(), Some(0), "log:\n{}", w.log());
    }
    let elapsed = started.elapsed();
    let h = f.history();
    let runs = finished(&h);
    assert_eq!(runs.len(), h.len(), "every run finished (SIGTERM lets them): {h:#?}");

    // Once per slot: each connector has no more runs than slots served (one claim per slot,
    // the slots table's key; a slot run by a second worker would be a run without a slot of
    // its own), and about as many as the periods elapsed (a slot run by each of 3 workers
    // would triple it). Not by the period a run started in: on a loaded machine a slot's run
    // may start after the next slot began, and the next slot's run a moment later.
    let periods = elapsed.as_secs() / 2;
    let served_by: BTreeMap<String, u64> =
        f.pg.psql("fleet", "SELECT connector || ' ' || count(*) FROM slots WHERE done_at IS NOT NULL GROUP BY connector")
            .lines()
            .filter_map(|l| l.split_once(' ').and_then(|(c, n)| Some((c.to_string(), n.trim().parse().ok()?))))
            .collect();
    for (c, rs) in by_connector(&h) {
        let served = served_by.get(&c).copied().unwrap_or(0);
        assert!(rs.len() as u64 <= served, "{c}: {} runs for {served} served slots: {rs:#?}", rs.len());
        // Two more than the periods at most: the workers start before the timer does, so a
        // slot may be served at each edge of the window (a slot run twice is caught above).
        assert!(rs.len() as u64 <= periods + 2 && rs.len() as u64 >= periods / 2, "{c}: {} runs in {periods} periods", rs.len());
        assert_eq!(max_overlap(&finished(&rs)), 1, "runs of {c} overlapped");
    }
    // The slots table agrees: at most one run per served slot (a slot whose connector was
    // still running the previous one until the next is served without a run: skipped, as
    // one daemon skips the slots a long run overlaps).
    let served: usize = f.pg.psql("fleet", "SELECT count(*) FROM slots WHERE done_at IS NOT NULL").parse().unwrap();
    assert!(h.len() <= served, "{} runs for {served} served slots", h.len());
    // Shared: every worker ran some, and the exclusion was the slot's (no run was refused a
    // lease because another worker ran the same slot).
    let pids: BTreeSet<String> = h.iter().filter_map(|r| r["worker"].as_str().map(String::from)).collect();
    let expected: BTreeSet<String> = workers.iter().map(|w| worker_of(w.pid())).collect();
    assert_eq!(pids, expected, "each of the three workers ran some of the slots");
    for w in &workers {
        assert!(!w.log().contains("already running"), "a worker ran into another's lease:\n{}", w.log());
    }
    eprintln!("3 workers, 6 connectors every 2 s for {elapsed:?}: {} runs", h.len());
}

#[test]
fn a_sigkilled_worker_releases_nothing_and_its_slot_moves_after_the_ttl() {
    let mut f = Fleet::new();
    // A yearly slot, never run: the first worker catches it up at once, a long first sync.
    f.connector("acme", "0 0 0 1 1 *", 2000);
    let mut a = f.worker("a");
    let holder = f.wait("worker a to hold acme's lease", Duration::from_secs(60), || f.lease_holder("acme"));
    assert!(holder.starts_with(&format!("daemon@{} pid {} run ", gethostname(), a.pid())), "{holder}");
    let mut b = f.worker("b");
    // b found the slot claimed by a live worker and waits.
    std::thread::sleep(Duration::from_millis(500));
    let a_worker = worker_of(a.pid());
    let claimed = f.pg.psql("fleet", "SELECT worker FROM slots WHERE connector = 'acme' AND done_at IS NULL");
    assert_eq!(claimed, a_worker);

    a.kill9();
    let killed = Utc::now();
    // Nothing was released: the claim and the lease are still a's, until they lapse.
    assert_eq!(f.pg.psql("fleet", "SELECT worker FROM slots WHERE connector = 'acme' AND done_at IS NULL"), a_worker);
    assert!(f.pg.psql("fleet", "SELECT holder FROM leases WHERE connector = 'acme'").starts_with(&format!(
        "daemon@{} pid {} ",
        gethostname(),
        a.pid()
    )));

    let b_worker = worker_of(b.pid());
    let b_run = f.wait("worker b to take acme over", Duration::from_secs(30), || {
        f.history().into_iter().find(|r| r["worker"].as_str() == Some(b_worker.as_str()))
    });
    let moved = (ts(&b_run["started_at"]) - killed).num_milliseconds();
    // The claim was renewed at most a third of the TTL before the kill, so it lapses between
    // 2/3 of the TTL and the TTL after it (plus b's check interval).
    let ttl = (TTL_SECS * 1000) as i64;
    assert!(moved >= ttl * 2 / 3 - 300 && moved <= ttl + 2000, "moved {moved} ms after the kill (TTL {ttl} ms)");
    eprintln!("SIGKILL to the run on the other worker: {moved} ms (lease_ttl {TTL_SECS} s)");

    let done = f.wait("b's run to finish", Duration::from_secs(120), || {
        f.history().into_iter().find(|r| r["run_id"] == b_run["run_id"] && !r["report"].is_null())
    });
    assert_eq!(done["report"]["outcome"], "ok", "{done:#}");
    // a's run (it died) is closed as failed by b, saying why; b adopted what a had pushed:
    // everyone once on the platform.
    let h = f.history();
    assert_eq!(h.len(), 2, "{h:#?}");
    assert_eq!(h[0]["worker"].as_str(), Some(a_worker.as_str()), "{h:#?}");
    assert_eq!(h[0]["report"]["outcome"], "failed", "{h:#?}");
    let why = h[0]["report"]["message"].as_str().unwrap_or_default();
    assert!(why.contains("its end was never recorded") && why.contains(b_run["run_id"].as_str().unwrap()), "{why}");
    assert_eq!(f.users_on_platform(), 2000);
    // The slot ran once more, by b, and is done; b does not run it again.
    assert_eq!(f.pg.psql("fleet", "SELECT worker || ' ' || (done_at IS NOT NULL) FROM slots"), format!("{b_worker} true"));
    assert_eq!(b.stop(), Some(0), "log:\n{}", b.log());
}

#[test]
fn manual_syncs_racing_two_daemons_never_overlap_a_run() {
    let mut f = Fleet::new();
    let exports = f.connector("acme", "*/2 * * * * *", 50);
    let mut workers = [f.worker("w0"), f.worker("w1")];
    // Per-worker metrics: each serves its own /metrics.
    for w in &workers {
        assert!(w.metrics().contains("rostersync_"), "{}", w.metrics());
    }
    let (mut ok, mut refused) = (0u32, 0u32);
    let start = Instant::now();
    let mut i = 0u32;
    while start.elapsed() < Duration::from_secs(15) {
        // A new file every round, so runs have work to do (creates, updates).
        i += 1;
        // Growing, so no round trips the deactivation safeguard.
        let rs = rows(50 + i * 10);
        write_export(&exports.join(format!("employees_2026-02-{:02}.csv", i.min(28))), &rs);
        let out = f.run(&["sync", "acme"]);
        match out.status.code() {
            Some(0) => ok += 1,
            // By a daemon's run, named, or (rarely) "another run" that ended as we looked.
            Some(1) if String::from_utf8_lossy(&out.stderr).contains("already running: held by ") => refused += 1,
            other => panic!("sync exited {other:?}: {}", String::from_utf8_lossy(&out.stderr)),
        }
    }
    for w in &mut workers {
        assert_eq!(w.stop(), Some(0), "log:\n{}", w.log());
    }
    let h = f.history();
    let runs = finished(&h);
    assert_eq!(runs.len(), h.len(), "{h:#?}");
    assert_eq!(max_overlap(&runs), 1, "two runs of acme overlapped: {h:#?}");
    let cli_runs = h.iter().filter(|r| r["worker"].as_str().is_some()).count();
    assert!(ok > 0 && ok + refused == i, "ok {ok}, refused {refused}, of {i}");
    assert!(h.len() > ok as usize, "the daemons ran too: {} runs, {ok} manual", h.len());
    assert_eq!(cli_runs, h.len(), "every run names its worker");
    eprintln!(
        "{i} manual syncs against 2 daemons: {ok} ran, {refused} refused (a daemon held the lease); {} runs, none overlapping",
        h.len()
    );
}

/// One clock for the fleet: a worker whose clock runs 20 s ahead claims no slot before its
/// time by the database's clock, and says its clock is off (log and /healthz); a normal
/// worker beside it says nothing.
#[test]
fn a_worker_20_s_fast_runs_no_slot_early_and_says_its_clock_is_off() {
    let mut f = Fleet::new();
    f.connector("acme", "*/3 * * * * *", 5);
    f.connector("globex", "*/3 * * * * *", 5);
    let mut fast = f.worker_in("fast", Some("+20s"));
    let mut normal = f.worker("normal");
    std::thread::sleep(Duration::from_secs(15));
    let health = |w: &Worker| {
        let out = Command::new("curl").args(["-sS", &format!("http://127.0.0.1:{}/healthz", w.port)]).output().expect("curl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let (fast_health, normal_health) = (health(&fast), health(&normal));
    assert_eq!(fast.stop(), Some(0), "log:\n{}", fast.log());
    assert_eq!(normal.stop(), Some(0), "log:\n{}", normal.log());

    // Every claim, by the database's clock: none before its slot. (Before, the fast worker
    // claimed each slot about 20 s early.)
    let claims = f.pg.psql(
        "fleet",
        "SELECT worker || ' ' || round(extract(epoch FROM (claimed_at - slot_at)) * 1000) FROM slots WHERE slot_at > (SELECT min(slot_at) FROM slots)",
    );
    let fast_worker = worker_of(fast.pid());
    let mut fast_claims = 0;
    for line in claims.lines() {
        let (worker, ms) = line.rsplit_once(' ').unwrap();
        let ms: i64 = ms.parse().unwrap();
        assert!(ms >= 0, "{worker} claimed a slot {} ms before its time: {claims}", -ms);
        fast_claims += usize::from(worker == fast_worker);
    }
    assert!(claims.lines().count() >= 6, "the slots of 15 s ran: {claims}");
    assert!(fast_claims > 0, "the fast worker took its share on the store's clock: {claims}");
    // It says so, at start and on /healthz; the other says nothing.
    assert!(
        fast_health.contains("daemon: clock: this machine's clock is 2") && fast_health.contains("s ahead of the state store's"),
        "{fast_health}"
    );
    assert!(fast.log().contains("s ahead of the state store's"), "{}", fast.log());
    assert!(!normal_health.contains("clock"), "{normal_health}");
    for (c, rs) in by_connector(&f.history()) {
        assert_eq!(max_overlap(&finished(&rs)), 1, "runs of {c} overlapped: {rs:#?}");
    }
}

/// Retention by the database's clock: a CLI sync from a machine 200 days ahead (past the
/// default 180 days of audit_retention) prunes none of the trail, nor a plan awaiting
/// approval.
#[test]
fn a_cli_sync_from_a_machine_200_days_fast_prunes_nothing_it_should_keep() {
    let mut f = Fleet::new();
    let acme = f.connector("acme", "0 0 0 1 1 *", 20);
    let globex = f.connector("globex", "0 0 0 1 1 *", 0);
    // Other people than acme's (ids 1001…).
    let people =
        |n: u32| (1001..1001 + n).map(|i| support::project::row(i, &format!("bo{i}@example.com"), true, "Sales")).collect::<Vec<_>>();
    write_export(&globex.join("employees_2026-01-01.csv"), &people(20));
    for name in ["acme", "globex"] {
        let out = f.run(&["sync", name]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    // globex's next file would deactivate most of its people: stopped, its plan kept for approval.
    write_export(&globex.join("employees_2026-01-02.csv"), &people(2));
    let out = f.run(&["sync", "globex"]);
    assert!(!out.status.success(), "a safeguard stops it: {}", String::from_utf8_lossy(&out.stdout));
    let count = |sql: &str| -> u64 { f.pg.psql("fleet", sql).parse().unwrap() };
    let audit = count("SELECT count(*) FROM audit");
    assert!(audit >= 40, "the first syncs wrote the trail: {audit}");
    assert_eq!(count("SELECT count(*) FROM plans WHERE approval IS NULL"), 1);

    // acme's next file, synced from a machine whose clock is 200 days ahead: it writes, so it prunes.
    write_export(&acme.join("employees_2026-01-02.csv"), &rows(25));
    let mut c = faketime("+200d");
    c.arg("--config")
        .arg(f.config("cli", 1))
        .args(["sync", "acme"])
        .env("PLATFORM_SCIM_TOKEN", &f.scim.token)
        .env("ROSTERSYNC_PG_PASSWORD", PASSWORD);
    let out = c.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("created 5") || count("SELECT count(*) FROM audit") >= audit + 5, "it wrote");
    assert!(count("SELECT count(*) FROM audit") >= audit, "nothing of the trail was pruned");
    assert_eq!(count("SELECT count(*) FROM plans WHERE approval IS NULL"), 1, "globex's plan still awaits approval");
}

/// Fencing: a worker frozen (SIGSTOP) mid-push past its lease; another takes the connector
/// over and finishes it. Resumed (SIGCONT), the frozen one writes nothing: its run's outcome is
/// refused (its history row stays open), the snapshot stays the new holder's, and each run
/// carries its lease's token, the second higher.
#[test]
fn a_worker_frozen_past_its_lease_cannot_write_once_resumed() {
    let mut f = Fleet::new();
    f.connector("acme", "0 0 0 1 1 *", 3000);
    let mut a = f.worker("a");
    let holder = f.wait("worker a to hold acme's lease", Duration::from_secs(60), || f.lease_holder("acme"));
    assert!(holder.contains(&format!("pid {} ", a.pid())), "{holder}");
    std::thread::sleep(Duration::from_millis(700));
    let signal = |sig: &str, pid: u32| assert!(Command::new("kill").args([sig, &pid.to_string()]).status().unwrap().success());
    signal("-STOP", a.pid());
    let mut b = f.worker("b");
    let b_worker = worker_of(b.pid());
    let b_run = f.wait("worker b to take acme over and finish", Duration::from_secs(180), || {
        f.history().into_iter().find(|r| r["worker"].as_str() == Some(b_worker.as_str()) && !r["report"].is_null())
    });
    assert_eq!(b_run["report"]["outcome"], "ok", "{b_run:#}");
    let snapshot = || -> u64 { f.pg.psql("fleet", "SELECT count(*) FROM snapshot WHERE connector = 'acme'").parse().unwrap() };
    assert_eq!(snapshot(), 3000);

    signal("-CONT", a.pid());
    // Its run wakes, finds itself fenced (or its lease lapsed) and ends; let it try to write.
    f.wait("worker a to say its run is over", Duration::from_secs(30), || {
        let log = a.log();
        (log.contains("was taken over by another run") || log.contains("could not renew")).then_some(())
    });
    std::thread::sleep(Duration::from_secs(2));
    let a_worker = worker_of(a.pid());
    let h = f.history();
    let a_run = h.iter().find(|r| r["worker"].as_str() == Some(a_worker.as_str())).expect("a's run is in history");
    // b closed it as failed when it ended; a's own outcome, written over that, was refused.
    let why = a_run["report"]["message"].as_str().unwrap_or_default();
    assert!(why.contains("closed as failed by run") && why.contains(b_run["run_id"].as_str().unwrap()), "a wrote its outcome: {a_run:#}");
    let (ta, tb) = (a_run["fence"].as_i64().unwrap(), b_run["fence"].as_i64().unwrap());
    assert!(tb > ta, "the take-over's token is higher: {ta} then {tb}");
    assert_eq!(snapshot(), 3000);
    assert_eq!(f.users_on_platform(), 3000, "everyone once on the platform");
    assert_eq!(b.stop(), Some(0), "log:\n{}", b.log());
    let _ = a.stop();
}

/// A PostgreSQL outage, with a worker mid-run: /healthz says the store fails while it does
/// and recovers with it; a slot that cannot be claimed is not run; the run whose end could
/// not be written is closed as failed, saying why, by the connector's next run, which converges.
#[test]
fn a_store_outage_runs_no_unclaimed_slot_and_the_run_it_cut_is_closed_as_failed() {
    let mut f = Fleet::new();
    f.connector("acme", "*/2 * * * * *", 3000);
    let w = f.worker("w");
    let health = || {
        let out = Command::new("curl").args(["-sS", &format!("http://127.0.0.1:{}/healthz", w.port)]).output().expect("curl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    f.wait("the first run to hold acme's lease", Duration::from_secs(60), || f.lease_holder("acme"));
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(health(), "ok\n");
    f.pg.stop();
    let degraded = f.wait("/healthz to say the store fails", Duration::from_secs(20), || {
        let h = health();
        h.contains("daemon: state store: ").then_some(h)
    });
    assert!(degraded.starts_with("degraded: "), "{degraded}");
    // The cut run stops (its lease cannot be renewed); slots come and go meanwhile (every
    // 2 s): none is run unclaimed.
    let start = Instant::now();
    while !w.log().contains("not running it until the claim succeeds") {
        // Each call to a stopped server waits out the pool's connect timeout (10 s): the cut run
        // ends, its end and its release fail, then the next slot's claim.
        assert!(start.elapsed() < Duration::from_secs(120), "no slot went unclaimed in 120 s; log:\n{}", w.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(3));
    f.pg.start_again();
    f.wait("/healthz to recover", Duration::from_secs(30), || (health() == "ok\n").then_some(()));
    let log = w.log();
    assert!(log.contains("not running it until the claim succeeds"), "{log}");
    assert!(!log.contains("; running it"), "a slot ran unclaimed: {log}");

    // The next run converges and closes the cut run as failed, with its reason.
    let closed = f.wait("the cut run to be closed and a later one to sync", Duration::from_secs(120), || {
        let h = f.history();
        let cut = h.first().filter(|r| r["report"]["outcome"] == "failed")?.clone();
        let ok = h.iter().any(|r| r["report"]["outcome"] == "ok");
        ok.then_some(cut)
    });
    let why = closed["report"]["message"].as_str().unwrap_or_default();
    assert!(why.contains("its end was never recorded"), "{closed:#}");
    assert_eq!(f.users_on_platform(), 3000, "everyone once on the platform");
    let h = f.history();
    assert!(h.iter().all(|r| !r["ended_at"].is_null()), "a run was left open: {h:#?}");
    assert_eq!(max_overlap(&finished(&h)), 1);
}
