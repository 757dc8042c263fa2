//! `rostersync test` and `rostersync fetch`: look at what a connector would read, push nothing.

use std::path::Path;

use super::term::shown;
use super::{Cli, CodedError};
use crate::exit::Exit;

pub async fn fetch(cli: &Cli, connector: &str, to: Option<&Path>) -> super::Result<i32> {
    let cfg = super::load_config(cli)?;
    // A new customer's mapping is drafted from a sample: its absence does not stop `fetch`.
    let conn = match cfg.unmapped.get(connector) {
        Some(c) => {
            tracing::info!("{connector}: its mapping has problems (`rostersync check`); fetching a sample anyway");
            c
        }
        None => cfg.connector(connector)?,
    };
    let dl = crate::sync::download(conn).await?;
    let Some(dl) = dl else {
        return Err(CodedError(Exit::Data, format!("{connector}: no file to fetch right now")).into());
    };
    let dir = to.unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let fp = dl.fingerprint.clone();
    let target = dl.keep_in(dir)?;
    if cli.json {
        println!("{}", serde_json::json!({"connector": connector, "file": fp, "saved_to": target}));
    } else {
        println!(
            "{}: {} ({} bytes, sha256 {}) saved to {}",
            connector,
            shown(&fp.path),
            fp.size,
            fp.sha256,
            shown(&target.display().to_string())
        );
    }
    Ok(0)
}

pub async fn test(cli: &Cli, connector: &str, plan_out: Option<&Path>) -> super::Result<i32> {
    let cfg = super::load_config(cli)?;
    let conn = cfg.connector(connector)?;
    let dl = crate::sync::download(conn).await?;
    let Some(dl) = dl else {
        return Err(CodedError(Exit::Data, format!("{connector}: no file to test right now")).into());
    };
    let mapped = crate::sync::parse_file(conn, &dl.path, &dl.name).await?;
    let invalid = mapped.rows - mapped.users.len() as u64;
    let allowed = conn.sync.max_invalid.allowed(mapped.rows);
    // What the file makes of people: a status map that keeps leavers active shows here as
    // an inactive count of zero, before any sync.
    let active = mapped.users.iter().filter(|u| u.user.active).count();
    let inactive = mapped.users.len() - active;
    // The plan, person by person: a dry run of this very file against the state (not
    // recorded in the history).
    let plan = dry_plan(&cfg, conn, &dl.path, cli.json || plan_out.is_some()).await;
    if let (Some(path), Ok(r)) = (plan_out, &plan) {
        super::sync::write_plan_out(path, r)?;
    }
    if cli.json {
        // Every operation: the run's listing when its report lists only the first ones.
        let operations = match &plan {
            Ok(r) => Some(match &r.listing {
                Some(l) => serde_json::to_value(l)?,
                None => serde_json::to_value(&r.report.operations)?,
            }),
            Err(_) => None,
        };
        println!(
            "{}",
            serde_json::json!({
                "connector": connector, "file": dl.fingerprint, "rows": mapped.rows,
                "valid": mapped.users.len(), "invalid": invalid, "active": active, "inactive": inactive,
                "errors": mapped.errors.iter().take(1000).collect::<Vec<_>>(),
                "preview": mapped.users.iter().take(10).map(|u| &u.user).collect::<Vec<_>>(),
                "operations": operations,
                "plan_error": plan.as_ref().err().map(|e| e.to_string()),
            })
        );
    } else {
        let n = super::term::Numbers::for_stdout();
        println!("{connector}: {} ({} bytes)", shown(&dl.fingerprint.path), n.count(dl.fingerprint.size));
        println!(
            "  rows {} — {} valid, {} invalid (max_invalid allows {})",
            n.count(mapped.rows),
            n.count(mapped.users.len() as u64),
            n.count(invalid),
            n.count(allowed)
        );
        println!("  people {active} active, {inactive} inactive (from the valid rows; an invalid row keeps its person as last synced)");
        println!();
        for line in crate::mapping::preview_table(&mapped.users, 10).lines() {
            println!("  {}", shown(line));
        }
        if !mapped.errors.is_empty() {
            println!();
            println!("  errors");
            for line in crate::mapping::group_errors(&mapped.errors).into_iter().take(10) {
                println!("    {}", shown(&line));
            }
        }
        println!();
        match &plan {
            Ok(r) if r.report.operations.is_empty() => println!("  plan     nothing to send"),
            Ok(r) => super::sync::print_operations(&r.report.operations, r.report.operations_left_out, super::sync::SHOWN_OPERATIONS),
            Err(e) => println!("  plan     not made: {}", shown(&e.to_string())),
        }
        println!();
        println!("nothing was pushed; `rostersync sync {connector} --dry-run` shows what a sync would do");
    }
    if mapped.rows == 0 {
        return Ok(Exit::Stopped.code());
    }
    Ok(if invalid > allowed { Exit::Stopped } else { Exit::Ok }.code())
}

/// A dry run of a downloaded file, unrecorded: what a sync of it would do.
pub(super) async fn dry_plan(
    cfg: &crate::config::Config,
    conn: &crate::config::Connector,
    file: &Path,
    all_operations: bool,
) -> super::Result<crate::sync::RunResult> {
    let store = crate::state::open(&cfg.state).await?;
    let opts = crate::sync::SyncOptions {
        dry_run: true,
        file: Some(file.to_path_buf()),
        force: true,
        origin: crate::sync::Origin::Cli,
        unrecorded: true,
        all_operations,
        ..Default::default()
    };
    Ok(crate::sync::run(cfg, conn, &store, &opts).await)
}
