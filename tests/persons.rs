//! Issue 15 end to end through the CLI against the real scim2-server: plans person by
//! person (dry runs, stopped runs, `--plan-out`, `test`), `explain`, `--only`, approvals
//! of exactly the stored plan, and the per-person history.

use crate::support;

use std::collections::HashMap;

use serde_json::Value;
use support::project::{Project, rows};
use support::scim::ScimServer;

fn by_external_id(scim: &ScimServer) -> HashMap<String, Value> {
    scim.users().into_iter().map(|u| (u["externalId"].as_str().unwrap_or_default().to_string(), u)).collect()
}

/// Row `id` of the demo layout with this job title.
fn titled(id: u32, title: &str) -> String {
    format!("E{id:07},Ann{id},Lee{id},ann{id}@example.com,fr,Yes,Engineering,{title},,Paris,2021-03-04,CC-1")
}

/// Rows 1..=n, with person 3 retitled "Lead".
fn retitled(n: u32) -> Vec<String> {
    let mut rs = rows(n);
    rs[2] = titled(3, "Lead");
    rs
}

/// (external_id, kind) of each operation of a report.
fn kinds(r: &Value) -> Vec<(String, String)> {
    r["operations"]
        .as_array()
        .unwrap_or(&Vec::new())
        .iter()
        .map(|o| (o["external_id"].as_str().unwrap().to_string(), o["kind"].as_str().unwrap().to_string()))
        .collect()
}

fn op<'a>(r: &'a Value, id: &str) -> &'a Value {
    r["operations"].as_array().unwrap().iter().find(|o| o["external_id"] == id).unwrap_or_else(|| panic!("no operation for {id}: {r}"))
}

