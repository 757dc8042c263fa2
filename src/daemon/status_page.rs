//! The daemon's status page on `[daemon] listen`: `/` lists every connector (customer,
//! schedule and next run in its timezone, last run, outcome, counts, first errors, a plan
//! stopped by a safeguard), `/connectors/NAME` its recent runs. Server-rendered HTML that
//! refreshes itself (meta refresh): no script, so it works in any browser and behind any
//! proxy that strips JavaScript.
//!
//! Every value is HTML-escaped (`esc`): connector names come from the configuration, error
//! texts from customers' files and from servers. The pages are built by pure functions
//! (`index`, `connector_page`) from a `Board` read at the edge (`Board::overview`).

use crate::plan::Safeguard;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

use crate::config::Connector;
use crate::report::{Report, RunOutcome};
use crate::state::prelude::*;
use crate::state::{RunRecord, Store, StoredPlan};

/// Seconds between the page's own refreshes.
const REFRESH_SECS: u32 = 30;
/// Runs read per connector for `/` (the newest is shown; see `route`).
const INDEX_RUNS: u32 = 3;
/// Runs listed on a connector's page.
const RECENT_RUNS: u32 = 25;
/// Errors shown per run: the page is for a glance, `history --json` has them all.
const FIRST_ERRORS: usize = 3;

/// Path segment encoding of connector names in links: everything but `A-Za-z0-9-_.~`.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// What the status page reads: the connectors the daemon runs now (replaced on reload)
/// and the state store's history.
pub struct Board {
    connectors: RwLock<Arc<crate::config::Connectors>>,
    problems: RwLock<Arc<Vec<String>>>,
    store: Arc<Store>,
}

/// One connector as the page shows it.
pub struct Row {
    pub name: String,
    pub customer: String,
    /// The platform target it sends to (`config::Target::name`).
    pub target: Option<String>,
    pub schedule: Option<String>,
    pub tz: Tz,
    pub next_run: Option<DateTime<Utc>>,
    pub runs: Vec<RunRecord>,
    /// A plan stopped and waiting for someone to approve it (see `awaiting_approval`).
    pub awaiting_approval: Option<String>,
}

/// Everything one page needs, read at once.
pub struct Overview {
    pub rows: Vec<Row>,
    pub problems: Vec<String>,
    pub now: DateTime<Utc>,
}

impl Board {
    pub fn new(store: Arc<Store>) -> Board {
        Board { connectors: RwLock::new(Arc::default()), problems: RwLock::new(Arc::default()), store }
    }

    /// The connectors the daemon runs (after start and after each reload), and the
    /// configuration problems it logged (connectors left out or kept on their old definition).
    pub fn set(&self, connectors: crate::config::Connectors, problems: Vec<String>) {
        // A poisoned lock only means a panic elsewhere mid-swap; the value is still whole.
        *self.connectors.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(connectors);
        *self.problems.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(problems);
    }

    fn current(&self) -> (Arc<crate::config::Connectors>, Arc<Vec<String>>) {
        (self.connectors.read().unwrap_or_else(|e| e.into_inner()).clone(), self.problems.read().unwrap_or_else(|e| e.into_inner()).clone())
    }

    /// Reads what the page shows: `runs` recent runs of the connectors in `only` (all when None).
    pub async fn overview(&self, only: Option<&str>, runs: u32) -> Overview {
        let (connectors, problems) = self.current();
        let now = Utc::now();
        let mut rows = Vec::new();
        for c in connectors.values().filter(|c| only.is_none_or(|o| o == c.name)) {
            let history = match self.store.history(Some(&c.name), runs).await {
                Ok(h) => h,
                Err(e) => {
                    tracing::warn!(connector = %c.name, "status page: cannot read run history: {e}");
                    Vec::new()
                }
            };
            let next_run = c.schedule.as_ref().and_then(|s| s.next_after(now)).map(|slot| slot + jitter(c, slot));
            rows.push(Row {
                name: c.name.clone(),
                customer: c.customer.clone(),
                target: c.target.as_ref().map(|t| t.name.clone()),
                schedule: c.schedule.as_ref().map(|s| s.spec.clone()),
                tz: c.schedule.as_ref().map(|s| s.tz).unwrap_or(Tz::UTC),
                next_run,
                awaiting_approval: self.awaiting(&c.name, &history).await,
                runs: history,
            });
        }
        Overview { rows, problems: problems.to_vec(), now }
    }

