//! `rostersync plan show RUN_ID` and `rostersync approve RUN_ID --reason "…"`: the plan a
//! safeguard stopped, and applying exactly it (the sync refuses when the file or the state
//! is no longer what the plan was made from: `sync::persons`).

use super::term::shown;
use super::{Cli, CodedError};
use crate::exit::Exit;
use crate::state::prelude::*;
use crate::state::{Store, StoredPlan};

async fn load(cli: &Cli, run_id: &str) -> super::Result<(crate::config::Config, Store, StoredPlan)> {
    let cfg = super::load_config(cli)?;
    let store = crate::state::open(&cfg.state).await?;
    let Some(plan) = store.stored_plan(run_id).await? else {
        return Err(CodedError(
            Exit::Config,
            format!(
                "no stored plan for run {run_id}: only runs a safeguard stopped keep one, for {} (`rostersync history CONNECTOR` lists runs)",
                humantime::format_duration(cfg.state.audit_retention)
            ),
        )
        .into());
    };
    Ok((cfg, store, plan))
}

pub async fn show(cli: &Cli, run_id: &str) -> super::Result<i32> {
    let (_, _, p) = load(cli, run_id).await?;
    if cli.json {
        println!(
            "{}",
            serde_json::json!({
                "run_id": p.run_id, "connector": p.connector, "created_at": p.created_at, "file": p.file,
                "state_fingerprint": p.state_fingerprint, "digest": p.digest, "stopped_by": p.rule, "message": p.message,
                "dry_run": p.dry_run, "operations": p.operations, "operations_left_out": p.operations_left_out,
                "approval": p.approved.as_ref().map(|(a, _)| a), "applied_by_run": p.approved.as_ref().map(|(_, r)| r),
            })
        );
        return Ok(0);
    }
    println!("{}: plan of run {} ({}), stopped by {}", shown(&p.connector), p.run_id, p.created_at.format("%Y-%m-%d %H:%M:%S UTC"), p.rule);
    println!("  file     {} ({} bytes, sha256 {})", shown(&p.file.path), p.file.size, p.file.sha256);
    println!("  {}", shown(&p.message));
    super::sync::print_operations(&p.operations, p.operations_left_out, usize::MAX);
    match &p.approved {
        Some((a, run)) => println!("  approved by {} at {}: {} (applied by run {run})", shown(&a.by), a.at, shown(&a.reason)),
        None => println!("  not approved: `rostersync approve {} --reason \"…\"` applies exactly this plan", p.run_id),
    }
    Ok(0)
}

pub async fn approve(cli: &Cli, run_id: &str, reason: &str) -> super::Result<i32> {
    if reason.trim().is_empty() {
        return Err(CodedError(Exit::Config, "--reason must say why this plan may be applied".into()).into());
    }
    let (cfg, store, plan) = load(cli, run_id).await?;
    if let Some((a, run)) = &plan.approved {
        return Err(
            CodedError(Exit::Config, format!("plan {run_id} was already approved by {} at {} (applied by run {run})", a.by, a.at)).into()
        );
    }
    let conn = cfg.connector(&plan.connector)?.clone();
    let opts = crate::sync::SyncOptions {
        allow_mass_change: true,
        force: true,
        origin: crate::sync::Origin::Cli,
        progress: super::progress::for_terminal(cli.json),
        approval: Some(crate::report::Approval::now(reason.trim(), Some(run_id.to_string()))),
        apply_plan: Some(plan),
        all_operations: cli.json,
        ..Default::default()
    };
    let res = crate::sync::run(&cfg, &conn, &store, &opts).await;
    if cli.json {
        super::sync::print_json(&super::sync::whole(&res))?;
    } else {
        super::sync::print_summary(&res.report);
    }
    Ok(res.exit.code())
}
