//! `rostersync explain CONNECTOR ID`: one person, end to end. Their row in the file the
//! connector would take now (file, line, the raw values of the mapped columns), the user it
//! maps to or the row's errors, what the state holds, the decision the plan makes and why,
//! and the last operations sent (the audit trail). Without the file (the source is down, or
//! the person is absent) the state and the trail are still shown.

use std::path::Path;

use super::Cli;
use super::term::shown;
use crate::config::Connector;
use crate::format::ReadError;
use crate::mapping::Mapper;
use crate::model::{RowError, User};
use crate::state::prelude::*;

/// A row of the file whose unique id is the person's.
struct Hit {
    line: u64,
    /// (column, raw value) of each mapped column.
    values: Vec<(String, Option<String>)>,
    mapped: Result<User, Vec<RowError>>,
}

/// Reads the file for the person's rows (CPU and disk: call it on a blocking thread).
fn find_rows(conn: &Connector, path: &Path, name: &str, id: &str) -> Result<Vec<Hit>, String> {
    let format = match conn.file.format {
        Some(f) => f,
        None => crate::format::detect(path, name).map_err(|e| e.to_string())?,
    };
    let mut mapping = conn.mapping.clone();
    mapping.source.limits.max_size = conn.file.max_size;
    let rule = mapping.id_rule();
    let key = rule.key(id).into_owned();
    let mapper = Mapper::new(&mapping);
    let columns = mapper.columns().to_vec();
    let records = crate::format::open(path, name, format, &mapping.source, &columns).map_err(|e| e.to_string())?;
    let mut hits = Vec::new();
    for r in records {
        let (record, error) = match r {
            Ok(rec) => (rec, None),
            Err(ReadError::Row { error, cells: Some(rec) }) => (rec, Some(error)),
            Err(ReadError::Row { cells: None, .. } | ReadError::Sparse { .. }) => continue,
            Err(ReadError::File(e)) => return Err(e.to_string()),
        };
        if mapper.external_id(&record).is_none_or(|x| rule.key(&x) != key) {
            continue;
        }
        let values = columns.iter().enumerate().map(|(i, c)| (c.clone(), record.get(i).map(String::from))).collect();
        let mapped = match error {
            Some(e) => Err(vec![e]),
            None => mapper.map(&record),
        };
        hits.push(Hit { line: record.line, values, mapped });
    }
    Ok(hits)
}

