//! `rostersync sync`: one connector, or all of them; a human summary or the `--json` report.

use std::path::Path;

use super::term::{shown, shown_lines};
use super::{Cli, CodedError};
use crate::exit::Exit;
use crate::report::{Report, RunOutcome, Whole};
use crate::state;
use crate::sync::{self, SyncOptions};

/// The go-ahead of `--allow-mass-change`: a reason is required, kept with the OS user.
pub fn approval_of(allow_mass_change: bool, reason: Option<&str>) -> super::Result<Option<crate::report::Approval>> {
    match (allow_mass_change, reason.map(str::trim)) {
        (true, Some(r)) if !r.is_empty() => Ok(Some(crate::report::Approval::now(r, None))),
        (true, _) => Err(CodedError(
            Exit::Config,
            "--allow-mass-change needs --reason \"…\" (why the safeguard may be passed; kept in the history and the report)".into(),
        )
        .into()),
        (false, Some(_)) => {
            Err(CodedError(Exit::Config, "--reason goes with --allow-mass-change (or `rostersync approve RUN_ID`)".into()).into())
        }
        (false, None) => Ok(None),
    }
}

pub async fn run(cli: &Cli, connector: Option<&str>, all: bool, opts: SyncOptions, plan_out: Option<&Path>) -> super::Result<i32> {
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
    if plan_out.is_some() && names.len() != 1 {
        return Err(CodedError(Exit::Config, "--plan-out goes with one connector".into()).into());
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
        if let Some(path) = plan_out {
            write_plan_out(path, &res)?;
        }
        if cli.json && !all {
            print_json(&whole(&res))?;
        } else if !cli.json {
            print_summary(&res.report);
        }
        if res.exit != Exit::Ok && (exit == Exit::Ok || exit == Exit::Config) {
            exit = res.exit;
        }
        if cli.json && all {
            runs.push(res);
        } else {
            // A million people take a while to free; the process is about to end anyway.
            std::thread::spawn(move || drop(res));
        }
    }
    if cli.json && all {
        #[derive(serde::Serialize)]
        struct All<'a> {
            runs: Vec<Whole<'a>>,
            skipped: &'a [crate::config::Problem],
            exit: i32,
        }
        print_json(&All { runs: runs.iter().map(whole).collect(), skipped: &cfg.problems, exit: exit.code() })?;
    }
    Ok(exit.code())
}

/// A run's report with every operation it lists (`--json`).
pub fn whole(res: &sync::RunResult) -> Whole<'_> {
    Whole { report: &res.report, listing: res.listing.as_deref() }
}

/// `--json`: one document and a newline, written as it is made (a million operations are
/// never one string in memory).
pub fn print_json<T: serde::Serialize>(doc: &T) -> super::Result<()> {
    use std::io::Write;
    let mut out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
    serde_json::to_writer(&mut out, doc).map_err(|e| anyhow::anyhow!("cannot write the report to stdout: {e}"))?;
    out.write_all(b"\n").and_then(|()| out.flush()).map_err(|e| anyhow::anyhow!("cannot write the report to stdout: {e}"))?;
    Ok(())
}