fn synced_20(scim: &ScimServer) -> Project {
    let p = Project::new(scim, "max_deactivations = \"10%\"\nmax_invalid = \"20%\"");
    p.export("employees_2026-01-01.csv", &rows(20));
    let (code, r) = p.sync_json(&[]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["counts"]["created"], 20);
    p
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn dry_runs_list_each_person_with_kind_and_fields_also_when_a_safeguard_stops() {
    let scim = ScimServer::start();
    let p = synced_20(&scim);
    let before = by_external_id(&scim);

    // A title change and one leaver (1 of 20, within 10 %).
    p.export("employees_2026-01-02.csv", &retitled(19));
    let csv = p.path().join("plan.csv");
    let (code, r) = p.sync_json(&["--dry-run", "--plan-out", csv.to_str().unwrap()]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(kinds(&r), vec![("E0000003".into(), "update".into()), ("E0000020".into(), "deactivate".into())]);
    let u = op(&r, "E0000003");
    assert_eq!(u["name"], "Ann3 Lee3");
    assert_eq!(u["changes"], serde_json::json!([{"field": "title", "old": "Engineer", "new": "Lead"}]));
    assert_eq!(u["line"], 4);
    let d = op(&r, "E0000020");
    assert_eq!(d["name"], "Ann20 Lee20", "an absent person's name comes from the state");
    assert!(d["reason"].as_str().unwrap().contains("absent"), "{d}");
    assert_eq!(
        std::fs::read_to_string(&csv).unwrap(),
        "external_id,name,kind,field,old,new,line,reason\n\
         E0000003,Ann3 Lee3,update,title,Engineer,Lead,4,content differs from the last sync\n\
         E0000020,Ann20 Lee20,deactivate,,,,,\"absent from the file (on_missing = \"\"deactivate\"\")\"\n"
    );
    // The human table says the same.
    let out = stdout(&p.run(&["sync", "acme", "--dry-run"]));
    assert!(out.contains("plan     2 operation(s)"), "{out}");
    assert!(out.lines().any(|l| l.contains("update") && l.contains("E0000003") && l.contains("title: \"Engineer\" → \"Lead\"")), "{out}");
    assert!(out.lines().any(|l| l.contains("deactivate") && l.contains("E0000020") && l.contains("Ann20 Lee20")), "{out}");
    // `test` shows the plan too.
    let t = p.run(&["--json", "test", "acme"]);
    let t: Value = serde_json::from_slice(&t.stdout).unwrap();
    assert_eq!(kinds(&t), kinds(&r), "{t}");

    // A mass leave: 15 of 20 gone, and the title change. The safeguard stops the dry run,
    // and its report is what the plan would have done.
    p.export("employees_2026-01-03.csv", &retitled(5));
    let (code, r) = p.sync_json(&["--dry-run"]);
    assert_eq!(code, 5, "{r}");
    assert_eq!(r["stopped_by"], "mass_deactivation");
    let mut want = vec![("E0000003".to_string(), "update".to_string())];
    want.extend((6..=20).map(|i| (format!("E{i:07}"), "deactivate".to_string())));
    assert_eq!(kinds(&r), want);
    assert_eq!(r["counts"]["deactivated"], 15, "{r}");
    assert_eq!(r["counts"]["updated"], 1, "{r}");
    assert_eq!(op(&r, "E0000003")["changes"][0]["new"], "Lead");
    // The human summary caps the list and says how to see it all.
    let out = stdout(&p.run(&["sync", "acme", "--dry-run"]));
    assert!(out.contains("STOPPED") && out.contains("would be deactivated 15"), "{out}");
    assert!(out.contains("plan     16 operation(s)"), "{out}");
    assert!(!out.contains("… and"), "16 fit under the cap: {out}");

    // More than a screen: the table is capped and says how to see the rest.
    let mut many = rows(20);
    many.extend((21..=45).map(|i| titled(i, "Engineer")));
    p.export("employees_2026-01-04.csv", &many);
    let out = stdout(&p.run(&["sync", "acme", "--dry-run"]));
    assert!(out.contains("plan     25 operation(s)"), "{out}");
    assert!(out.contains("… and 5 more (--json or --plan-out FILE.csv lists them all)"), "{out}");
    assert_eq!(out.lines().filter(|l| l.trim_start().starts_with("create ")).count(), 20, "{out}");
    let (_, r) = p.sync_json(&["--dry-run"]);
    assert_eq!(r["operations"].as_array().unwrap().len(), 25, "--json has them all");
    assert_eq!(by_external_id(&scim), before, "dry runs push nothing");
}

#[test]
fn a_stopped_plan_is_approved_exactly_and_the_history_keeps_who_and_why() {
    let scim = ScimServer::start();
    let p = synced_20(&scim);
    let before = by_external_id(&scim);

    p.export("employees_2026-01-02.csv", &retitled(5));
    let (code, r) = p.sync_json(&[]);
    assert_eq!(code, 5, "{r}");
    let run = r["run_id"].as_str().unwrap().to_string();
    let msg = r["message"].as_str().unwrap();
    assert!(msg.contains(&format!("rostersync approve {run} --reason")), "{msg}");
    assert_eq!(by_external_id(&scim), before, "stopped: nothing pushed");
    assert_eq!(r["counts"]["deactivated"], 15, "the counts are what the plan would have done");

    // plan show lists the stored plan.
    let shown = p.run(&["--json", "plan", "show", &run]);
    let shown: Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(shown["stopped_by"], "mass_deactivation");
    assert_eq!(kinds(&shown), kinds(&r));
    let human = stdout(&p.run(&["plan", "show", &run]));
    assert!(human.contains("E0000020") && human.contains(&format!("rostersync approve {run}")), "{human}");

    // --allow-mass-change needs a reason.
    let out = p.run(&["sync", "acme", "--allow-mass-change"]);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--reason"));
    assert_eq!(by_external_id(&scim), before);

    // Approve: exactly the stored plan is applied.
    let (code, a) = {
        let out = p.run(&["--json", "approve", &run, "--reason", "HR confirmed the site closure"]);
        (out.status.code().unwrap(), serde_json::from_slice::<Value>(&out.stdout).unwrap())
    };
    assert_eq!(code, 0, "{a}");
    assert_eq!(kinds(&a), kinds(&r), "the same operations as the stored plan");
    assert_eq!(a["counts"]["deactivated"], 15);
    assert_eq!(a["counts"]["updated"], 1);
    assert_eq!(a["approval"]["reason"], "HR confirmed the site closure");
    assert_eq!(a["approval"]["plan_of"], run.as_str());
    assert!(!a["approval"]["by"].as_str().unwrap().is_empty());
    let after = by_external_id(&scim);
    for i in 1..=20 {
        let id = format!("E{i:07}");
        assert_eq!(after[&id]["active"], i <= 5, "{id}");
        let title = after[&id]["title"].as_str().unwrap_or_default().to_string();
        assert_eq!(title, if i == 3 { "Lead" } else { "Engineer" }, "{id}");
    }

    // Once approved, never twice.
    let out = p.run(&["approve", &run, "--reason", "again"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already approved"), "{}", String::from_utf8_lossy(&out.stderr));

    // The history has the approval: the run's line, and each person's trail.
    let h = stdout(&p.run(&["history", "acme"]));
    assert!(h.contains("HR confirmed the site closure") && h.contains(&format!("plan of run {run}")), "{h}");
    let trail = p.run(&["--json", "history", "acme", "--person", "E0000012"]);
    let trail: Value = serde_json::from_slice(&trail.stdout).unwrap();
    let last = &trail[0];
    assert_eq!(last["kind"], "deactivate", "{trail}");
    assert_eq!(last["status"], "ok");
    assert!(last["approval"].as_str().unwrap().ends_with(": HR confirmed the site closure"), "{trail}");
    let trail = p.run(&["--json", "history", "acme", "--person", "E0000003"]);
    let trail: Value = serde_json::from_slice(&trail.stdout).unwrap();
    assert_eq!(trail[0]["kind"], "update");
    assert_eq!(trail[0]["fields"], serde_json::json!(["title"]), "field names, never values");
    assert_eq!(trail[1]["kind"], "create", "the first sync is in the trail too");
    let human = stdout(&p.run(&["history", "acme", "--person", "E0000003"]));
    assert!(human.contains("update") && human.contains("title") && !human.contains("Lead"), "{human}");
}

#[test]
fn an_approval_after_the_file_or_the_state_changed_is_refused() {
    let scim = ScimServer::start();
    let p = synced_20(&scim);
    let before = by_external_id(&scim);
    p.export("employees_2026-01-02.csv", &rows(5));
    let (code, r) = p.sync_json(&[]);
    assert_eq!(code, 5, "{r}");
    let run = r["run_id"].as_str().unwrap().to_string();

    // A newer export arrives: the connector would take another file now.
    p.export("employees_2026-01-03.csv", &rows(6));
    let out = p.run(&["approve", &run, "--reason", "looks fine"]);
    assert_eq!(out.status.code(), Some(5), "{}", stdout(&out));
    let text = stdout(&out);
    assert!(text.contains("approval refused") && text.contains("no longer the one") && text.contains("--dry-run"), "{text}");
    assert_eq!(by_external_id(&scim), before, "nothing pushed");

    // The same file back, but the state moved on (one person synced meanwhile).
    std::fs::remove_file(p.path().join("exports/employees_2026-01-03.csv")).unwrap();
    let mut rs = rows(5);
    rs[0] = titled(1, "Chief");
    let (code, r) = p.sync_json(&["--only", "E0000001", "--file", p.export("other.csv", &rs).to_str().unwrap()]);
    assert_eq!(code, 0, "{r}");
    std::fs::remove_file(p.path().join("exports/other.csv")).unwrap();
    let out = p.run(&["approve", &run, "--reason", "looks fine"]);
    assert_eq!(out.status.code(), Some(5), "{}", stdout(&out));
    assert!(stdout(&out).contains("state of connector \"acme\" changed"), "{}", stdout(&out));
    let after = by_external_id(&scim);
    assert_eq!(after.values().filter(|u| u["active"] == false).count(), 0, "nobody deactivated");
}

#[test]
fn only_changes_that_person_and_absentees_need_allow_absent() {
    let scim = ScimServer::start();
    let p = synced_20(&scim);
    let before = by_external_id(&scim);

    // The file changes person 3 and person 4, and person 20 left.
    let mut rs = retitled(19);
    rs[3] = titled(4, "Boss");
    p.export("employees_2026-01-02.csv", &rs);
    let (code, r) = p.sync_json(&["--only", "e0000003"]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(kinds(&r), vec![("E0000003".into(), "update".into())]);
    let after = by_external_id(&scim);
    for (id, u) in &before {
        if id == "E0000003" {
            assert_eq!(after[id]["title"], "Lead");
        } else {
            assert_eq!(&after[id], u, "{id} is untouched");
        }
    }

    // Person 20 is absent: left alone without --allow-absent.
    let (code, r) = p.sync_json(&["--only", "E0000020"]);
    assert_eq!(code, 0, "{r}");
    assert!(kinds(&r).is_empty(), "{r}");
    assert!(r["notes"].as_array().unwrap().iter().any(|n| n.as_str().unwrap().contains("--allow-absent")), "{r}");
    assert_eq!(by_external_id(&scim)["E0000020"]["active"], true);
    let (code, r) = p.sync_json(&["--only", "E0000020", "--allow-absent"]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(kinds(&r), vec![("E0000020".into(), "deactivate".into())]);
    let now = by_external_id(&scim);
    assert_eq!(now["E0000020"]["active"], false);
    assert_eq!(now["E0000004"], before["E0000004"], "person 4 still waits for a full run");

    // A scoped run records no file: the next full run takes the file and does the rest.
    let (code, r) = p.sync_json(&[]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(kinds(&r), vec![("E0000004".into(), "update".into())]);
    assert_eq!(by_external_id(&scim)["E0000004"]["title"], "Boss");
}

#[test]
fn explain_tells_one_persons_row_state_decision_and_trail() {
    let scim = ScimServer::start();
    let p = synced_20(&scim);
    // Person 3 retitled, person 7's row invalid (bad email), person 20 absent.
    let mut rs = retitled(19);
    rs[6] = "E0000007,Ann7,Lee7,not-an-email,fr,Yes,Engineering,Engineer,,Paris,2021-03-04,CC-1".into();
    p.export("employees_2026-01-02.csv", &rs);
    let explain = |id: &str| {
        let out = p.run(&["--json", "explain", "acme", id]);
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };

    let e = explain("E0000003");
    assert_eq!(e["rows"][0]["line"], 4, "{e}");
    assert_eq!(e["rows"][0]["values"]["Job Title"], "Lead");
    assert_eq!(e["rows"][0]["values"]["Email"], "ann3@example.com");
    assert_eq!(e["rows"][0]["user"]["attributes"]["title"], "Lead");
    assert_eq!(e["state"]["active"], true);
    assert_eq!(e["state"]["content"]["attributes"]["title"], "Engineer");
    assert_eq!(e["decision"]["kind"], "update");
    assert_eq!(e["decision"]["changes"], serde_json::json!([{"field": "title", "old": "Engineer", "new": "Lead"}]));
    assert_eq!(e["operations"][0]["kind"], "create", "the first sync's create");

    let e = explain("E0000020");
    assert_eq!(e["rows"], serde_json::json!([]), "{e}");
    assert_eq!(e["decision"]["kind"], "deactivate");
    assert!(e["decision"]["reason"].as_str().unwrap().contains("absent"), "{e}");
    assert_eq!(e["state"]["content"]["first_name"], "Ann20");

    let e = explain("E0000007");
    assert_eq!(e["rows"][0]["line"], 8, "{e}");
    assert_eq!(e["rows"][0]["values"]["Email"], "not-an-email");
    assert!(e["rows"][0]["errors"][0]["message"].as_str().unwrap().contains("email"), "{e}");
    assert_eq!(e["decision"], Value::Null);
    assert!(e["why"].as_str().unwrap().contains("invalid"), "{e}");

    // Human output, and nothing recorded or pushed by explaining.
    let out = stdout(&p.run(&["explain", "acme", "E0000003"]));
    assert!(out.contains("line 4") && out.contains("decision update") && out.contains("\"Lead\""), "{out}");
    let h: Value = serde_json::from_slice(&p.run(&["--json", "history", "acme"]).stdout).unwrap();
    assert_eq!(h.as_array().unwrap().len(), 1, "explain records no run: {h}");

    // Offline: the source folder gone, the state and the trail still answer.
    std::fs::remove_dir_all(p.path().join("exports")).unwrap();
    let e = explain("E0000020");
    assert!(e["file_error"].is_string(), "{e}");
    assert_eq!(e["state"]["active"], true);
    assert_eq!(e["operations"][0]["kind"], "create");
}

/// Kills the daemon when the test ends, however it ends.
struct Running(std::process::Child);
impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_daemon_waits_for_the_approval_of_a_stopped_plan_then_recovers() {
    use std::time::{Duration, Instant};
    let scim = ScimServer::start();
    let p = synced_20(&scim);
    let (hook, posted) = support::webhook_listener();
    let json = |raw: &[String]| -> Vec<Value> { raw.iter().filter_map(|b| serde_json::from_str(b).ok()).collect() };
    let cfg_path = p.path().join("connectors.toml");
    let cfg = std::fs::read_to_string(&cfg_path)
        .unwrap()
        .replacen("bulk = \"off\"\n", &format!("bulk = \"off\"\nnotify_webhook = \"{hook}\"\n"), 1)
        .replacen("[connectors.acme]\n", "[connectors.acme]\nschedule = \"*/2 * * * * *\"\n", 1);
    std::fs::write(&cfg_path, cfg).unwrap();
    p.export("employees_2026-01-02.csv", &rows(5));
    let log = std::fs::File::create(p.path().join("daemon.log")).unwrap();
    let _daemon = Running(p.command(&["daemon"]).stdout(std::process::Stdio::null()).stderr(log).spawn().unwrap());
    let daemon_log = || std::fs::read_to_string(p.path().join("daemon.log")).unwrap_or_default();
    let reports = || -> Vec<Value> {
        let h: Value = serde_json::from_slice(&p.run(&["--json", "history", "acme", "--limit", "1000"]).stdout).unwrap();
        let mut v: Vec<Value> = h.as_array().unwrap().iter().filter_map(|r| r["report"].as_object().map(|_| r["report"].clone())).collect();
        v.reverse();
        v
    };
    let wait = |what: &str, cond: &dyn Fn() -> bool| {
        let start = Instant::now();
        while !cond() {
            assert!(start.elapsed() < Duration::from_secs(60), "timed out waiting for {what}; log:\n{}", daemon_log());
            std::thread::sleep(Duration::from_millis(200));
        }
    };

    // The daemon's first run stops; the next slots wait for the approval, and stay stopped
    // (not "no new file": the connector is waiting for a person, not quietly fine).
    wait("a stopped run and two that wait", &|| reports().iter().skip(1).filter(|r| r["failure"] == "awaiting_approval").count() >= 2);
    let rs = reports();
    let stopped = &rs[1];
    assert_eq!(stopped["outcome"], "stopped", "{rs:#?}");
    let run = stopped["run_id"].as_str().unwrap().to_string();
    for r in &rs[2..] {
        assert_eq!(r["outcome"], "stopped", "{r}");
        assert_eq!(r["failure"], "awaiting_approval", "{r}");
        assert!(r["message"].as_str().unwrap().contains(&format!("waiting for approval: run {run}")), "{r}");
        assert_eq!(r["approve_with"], format!("rostersync approve {run} --reason \"…\""), "{r}");
    }
    let notes = json(&posted.lock().unwrap());
    let stops: Vec<&Value> = notes.iter().filter(|n| n["event"] == "stopped").collect();
    assert_eq!(stops.len(), 1, "notified once, not at every slot: {notes:#?}");
    assert_eq!(stops[0]["approve_with"], format!("rostersync approve {run} --reason \"…\""));
    assert!(stops[0]["text"].as_str().unwrap().contains(&format!("rostersync approve {run}")), "{}", stops[0]);
    assert_eq!(scim.users().iter().filter(|u| u["active"] == false).count(), 0, "nothing pushed while waiting");

    // Approved by hand (a daemon run may hold the lease for a moment: then again).
    let mut approved = None;
    for _ in 0..20 {
        let out = p.run(&["--json", "approve", &run, "--reason", "HR confirmed"]);
        let r: Value = serde_json::from_slice(&out.stdout).unwrap();
        if out.status.code() == Some(0) {
            approved = Some(r);
            break;
        }
        assert!(r["message"].as_str().unwrap_or_default().contains("already running"), "{r}");
        std::thread::sleep(Duration::from_millis(300));
    }
    let approved = approved.expect("approve succeeded");
    assert_eq!(approved["counts"]["deactivated"], 15);
    assert_eq!(scim.users().iter().filter(|u| u["active"] == false).count(), 15);

    // The connector is well again: the daemon says so once.
    wait("a recovered notice", &|| json(&posted.lock().unwrap()).iter().any(|n| n["event"] == "recovered"));
    let notes = json(&posted.lock().unwrap());
    assert_eq!(notes.iter().filter(|n| n["event"] == "recovered").count(), 1, "{notes:#?}");
    assert_eq!(notes.iter().filter(|n| n["event"] == "stopped").count(), 1, "{notes:#?}");
}