pub async fn run(cli: &Cli, connector: &str, id: &str) -> super::Result<i32> {
    let cfg = super::load_config(cli)?;
    let conn = cfg.connector(connector)?.clone();
    let store = crate::state::open(&cfg.state).await?;

    // The file, its rows for this person, and the plan's decision for them alone.
    let mut file = None;
    let rows: Result<Vec<Hit>, String>;
    let mut decision = None;
    match crate::sync::download(&conn).await {
        Ok(Some(dl)) => {
            let (c, path, name, pid) = (conn.clone(), dl.path.clone(), dl.name.clone(), id.to_string());
            rows = tokio::task::spawn_blocking(move || find_rows(&c, &path, &name, &pid))
                .await
                .unwrap_or_else(|e| Err(format!("the reading thread failed: {e}")));
            // What a full run decides for them: on_missing applies, and the whole file's
            // safeguards (`sync --dry-run` shows those) do not hide the decision.
            let opts = crate::sync::SyncOptions {
                dry_run: true,
                file: Some(dl.path.clone()),
                force: true,
                allow_mass_change: true,
                only: Some(vec![id.to_string()]),
                allow_absent: true,
                origin: crate::sync::Origin::Cli,
                unrecorded: true,
                all_operations: true,
                ..Default::default()
            };
            let res = crate::sync::run(&cfg, &conn, &store, &opts).await;
            decision = Some(res.report);
            file = Some(dl.fingerprint);
        }
        Ok(None) => rows = Err("no file to take right now".into()),
        Err(e) => rows = Err(e.to_string()),
    }

    // The state.
    let rule = conn.mapping.id_rule();
    let snapshot = store.snapshot(&conn.name).await?;
    let stored_id = snapshot.keys().find(|k| rule.key(k) == rule.key(id)).cloned();
    let entry = stored_id.as_ref().and_then(|k| snapshot.get(k).cloned());
    drop(snapshot);
    let content = match &stored_id {
        Some(k) => store.contents(&conn.name, &[k.as_str()]).await?.remove(k),
        None => None,
    };
    let trail = store.person_history(Some(&conn.name), stored_id.as_deref().unwrap_or(id), 10).await?;

    let op = decision.as_ref().and_then(|r| r.operations.iter().find(|o| rule.key(&o.external_id) == rule.key(id)).cloned());
    let why = verdict(&conn, &rows, entry.as_ref(), op.is_some(), decision.as_ref());
    // `[groups]`: the groups this person would join and leave.
    let groups = decision.as_ref().and_then(|r| r.groups.clone());

    if cli.json {
        let rows_json = match &rows {
            Ok(hits) => serde_json::json!(
                hits.iter()
                    .map(|h| serde_json::json!({
                        "line": h.line,
                        "values": h.values.iter().map(|(c, v)| (c.clone(), serde_json::json!(v))).collect::<serde_json::Map<_, _>>(),
                        "user": h.mapped.as_ref().ok(),
                        "errors": h.mapped.as_ref().err(),
                    }))
                    .collect::<Vec<_>>()
            ),
            Err(_) => serde_json::Value::Null,
        };
        println!(
            "{}",
            serde_json::json!({
                "connector": conn.name, "target": conn.target.as_ref().map(|t| &t.name), "external_id": id, "file": file,
                "file_error": rows.as_ref().err(),
                "rows": rows_json,
                "state": entry.as_ref().map(|e| serde_json::json!({
                    "external_id": stored_id, "platform_id": e.platform_id, "active": e.active, "content": content,
                })),
                "decision": op, "why": why, "groups": groups,
                "operations": trail.iter().map(super::history::audit_json).collect::<Vec<_>>(),
            })
        );
        return Ok(0);
    }

    let target = conn.target.as_ref().map(|t| format!(" (target {})", shown(&t.name))).unwrap_or_default();
    println!("{} in connector {}{target}", shown(id), shown(&conn.name));
    match (&file, &rows) {
        (Some(f), Ok(hits)) => {
            println!("  file     {} (sha256 {}…)", shown(&f.path), &f.sha256[..f.sha256.len().min(12)]);
            if hits.is_empty() {
                println!("  row      none: absent from the file");
            }
            for h in hits {
                println!("  row      line {}", h.line);
                for (c, v) in &h.values {
                    println!(
                        "    {:<24} {}",
                        shown(c),
                        v.as_deref().map(|v| format!("\"{}\"", shown(v))).unwrap_or_else(|| "(empty)".into())
                    );
                }
                match &h.mapped {
                    Ok(u) => println!("  maps to  {}", shown(&serde_json::to_string(u).unwrap_or_default())),
                    Err(errs) => {
                        println!("  invalid");
                        for e in errs {
                            println!("    {}", shown(&e.message));
                        }
                    }
                }
            }
        }
        (_, Err(e)) => println!("  file     not read: {}", shown(e)),
        (None, Ok(_)) => {}
    }
    match (&entry, &content) {
        (Some(e), c) => {
            let state = if e.active { "active" } else { "inactive" };
            println!("  state    platform account {}, {state}", shown(&e.platform_id));
            if let Some(u) = c {
                println!("    last pushed {}", shown(&serde_json::to_string(u).unwrap_or_default()));
            }
        }
        (None, _) => println!("  state    not synced by this connector"),
    }
    match &op {
        Some(o) => {
            println!("  decision {}: {}", o.kind.word(), shown(&o.reason));
            for c in &o.changes {
                println!("    {}: {:?} → {:?}", shown(&c.field), c.old.as_deref().unwrap_or(""), c.new.as_deref().unwrap_or(""));
            }
        }
        None => println!("  decision {}", shown(&why)),
    }
    if let Some(g) = &groups {
        super::sync::print_groups(g, true);
    }
    if trail.is_empty() {
        println!("  sent     nothing recorded (kept for {})", crate::text::duration_words(cfg.state.audit_retention));
    } else {
        println!("  sent");
        super::history::print_audit(&trail);
    }
    Ok(0)
}