    /// The page for `path`, or None when the path is not the status page's.
    pub async fn route(&self, path: &str) -> Option<(u16, String)> {
        if path == "/" {
            // A few runs, not one: while a run is in progress the newest record has no report,
            // and the stopped plan awaiting approval is in the one before.
            return Some((200, index(&self.overview(None, INDEX_RUNS).await)));
        }
        let name = path.strip_prefix("/connectors/")?;
        let name = percent_decode_str(name).decode_utf8_lossy();
        let view = self.overview(Some(&name), RECENT_RUNS).await;
        Some(match view.rows.first() {
            Some(row) => (200, connector_page(row, view.now)),
            None => (404, not_found(&name)),
        })
    }
}

fn jitter(c: &Connector, slot: DateTime<Utc>) -> chrono::Duration {
    chrono::Duration::from_std(crate::schedule::jitter_for(&c.name, slot, c.jitter)).unwrap_or_default()
}

impl Board {
    /// The stored runs of the connectors with neither a sync nor a reconcile schedule (run
    /// by hand, in other processes), for /metrics: one short history read each.
    pub async fn manual_runs(&self) -> BTreeMap<String, crate::daemon::metrics::ManualRuns> {
        let (connectors, _) = self.current();
        let mut out = BTreeMap::new();
        for c in connectors.values().filter(|c| c.schedule.is_none() && c.reconcile.is_none()) {
            // Deep enough that a few failures in a row do not hide the last success.
            match self.store.history(Some(&c.name), 20).await {
                Ok(h) => {
                    out.insert(c.name.clone(), crate::daemon::metrics::ManualRuns::from_history(&h));
                }
                // Left out of this scrape (a gap in the series), not shown as never run.
                Err(e) => tracing::warn!(connector = %c.name, "/metrics: cannot read run history: {e}"),
            }
        }
        out
    }

    /// The plan this connector waits on, read from the stored plans (`approve` applies it).
    async fn awaiting(&self, connector: &str, history: &[RunRecord]) -> Option<String> {
        let pending = match self.store.pending_plan(connector).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(connector, "status page: cannot read stored plans: {e}");
                None
            }
        };
        awaiting_approval(history, pending.as_ref())
    }
}

/// A plan stopped by a safeguard and waiting for a person. The stored plan says which; the
/// last finished run says whether it still stands: the stopped run itself, or a later slot
/// that waited on the same file (`approve_with`). A later run that synced replaced it.
pub fn awaiting_approval(history: &[RunRecord], pending: Option<&StoredPlan>) -> Option<String> {
    let last = history.iter().find_map(|r| r.report.as_ref())?;
    let still = last.approve_with.is_some() || matches!(last.outcome, RunOutcome::Stopped);
    match (pending, still) {
        (Some(p), true) if !p.dry_run => Some(format!(
            "plan stopped by {}: nothing was pushed; awaiting approval (`rostersync plan show {}` lists it, `rostersync approve {} --reason \"…\"` applies it)",
            Safeguard::shown_rule(&p.rule),
            p.run_id,
            p.run_id
        )),
        // A stop whose plan was not stored (an unreadable or empty file): a fixed export, or
        // `sync --allow-mass-change --reason`, is what it waits for.
        _ => match (&last.outcome, &last.stopped_by) {
            (RunOutcome::Stopped, Some(rule)) => {
                Some(format!("plan stopped by {}: nothing was pushed; awaiting a fixed export or an override", Safeguard::shown_rule(rule)))
            }
            _ => None,
        },
    }
}

/// Text for HTML element content and attribute values (both quotes escaped).
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

fn link(name: &str) -> String {
    format!("/connectors/{}", utf8_percent_encode(name, SEGMENT))
}

fn in_tz(t: DateTime<Utc>, tz: Tz) -> String {
    t.with_timezone(&tz).format("%Y-%m-%d %H:%M:%S %Z").to_string()
}

fn outcome(r: Option<&Report>) -> (&'static str, &'static str) {
    match r.map(|r| r.outcome) {
        Some(RunOutcome::Ok) => ("ok", "ok"),
        Some(RunOutcome::NoNewFile) => ("no new file", "ok"),
        Some(RunOutcome::Stopped) => ("stopped", "warn"),
        Some(RunOutcome::Failed) => ("failed", "bad"),
        None => ("running or interrupted", "warn"),
    }
}

