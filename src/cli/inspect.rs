//! `rostersync test` and `rostersync fetch`: look at what a connector would read, push nothing.

use std::path::Path;

use super::term::shown;
use super::{Cli, CodedError};
use crate::exit::Exit;

pub async fn fetch(cli: &Cli, connector: &str, to: Option<&Path>) -> anyhow::Result<i32> {
    let cfg = super::load_config(cli)?;
    // A new customer's mapping is drafted from a sample: its absence does not stop `fetch`.
    let conn = match cfg.unmapped.get(connector) {
        Some(c) => {
            tracing::info!("{connector}: its mapping has problems (`rostersync check`); fetching a sample anyway");
            c
        }
        None => cfg.connector(connector)?,
    };
    let dl = crate::sync::download(conn).await.map_err(|e| CodedError(e.exit, e.message))?;
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

pub async fn test(cli: &Cli, connector: &str) -> anyhow::Result<i32> {
    let cfg = super::load_config(cli)?;
    let conn = cfg.connector(connector)?;
    let dl = crate::sync::download(conn).await.map_err(|e| CodedError(e.exit, e.message))?;
    let Some(dl) = dl else {
        return Err(CodedError(Exit::Data, format!("{connector}: no file to test right now")).into());
    };
    let mapped = crate::sync::parse_file(conn, &dl.path, &dl.name).await.map_err(|e| CodedError(e.exit, e.message))?;
    let invalid = mapped.rows - mapped.users.len() as u64;
    let allowed = conn.sync.max_invalid.allowed(mapped.rows);
    // What the file makes of people: a status map that keeps leavers active shows here as
    // an inactive count of zero, before any sync.
    let active = mapped.users.iter().filter(|u| u.user.active).count();
    let inactive = mapped.users.len() - active;
    if cli.json {
        println!(
            "{}",
            serde_json::json!({
                "connector": connector, "file": dl.fingerprint, "rows": mapped.rows,
                "valid": mapped.users.len(), "invalid": invalid, "active": active, "inactive": inactive,
                "errors": mapped.errors.iter().take(1000).collect::<Vec<_>>(),
                "preview": mapped.users.iter().take(10).map(|u| &u.user).collect::<Vec<_>>(),
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
        println!("nothing was pushed; `rostersync sync {connector} --dry-run` shows what a sync would do");
    }
    if mapped.rows == 0 {
        return Ok(Exit::Stopped.code());
    }
    Ok(if invalid > allowed { Exit::Stopped } else { Exit::Ok }.code())
}