/// Why no operation is planned for the person (or the plan's reason, when there is one).
fn verdict(
    conn: &Connector,
    rows: &Result<Vec<Hit>, String>,
    entry: Option<&crate::plan::SnapshotEntry>,
    planned: bool,
    report: Option<&crate::report::Report>,
) -> String {
    if planned {
        return "planned (see decision)".into();
    }
    if let Some(why) = report.and_then(lifecycle_verdict) {
        return why;
    }
    if let Some(m) = report.and_then(|r| r.message.as_ref()).filter(|_| report.is_some_and(|r| r.outcome != crate::report::RunOutcome::Ok))
    {
        return format!("no plan: {m}");
    }
    match (rows, entry) {
        (Err(_), Some(_)) => "unknown without the file; the state above is what the platform was last sent".into(),
        (Err(_), None) => "unknown: neither the file nor the state has them".into(),
        (Ok(hits), _) if hits.iter().any(|h| h.mapped.is_err()) => {
            "nothing: the row is invalid, so the person keeps what was last synced (fix the row; the next run applies it)".into()
        }
        (Ok(hits), Some(_)) if hits.len() > 1 => "nothing: the id is on several rows (duplicates are not synced)".into(),
        (Ok(hits), Some(_)) if !hits.is_empty() => "nothing: the file's content equals what was last synced (unchanged)".into(),
        (Ok(_), Some(e)) if !e.active => "nothing: absent from the file and already inactive".into(),
        (Ok(_), Some(_)) => match conn.sync.on_missing {
            crate::config::OnMissing::Ignore => "nothing: absent from the file, and on_missing = \"ignore\"".into(),
            _ => "nothing: absent from the file, but held (a row of the file has no readable id and may be theirs)".into(),
        },
        (Ok(_), None) => "nothing: neither in the file nor synced by this connector".into(),
    }
}

/// What the employee lifecycle decided for the person (`plan::lifecycle`), if it held them
/// back: the dry run `explain` makes is scoped to them, so its lists are theirs alone.
fn lifecycle_verdict(report: &crate::report::Report) -> Option<String> {
    let held = &report.lifecycle;
    if let Some(p) = held.protected.first() {
        return Some(format!(
            "nothing: the account is protected ([sync] protected names \"{p}\"); rostersync never adopts, changes, deactivates or deletes it"
        ));
    }
    if let Some(p) = held.pending.people.first() {
        return Some(format!(
            "nothing yet: a future hire starting {}; their account is made on {} ([sync] create_lead), inactive until the start date",
            p.start_date, p.created_on
        ));
    }
    if let Some(g) = held.in_grace.people.first() {
        return Some(format!(
            "nothing yet: absent from the file since {}, and in grace until {} ([sync] deactivate_after); the first run after that applies on_missing if they are still absent",
            g.absent_since.format("%Y-%m-%d %H:%M UTC"),
            g.until.format("%Y-%m-%d %H:%M UTC")
        ));
    }
    if let Some(p) = held.out_of_scope.people.first() {
        return Some(if p.known {
            "nothing: the row is out of the mapping's [scope], and out_of_scope = \"ignore\": the account stays as it is, no longer synced"
                .into()
        } else {
            "nothing: the row is out of the mapping's [scope], so the person gets no account".into()
        });
    }
    if !held.skipped.people.is_empty() {
        return Some(
            "nothing: inactive in the file and never given an account, so none is made (skipped; set create_inactive = true in [sync] to create leavers' accounts)"
                .into(),
        );
    }
    None
}