fn counts(r: &Report) -> String {
    let c = &r.counts;
    let mut parts = vec![format!("{} rows", c.rows)];
    for (label, n) in [
        ("invalid", c.invalid),
        ("created", c.created),
        ("adopted", c.adopted),
        ("rekeyed", c.rekeyed),
        ("updated", c.updated),
        ("deactivated", c.deactivated),
        ("deleted", c.deleted),
        ("failed", c.failed),
        ("conflicts", c.conflicts),
    ] {
        if n > 0 {
            parts.push(format!("{label} {n}"));
        }
    }
    if r.dry_run {
        parts.push("dry run".into());
    }
    esc(&parts.join(" · "))
}

/// The reason and the first errors of a run, escaped, as list items.
fn errors(r: &Report) -> String {
    let mut o = String::new();
    if let Some(m) = &r.message {
        let _ = write!(o, "<li>{}</li>", esc(m));
    }
    if r.stale {
        o.push_str("<li>the export stopped coming (stale)</li>");
    }
    for e in r.errors.iter().take(FIRST_ERRORS) {
        let col = e.column.as_deref().map(|c| format!(", column {c}")).unwrap_or_default();
        let _ = write!(o, "<li>line {}{}: {}</li>", e.line, esc(&col), esc(&e.message));
    }
    let more = (r.errors.len().saturating_sub(FIRST_ERRORS)) as u64 + r.errors_left_out;
    if more > 0 {
        let _ = write!(o, "<li>… and {more} more (<code>rostersync history --json</code>)</li>");
    }
    if o.is_empty() { String::new() } else { format!("<ul class=\"errors\">{o}</ul>") }
}

fn page(title: &str, body: &str, now: DateTime<Utc>) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta http-equiv=\"refresh\" content=\"{REFRESH_SECS}\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{}</title><style>\
body{{font-family:system-ui,sans-serif;margin:1.5rem;color:#222}}\
table{{border-collapse:collapse;width:100%}}th,td{{text-align:left;vertical-align:top;padding:.35rem .6rem;border-bottom:1px solid #ddd}}\
th{{background:#f4f4f4}}.t{{white-space:nowrap}}.ok{{color:#1a7f37}}.warn{{color:#9a6700}}.bad{{color:#cf222e;font-weight:bold}}\
.errors{{margin:0;padding-left:1rem;font-size:.9em}}.approval{{background:#fff8c5}}small{{color:#666}}\
</style></head><body>\n{body}\n<p><small>rostersync {} · generated {} UTC · refreshes every {REFRESH_SECS} s · \
<a href=\"/metrics\">/metrics</a> · <a href=\"/healthz\">/healthz</a></small></p></body></html>\n",
        esc(title),
        esc(crate::build_info::LONG_VERSION),
        now.format("%Y-%m-%d %H:%M:%S")
    )
}

/// `/`: one row per connector.
pub fn index(v: &Overview) -> String {
    let mut b = String::with_capacity(4096 + v.rows.len() * 512);
    let _ = write!(b, "<h1>rostersync</h1><p id=\"summary\">{} connector(s)</p>", v.rows.len());
    if !v.problems.is_empty() {
        b.push_str("<h2>Configuration problems</h2><ul id=\"problems\" class=\"bad\">");
        for p in &v.problems {
            let _ = write!(b, "<li>{}</li>", esc(p));
        }
        b.push_str("</ul>");
    }
    b.push_str(
        "<table id=\"connectors\"><thead><tr><th>connector</th><th>customer</th><th>target</th><th>schedule</th><th>next run</th>\
<th>last run</th><th>outcome</th><th>counts</th><th>errors</th></tr></thead><tbody>\n",
    );
    for r in &v.rows {
        let last = r.runs.first();
        let report = last.and_then(|l| l.report.as_ref());
        let (word, class) = match last {
            Some(_) => outcome(report),
            None => ("never ran", "warn"),
        };
        let approval = r
            .awaiting_approval
            .as_deref()
            .map(|a| format!("<tr class=\"approval\"><td></td><td colspan=\"8\">{}</td></tr>", esc(a)))
            .unwrap_or_default();
        let _ = writeln!(
            b,
            "<tr class=\"connector\" data-connector=\"{n}\"><td><a href=\"{href}\">{n}</a></td><td>{cust}</td><td class=\"target\">{target}</td><td>{sched}</td><td class=\"t\">{next}</td>\
<td class=\"t\">{last}</td><td class=\"{class}\">{word}</td><td>{counts}</td><td>{errors}</td></tr>{approval}",
            n = esc(&r.name),
            href = esc(&link(&r.name)),
            cust = esc(&r.customer),
            target = esc(r.target.as_deref().unwrap_or("—")),
            sched = r
                .schedule
                .as_deref()
                .map(|s| format!("{} <small>({})</small>", esc(s), esc(r.tz.name())))
                .unwrap_or_else(|| "by hand only".into()),
            next = r.next_run.map(|t| esc(&in_tz(t, r.tz))).unwrap_or_else(|| "—".into()),
            last = last.map(|l| esc(&in_tz(l.started_at, r.tz))).unwrap_or_else(|| "—".into()),
            counts = report.map(counts).unwrap_or_default(),
            errors = report.map(errors).unwrap_or_default(),
        );
    }
    b.push_str("</tbody></table>");
    page("rostersync", &b, v.now)
}