pub fn print_summary(r: &Report) {
    let outcome = match r.outcome {
        RunOutcome::Ok => "ok",
        RunOutcome::NoNewFile => "no new file",
        RunOutcome::Stopped => "STOPPED",
        RunOutcome::Failed => "FAILED",
    };
    let dry = if r.dry_run { " (dry run: nothing pushed)" } else { "" };
    // Synced, but leavers held back by rows that cannot be told apart: not plainly ok.
    let held = if r.held > 0 { format!(", {} absent people HELD (see notes)", r.held) } else { String::new() };
    println!("{}: {outcome}{held}{dry}", r.connector);
    let n = super::term::Numbers::for_stdout();
    if let Some(f) = &r.file {
        println!("  file     {} ({} bytes, sha256 {}…)", shown(&f.path), n.count(f.size), &f.sha256[..f.sha256.len().min(12)]);
    }
    let c = &r.counts;
    if c.rows > 0 {
        let verb = if r.dry_run || r.outcome == RunOutcome::Stopped { "would be " } else { "" };
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
    print_operations(&r.operations, r.operations_left_out, SHOWN_OPERATIONS);
    if let Some(g) = &r.groups {
        print_groups(g, r.dry_run || r.outcome == RunOutcome::Stopped);
    }
    if let Some(a) = &r.approval {
        let of = a.plan_of.as_ref().map(|p| format!(" (plan of run {p})")).unwrap_or_default();
        println!("  approved by {} at {}{of}: {}", shown(&a.by), a.at, shown(&a.reason));
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

/// `[groups]`: the counts, then the first groups' changes ("+id" joins, "-id" leaves).
pub fn print_groups(g: &crate::plan::groups::GroupsReport, would: bool) {
    let verb = if would { "would be " } else { "" };
    println!(
        "  groups   {verb}created {}, members {verb}added {}, {verb}removed {}, failed {}, conflicts {}",
        g.created,
        g.added,
        g.removed,
        g.failed,
        g.conflicts.len()
    );
    for c in g.changes.iter().take(SHOWN_OPERATIONS) {
        let moves: Vec<String> = c.add.iter().map(|x| format!("+{x}")).chain(c.remove.iter().map(|x| format!("-{x}"))).take(10).collect();
        let more = (c.add.len() + c.remove.len()).saturating_sub(moves.len());
        let more = if more > 0 { format!(" … and {more} more") } else { String::new() };
        let new = if c.create { " (new)" } else { "" };
        println!("    {}{new}: {}{more}", shown(&c.group), shown(&moves.join(" ")));
    }
    if g.changes.len() > SHOWN_OPERATIONS {
        println!("    … and {} more groups (--json lists them)", g.changes.len() - SHOWN_OPERATIONS);
    }
}

/// Operations a human summary lists at most; `--json` and `--plan-out` carry them all.
pub const SHOWN_OPERATIONS: usize = 20;

/// The plan as a table: kind, id, name, and the changes (old → new) or the reason.
pub fn print_operations(ops: &[crate::changes::PersonOp], left_out: u64, max: usize) {
    if ops.is_empty() {
        return;
    }
    let total = ops.len() as u64 + left_out;
    println!("  plan     {total} operation(s)");
    let idw = ops.iter().take(max).map(|o| o.external_id.chars().count()).max().unwrap_or(2).clamp(2, 24);
    let namew = ops.iter().take(max).map(|o| o.name.chars().count()).max().unwrap_or(4).clamp(4, 28);
    println!("    {:<10}  {:<idw$}  {:<namew$}  changes / why", "kind", "id", "name");
    for o in ops.iter().take(max) {
        let what = if o.changes.is_empty() {
            o.reason.to_string()
        } else {
            o.changes
                .iter()
                .map(|c| format!("{}: {} → {}", c.field, value(c.old.as_deref()), value(c.new.as_deref())))
                .collect::<Vec<_>>()
                .join("; ")
        };
        println!("    {:<10}  {:<idw$}  {:<namew$}  {}", o.kind.word(), shown(&o.external_id), shown(&o.name), shown(&what));
    }
    let shown = ops.len().min(max) as u64;
    if total > shown {
        println!("    … and {} more (--json or --plan-out FILE.csv lists them all)", total - shown);
    }
}

fn value(v: Option<&str>) -> String {
    match v {
        Some(v) => format!("\"{v}\""),
        None => "(none)".into(),
    }
}

/// `--plan-out FILE.csv`: the operations for a customer's HR team, every one (the run's
/// listing when the report lists only the first).
pub fn write_plan_out(path: &Path, res: &sync::RunResult) -> super::Result<()> {
    let f = std::fs::File::create(path).map_err(|e| anyhow::anyhow!("cannot write the plan to {}: {e}", path.display()))?;
    let w = std::io::BufWriter::with_capacity(1 << 16, f);
    match &res.listing {
        Some(l) => l.write_csv(w),
        None => crate::changes::write_csv(&res.report.operations, w),
    }
    .map_err(|e| anyhow::anyhow!("cannot write the plan to {}: {e}", path.display()))?;
    Ok(())
}
