//! `rostersync history` and `rostersync status`: what the state store remembers.

use chrono::Utc;

use super::Cli;
use crate::lookup::Lookup;
use crate::state::{self, prelude::*};

pub async fn history(cli: &Cli, connector: Option<&str>, limit: u32) -> super::Result<i32> {
    let cfg = super::load_config(cli)?;
    let store = state::open(&cfg.state).await?;
    let runs = store.history(connector, limit).await?;
    // A name neither configured nor ever run is a typo: exit 2 with the known names, like
    // every other command. A connector since removed from the config still has its history.
    if let Some(name) = connector
        && runs.is_empty()
        && !cfg.connectors.contains_key(name)
        && !cfg.broken.iter().any(|b| b == name)
    {
        cfg.connector(name)?;
    }
    if cli.json {
        let v: Vec<_> = runs
            .iter()
            .map(|r| {
                serde_json::json!({
                    "run_id": r.run_id, "connector": r.connector, "started_at": r.started_at,
                    "ended_at": r.ended_at, "report": r.report, "worker": r.worker, "fence": r.fence,
                    "target": r.report.as_ref().and_then(|rep| rep.target.clone()),
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(v));
        return Ok(0);
    }
    if runs.is_empty() {
        println!("no runs recorded yet");
        return Ok(0);
    }
    let n = super::term::Numbers::for_stdout();
    println!(
        "{:<20} {:<16} {:<11} {:>9} {:>8} {:>8} {:>8} {:>7} {:>9}  {:<24} file",
        "started (UTC)",
        "connector",
        "outcome",
        "rows",
        "created",
        "updated",
        "deact.",
        "failed",
        if n.human { "took" } else { "ms" },
        "worker"
    );
    for r in &runs {
        let started = r.started_at.format("%Y-%m-%d %H:%M:%S").to_string();
        let worker = super::term::shown(r.worker.as_deref().unwrap_or("-"));
        match &r.report {
            Some(rep) => {
                let c = &rep.counts;
                let outcome = serde_json::to_value(rep.outcome).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default();
                let outcome = if rep.dry_run { format!("{outcome}(dry)") } else { outcome };
                println!(
                    "{started:<20} {:<16} {:<11} {:>9} {:>8} {:>8} {:>8} {:>7} {:>9}  {worker:<24} {}",
                    r.connector,
                    outcome,
                    n.count(c.rows),
                    n.count(c.created),
                    n.count(c.updated),
                    n.count(c.deactivated + c.deleted),
                    n.count(c.failed),
                    if n.human { n.millis(rep.duration_ms) } else { rep.duration_ms.to_string() },
                    super::term::shown(rep.file.as_ref().map(|f| f.path.as_str()).unwrap_or("-"))
                );
                if let Some(a) = &rep.approval {
                    let of = a.plan_of.as_ref().map(|p| format!(" (plan of run {p})")).unwrap_or_default();
                    println!("{:<20} approved by {} at {}{of}: {}", "", super::term::shown(&a.by), a.at, super::term::shown(&a.reason));
                }
            }
            None => println!("{started:<20} {:<16} {:<11}  (running, or the process died mid-run) on {worker}", r.connector, "-"),
        }
    }
    Ok(0)
}

pub async fn status(cli: &Cli) -> super::Result<i32> {
    let cfg = super::load_config(cli)?;
    let store = state::open(&cfg.state).await?;
    let now = Utc::now();
    // Who runs what right now: the live leases (an expired one is a dead holder's).
    let running: std::collections::HashMap<String, String> =
        store.leases().await?.into_iter().filter(|l| l.expires_at > now).map(|l| (l.connector, l.holder)).collect();
    let mut rows = Vec::new();
    let mut lookups = Vec::new();
    let mut graces = Vec::new();
    for (name, conn) in &cfg.connectors {
        let last = store.history(Some(name), 1).await?.into_iter().next();
        let next =
            conn.schedule.as_ref().and_then(|s| s.next_after(now)).map(|slot| slot + crate::schedule::jitter_for(name, slot, conn.jitter));
        // Shown in the connector's timezone: "02:00" in the schedule reads as 02:00 here.
        let tz = conn.schedule.as_ref().map_or(chrono_tz::UTC, |s| s.tz);
        let mark = store.reconcile_mark(name).await?;
        lookups.push(platform_lookup(mark, last.as_ref(), running.contains_key(name.as_str())));
        let target = conn.target.as_ref().map(|t| t.name.clone());
        rows.push((name.clone(), last, next, conn.schedule.as_ref().map(|s| s.spec.clone()), tz, target));
        graces.push(in_grace(&store, conn, crate::sync::clock::now()).await?);
    }
    if cli.json {
        let v: Vec<_> = rows
            .iter()
            .zip(&lookups)
            .zip(&graces)
            .map(|(((n, last, next, spec, tz, target), lookup), grace)| {
                serde_json::json!({
                    "in_grace": grace,
                    "next_dated_change": last.as_ref().and_then(|r| r.report.as_ref()).and_then(|rep| rep.lifecycle.next_change.as_ref()),
                    "connector": n, "target": target, "schedule": spec, "timezone": tz.name(), "next_run": next,
                    "last_run": last.as_ref().map(|r| serde_json::json!({
                        "run_id": r.run_id, "started_at": r.started_at,
                        "outcome": r.report.as_ref().map(|rep| rep.outcome), "worker": r.worker,
                    })),
                    "running_on": running.get(n.as_str()),
                    "next_run_lists_platform": lookup.as_ref().map(|l| serde_json::json!({
                        "why": l.why(), "run_id": l.run_id, "reason": l.reason, "set_at": l.set_at,
                    })),
                })
            })
            .collect();
        println!("{}", serde_json::json!({"connectors": v, "broken": cfg.broken}));
        return Ok(0);
    }
    let local = |t: chrono::DateTime<Utc>, tz: chrono_tz::Tz| t.with_timezone(&tz).format("%Y-%m-%d %H:%M %Z").to_string();
    println!("{:<16} {:<22} {:<12} {:<22} {:<24} {:<24} schedule", "connector", "last run", "outcome", "next run", "worker", "target");
    let dated: Vec<String> = rows.iter().zip(&graces).flat_map(|((n, last, ..), grace)| lifecycle_lines(n, last.as_ref(), grace)).collect();
    for (n, last, next, spec, tz, target) in rows {
        let (when, outcome) = match &last {
            Some(r) => (
                local(r.started_at, tz),
                r.report
                    .as_ref()
                    .and_then(|rep| serde_json::to_value(rep.outcome).ok())
                    .and_then(|v| v.as_str().map(String::from))
                    .unwrap_or_else(|| "running".into()),
            ),
            None => ("never".into(), "-".into()),
        };
        let next = next.map(|t| local(t, tz)).unwrap_or_else(|| "manual only".into());
        // Running: the holder of the lease ("daemon@HOST pid N run ID"); else who ran it last.
        let worker = match running.get(n.as_str()) {
            Some(holder) => format!("running: {holder}"),
            None => last.as_ref().and_then(|r| r.worker.clone()).unwrap_or_else(|| "-".into()),
        };
        let worker = super::term::shown(&worker);
        let target = super::term::shown(target.as_deref().unwrap_or("-"));
        println!("{n:<16} {when:<22} {outcome:<12} {next:<22} {worker:<24} {target:<24} {}", spec.unwrap_or_default());
    }
    for b in &cfg.broken {
        println!("{b:<16} (refused: configuration problems — run `rostersync check`)");
    }
    dated.iter().for_each(|line| println!("{}", super::term::shown(line)));
    for (n, lookup) in cfg.connectors.keys().zip(&lookups) {
        if let Some(l) = lookup {
            println!("{}", super::term::shown(&format!("{n}: the next run lists the platform before it pushes: {}", l.why())));
        }
    }
    Ok(0)
}

/// A connector's dated lifecycle as `status` prints it: the next change a date brings (by
/// its last run), and who is in grace until when.
fn lifecycle_lines(name: &str, last: Option<&state::RunRecord>, grace: &[crate::plan::lifecycle::InGrace]) -> Vec<String> {
    let mut out: Vec<String> = last
        .and_then(|r| r.report.as_ref()?.lifecycle.next_change.as_ref())
        .map(|c| format!("{name}: next dated change on {}: {} ({})", c.on, c.external_id, c.change))
        .into_iter()
        .collect();
    out.extend(grace.iter().map(|g| {
        format!(
            "{name}: {} absent from the file since {}, in grace until {} (deactivate_after)",
            g.external_id,
            g.absent_since.format("%Y-%m-%d %H:%M UTC"),
            g.until.format("%Y-%m-%d %H:%M UTC")
        )
    }));
    out
}

/// `deactivate_after`: the connector's people absent from the file whose grace has not run
/// out, by the state's record (a run after `until` applies on_missing to them).
async fn in_grace(
    store: &state::Store,
    conn: &crate::config::Connector,
    now: chrono::DateTime<Utc>,
) -> super::Result<Vec<crate::plan::lifecycle::InGrace>> {
    let Some(after) = conn.sync.lifecycle.deactivate_after else { return Ok(Vec::new()) };
    let after = chrono::Duration::from_std(after).unwrap_or(chrono::Duration::MAX);
    let mut out: Vec<crate::plan::lifecycle::InGrace> = store
        .absences(&conn.name)
        .await?
        .into_iter()
        .filter_map(|(external_id, since)| {
            let until = since.checked_add_signed(after)?;
            (until > now).then_some(crate::plan::lifecycle::InGrace { external_id, absent_since: since, until })
        })
        .collect();
    out.sort_by(|a, b| a.until.cmp(&b.until).then_with(|| a.external_id.cmp(&b.external_id)));
    Ok(out)
}

/// Why a connector's next run will list the platform's accounts (and adopt what it finds
/// rather than create it twice), as `sync::reconcile` decides it: a reconcile marker left
/// by an earlier run, or a last run that never finished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct PlatformLookup {
    pub run_id: String,
    /// The marker's reason ("push started": the run died mid-push; "N create(s) or
    /// adoption(s) failed"); None for a run that ended without one.
    pub reason: Option<String>,
    pub set_at: Option<chrono::DateTime<Utc>>,
}

impl PlatformLookup {
    fn why(&self) -> String {
        match (&self.reason, self.set_at) {
            (Some(reason), Some(at)) => format!(
                "run {} left writes the state may not have recorded ({reason}, {}); it adopts what it finds rather than creating twice",
                self.run_id,
                at.format("%Y-%m-%d %H:%M UTC")
            ),
            _ => format!("run {} did not finish (the process died); it adopts what it finds rather than creating twice", self.run_id),
        }
    }
}

/// From the connector's marker, its last run and whether it runs now, by the rule the run
/// itself applies (`lookup::before_push`): a run in progress is not "unfinished", and its
/// own marker says nothing about the next run.
fn platform_lookup(mark: Option<state::ReconcileMark>, last: Option<&state::RunRecord>, running: bool) -> Option<PlatformLookup> {
    let unfinished = last.filter(|l| l.ended_at.is_none());
    let in_progress = unfinished.filter(|_| running).map(|l| l.run_id.as_str());
    match crate::lookup::before_push(mark, unfinished.is_some() && !running, in_progress)? {
        Lookup::Marked(m) => Some(PlatformLookup { run_id: m.run_id, reason: Some(m.reason), set_at: Some(m.set_at) }),
        Lookup::AfterUnfinished => Some(PlatformLookup { run_id: unfinished?.run_id.clone(), reason: None, set_at: None }),
    }
}

/// `history [CONNECTOR] --person ID`: the audit trail of one person, newest first.
pub async fn person(cli: &Cli, connector: Option<&str>, id: &str, limit: u32) -> super::Result<i32> {
    let cfg = super::load_config(cli)?;
    let store = state::open(&cfg.state).await?;
    let entries = store.person_history(connector, id, limit).await?;
    if cli.json {
        println!("{}", serde_json::Value::Array(entries.iter().map(audit_json).collect()));
        return Ok(0);
    }
    if entries.is_empty() {
        println!(
            "no operations recorded for {} (kept for {})",
            super::term::shown(id),
            crate::text::duration_words(cfg.state.audit_retention)
        );
        return Ok(0);
    }
    print_audit(&entries);
    Ok(0)
}

pub(super) fn audit_json(e: &crate::state::AuditEntry) -> serde_json::Value {
    serde_json::json!({
        "connector": e.connector, "external_id": e.external_id, "run_id": e.run_id, "at": e.at,
        "kind": e.kind, "fields": e.fields, "status": e.status, "http_status": e.http_status, "approval": e.approval,
    })
}

/// The audit trail as a table (field names only: the trail keeps no values).
pub(super) fn print_audit(entries: &[crate::state::AuditEntry]) {
    use super::term::shown;
    println!("{:<20} {:<12} {:<11} {:<10} {:<36}  fields / approval", "when (UTC)", "connector", "kind", "status", "run");
    for e in entries {
        let status = match e.http_status {
            Some(s) => format!("{} {s}", e.status),
            None => e.status.clone(),
        };
        let mut what = e.fields.join(", ");
        if let Some(a) = &e.approval {
            if !what.is_empty() {
                what.push_str("; ");
            }
            what.push_str(&format!("approved by {a}"));
        }
        println!(
            "{:<20} {:<12} {:<11} {:<10} {:<36}  {}",
            e.at.format("%Y-%m-%d %H:%M:%S"),
            shown(&e.connector),
            e.kind,
            status,
            e.run_id,
            shown(&what)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{ReconcileMark, RunRecord};

    fn run(id: &str, ended: bool) -> RunRecord {
        let at = chrono::DateTime::from_timestamp(1_780_000_000, 0).unwrap();
        RunRecord {
            run_id: id.into(),
            connector: "acme".into(),
            started_at: at,
            ended_at: ended.then_some(at),
            report: None,
            worker: None,
            fence: None,
        }
    }

    fn mark(id: &str, reason: &str) -> ReconcileMark {
        ReconcileMark { run_id: id.into(), reason: reason.into(), set_at: chrono::DateTime::from_timestamp(1_780_000_000, 0).unwrap() }
    }

    #[test]
    fn the_next_run_lists_the_platform_after_a_marker_or_a_run_that_died() {
        // A run that died mid-push left its marker; later runs ended (failing) without clearing it.
        let l = platform_lookup(Some(mark("r1", "push started")), Some(&run("r3", true)), false).expect("the marker shows");
        assert_eq!((l.run_id.as_str(), l.reason.as_deref()), ("r1", Some("push started")));
        assert!(l.why().starts_with("run r1 left writes the state may not have recorded (push started, 2026-"), "{}", l.why());
        // A failed adoption's marker, on a run that ended.
        let l = platform_lookup(Some(mark("r2", "1 create(s) or adoption(s) failed")), Some(&run("r2", true)), false).unwrap();
        assert!(l.why().contains("(1 create(s) or adoption(s) failed, "), "{}", l.why());
        // Killed before its push (no marker), nobody running it now.
        let l = platform_lookup(None, Some(&run("r4", false)), false).unwrap();
        assert_eq!((l.run_id.as_str(), l.reason.as_deref()), ("r4", None));
        assert!(l.why().contains("run r4 did not finish"), "{}", l.why());
        // A run in progress: its own marker and missing end say nothing of the next run...
        assert_eq!(platform_lookup(Some(mark("r5", "push started")), Some(&run("r5", false)), true), None);
        assert_eq!(platform_lookup(None, Some(&run("r5", false)), true), None);
        // ...but an older run's marker still holds.
        assert_eq!(platform_lookup(Some(mark("r1", "push started")), Some(&run("r5", false)), true).unwrap().run_id, "r1");
        // Nothing left behind.
        assert_eq!(platform_lookup(None, Some(&run("r6", true)), false), None);
        assert_eq!(platform_lookup(None, None, false), None);
    }
}