/// `/connectors/NAME`: the connector and its recent runs.
pub fn connector_page(r: &Row, now: DateTime<Utc>) -> String {
    let mut b = String::with_capacity(8192);
    let _ = write!(
        b,
        "<p><a href=\"/\">← all connectors</a></p><h1 id=\"connector\">{}</h1><p>customer {} · target <span id=\"target\">{}</span> · schedule {} · next run {}</p>",
        esc(&r.name),
        esc(&r.customer),
        esc(r.target.as_deref().unwrap_or("—")),
        r.schedule.as_deref().map(|s| format!("{} ({})", esc(s), esc(r.tz.name()))).unwrap_or_else(|| "by hand only".into()),
        r.next_run.map(|t| esc(&in_tz(t, r.tz))).unwrap_or_else(|| "—".into()),
    );
    if let Some(a) = &r.awaiting_approval {
        let _ = write!(b, "<p class=\"approval\" id=\"approval\">{}</p>", esc(a));
    }
    b.push_str(
        "<table id=\"runs\"><thead><tr><th>started</th><th>duration</th><th>outcome</th><th>file</th><th>counts</th><th>errors</th>\
<th>run id</th></tr></thead><tbody>\n",
    );
    if r.runs.is_empty() {
        b.push_str("<tr><td colspan=\"7\">no run yet</td></tr>");
    }
    for run in &r.runs {
        let report = run.report.as_ref();
        let (word, class) = outcome(report);
        let stopped = report
            .and_then(|x| x.stopped_by.as_deref())
            .map(|s| format!(" <small>by {}</small>", esc(&Safeguard::shown_rule(s))))
            .unwrap_or_default();
        let _ = writeln!(
            b,
            "<tr class=\"run\"><td class=\"t\">{}</td><td>{}</td><td class=\"{class}\">{word}{stopped}</td><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
            esc(&in_tz(run.started_at, r.tz)),
            report.map(|x| esc(&crate::text::duration_words(std::time::Duration::from_millis(x.duration_ms)))).unwrap_or_default(),
            report.and_then(|x| x.file.as_ref()).map(|f| esc(&f.path)).unwrap_or_default(),
            report.map(counts).unwrap_or_default(),
            report.map(errors).unwrap_or_default(),
            esc(&run.run_id),
        );
    }
    b.push_str("</tbody></table>");
    page(&format!("{} · rostersync", r.name), &b, now)
}

