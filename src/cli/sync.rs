//! `rostersync sync`: one connector, or all of them; a human summary or the `--json` report.

use super::term::{shown, shown_lines};
use super::{Cli, CodedError};
use crate::exit::Exit;
use crate::report::{Report, RunOutcome};
use crate::state;
use crate::sync::{self, SyncOptions};

pub async fn run(cli: &Cli, connector: Option<&str>, all: bool, opts: SyncOptions) -> anyhow::Result<i32> {
    let cfg = super::load_config(cli)?;
    let names: Vec<String> = match (connector, all) {
        (Some(c), _) => vec![c.to_string()],
        (None, true) => {
            for p in &cfg.problems {
                eprintln!("skipped: {}", shown_lines(&p.to_string()));
            }
            cfg.connectors.keys().cloned().collect()
        }
        (None, false) => return Err(CodedError(Exit::Config, "name a connector (`rostersync sync acme`) or pass --all".into()).into()),
    };
    if opts.file.is_some() && names.len() != 1 {
        return Err(CodedError(Exit::Config, "--file goes with one connector".into()).into());
    }
    // Resolve every connector first: a broken one is refused before anything runs.
    let mut conns = Vec::new();
    for n in &names {
        conns.push(cfg.connector(n)?.clone());
    }
    let store = state::open(&cfg.state).await?;
    let mut exit = if cfg.problems.is_empty() || !all { Exit::Ok } else { Exit::Config };
    // --all --json is one document, printed once every run has ended: a consumer parses
    // stdout whole, and a half-printed list cannot pass for a complete one.
    let mut runs = Vec::new();
    for conn in &conns {
        let res = sync::run(&cfg, conn, &store, &opts).await;
        if cli.json && all {
            runs.push(serde_json::to_value(&res.report)?);
        } else if cli.json {
            println!("{}", serde_json::to_string(&res.report)?);
        } else {
            print_summary(&res.report);
        }
        if res.exit != Exit::Ok && (exit == Exit::Ok || exit == Exit::Config) {
            exit = res.exit;
        }
    }
    if cli.json && all {
        println!("{}", serde_json::json!({"runs": runs, "skipped": cfg.problems, "exit": exit.code()}));
    }
    Ok(exit.code())
}

pub fn print_summary(r: &Report) {
    let outcome = match r.outcome {
        RunOutcome::Ok => "ok",
        RunOutcome::NoNewFile => "no new file",
        RunOutcome::Stopped => "STOPPED",
        RunOutcome::Failed => "FAILED",
    };
    let dry = if r.dry_run { " (dry run: nothing pushed)" } else { "" };
    println!("{}: {outcome}{dry}", r.connector);
    let n = super::term::Numbers::for_stdout();
    if let Some(f) = &r.file {
        println!("  file     {} ({} bytes, sha256 {}…)", shown(&f.path), n.count(f.size), &f.sha256[..f.sha256.len().min(12)]);
    }
    let c = &r.counts;
    if c.rows > 0 {
        let verb = if r.dry_run { "would be " } else { "" };
        println!("  rows     {} ({} valid, {} invalid)", n.count(c.rows), n.count(c.valid), n.count(c.invalid));
        println!(
            "  users    {verb}created {}, {verb}updated {}, {verb}deactivated {}, {verb}deleted {}, unchanged {}, failed {}",
            n.count(c.created),
            n.count(c.updated),
            n.count(c.deactivated),
            n.count(c.deleted),
            n.count(c.unchanged),
            n.count(c.failed)
        );
    }
    if !r.errors.is_empty() {
        println!("  errors");
        for line in crate::mapping::group_errors(&r.errors).into_iter().take(8) {
            println!("    {}", shown(&line));
        }
    }
    if !r.notes.is_empty() {
        println!("  notes");
        for n in r.notes.iter().take(8) {
            println!("    {}", shown(n));
        }
        if r.notes.len() > 8 {
            println!("    … and {} more (--json lists them)", r.notes.len() - 8);
        }
    }
    if let Some(m) = &r.message {
        println!("  {}", shown_lines(m));
    }
    println!("  run {} in {}", r.run_id, n.millis(r.duration_ms));
}