fn not_found(name: &str) -> String {
    page(
        "not found · rostersync",
        &format!("<h1>No connector named “{}”</h1><p><a href=\"/\">All connectors</a></p>", esc(name)),
        Utc::now(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::RowError;

    fn row(name: &str, runs: Vec<RunRecord>) -> Row {
        Row {
            name: name.into(),
            customer: "Acme & <Co>".into(),
            target: Some("org <acme>".into()),
            schedule: Some("daily 02:00".into()),
            tz: "Europe/Paris".parse().unwrap(),
            next_run: Some(DateTime::parse_from_rfc3339("2026-12-02T01:00:00Z").unwrap().with_timezone(&Utc)),
            awaiting_approval: awaiting_approval(&runs, Some(&plan_of("run-1"))),
            runs,
        }
    }

    fn plan_of(run: &str) -> StoredPlan {
        StoredPlan {
            run_id: run.into(),
            connector: "a".into(),
            created_at: Utc::now(),
            file: crate::model::FileFingerprint { path: "e.csv".into(), size: 1, mtime: None, sha256: "00".into() },
            state_fingerprint: String::new(),
            digest: String::new(),
            rule: "max_deactivations".into(),
            message: String::new(),
            dry_run: false,
            operations: Vec::new(),
            operations_left_out: 0,
            approved: None,
        }
    }

    fn stopped_run(connector: &str) -> RunRecord {
        let mut rep = Report::new(connector, "run-1", false);
        rep.outcome = RunOutcome::Stopped;
        rep.stopped_by = Some("max_deactivations".into());
        rep.message = Some("<b>would deactivate 60 %</b>".into());
        rep.errors = vec![RowError { line: 7, column: Some("Email\"><script>".into()), message: "bad <email>".into(), external_id: None }];
        let at = DateTime::parse_from_rfc3339("2026-12-01T01:00:00Z").unwrap().with_timezone(&Utc);
        RunRecord {
            run_id: "run-1".into(),
            connector: connector.into(),
            started_at: at,
            ended_at: Some(at),
            report: Some(rep),
            worker: None,
            fence: None,
        }
    }

    #[test]
    fn every_value_is_escaped_and_times_are_in_the_connectors_timezone() {
        let hostile = "<img src=x onerror=alert(1)>\"'&";
        let v =
            Overview { rows: vec![row(hostile, vec![stopped_run(hostile)])], problems: vec!["<script>x</script>".into()], now: Utc::now() };
        let html = index(&v);
        assert!(!html.contains("<img") && !html.contains("<script") && !html.contains("<b>"), "{html}");
        assert!(html.contains("&lt;img src=x onerror=alert(1)&gt;&quot;&#39;&amp;"), "{html}");
        assert!(html.contains("Acme &amp; &lt;Co&gt;"), "{html}");
        assert!(html.contains("<td class=\"target\">org &lt;acme&gt;</td>"), "the target, escaped: {html}");
        assert!(html.contains("/connectors/%3Cimg%20src%3Dx%20onerror%3Dalert%281%29%3E%22%27%26"), "{html}");
        // 01:00 UTC is 02:00 in Paris in December.
        assert!(html.contains("2026-12-02 02:00:00 CET"), "{html}");
        assert!(html.contains("plan stopped by max_deactivations"), "{html}");
        assert!(html.contains("line 7, column Email&quot;&gt;&lt;script&gt;: bad &lt;email&gt;"), "{html}");
        assert!(html.contains("<meta http-equiv=\"refresh\""), "{html}");

        let page = connector_page(&v.rows[0], v.now);
        assert!(!page.contains("<img") && !page.contains("<script"), "{page}");
        assert!(page.contains("id=\"approval\""), "{page}");
        assert!(page.contains("<code>run-1</code>"), "{page}");
        assert!(page.contains("target <span id=\"target\">org &lt;acme&gt;</span>"), "{page}");
    }

    #[test]
    fn a_run_in_progress_does_not_hide_the_stopped_plan_before_it() {
        let mut running = stopped_run("a");
        running.report = None;
        running.ended_at = None;
        let runs = vec![running, stopped_run("a")];
        assert!(awaiting_approval(&runs, Some(&plan_of("run-1"))).is_some());
        let html = index(&Overview { rows: vec![row("a", runs)], problems: vec![], now: Utc::now() });
        assert!(html.contains("running or interrupted") && html.contains("awaiting approval"), "{html}");
    }

    #[test]
    fn a_run_that_succeeded_after_the_stop_clears_the_approval() {
        let mut runs = vec![stopped_run("a")];
        let mut ok = stopped_run("a");
        ok.report.as_mut().unwrap().outcome = RunOutcome::Ok;
        ok.report.as_mut().unwrap().stopped_by = None;
        runs.insert(0, ok);
        assert_eq!(awaiting_approval(&runs, Some(&plan_of("run-1"))), None);
        assert!(awaiting_approval(&runs[1..], Some(&plan_of("run-1"))).is_some());
    }

    #[test]
    fn a_slot_that_waited_on_the_stopped_file_keeps_the_approval_and_names_the_command() {
        let mut waited = stopped_run("a");
        let rep = waited.report.as_mut().unwrap();
        rep.outcome = RunOutcome::NoNewFile;
        rep.stopped_by = None;
        rep.approve_with = Some("rostersync approve run-1 --reason \"…\"".into());
        let runs = vec![waited, stopped_run("a")];
        let text = awaiting_approval(&runs, Some(&plan_of("run-1"))).unwrap();
        assert!(text.contains("plan stopped by max_deactivations") && text.contains("rostersync approve run-1"), "{text}");
        // Without a stored plan (an unreadable file stopped it) a stop still shows, with what it waits for.
        let text = awaiting_approval(&runs[1..], None).unwrap();
        assert!(text.contains("awaiting a fixed export"), "{text}");
        assert_eq!(awaiting_approval(&runs[..1], None), None);
    }
}
