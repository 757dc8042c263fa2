//! `rostersync check`: every problem in every connector and mapping, at once; then the
//! environment they will run in (variables, key and secret files, known_hosts, hosts;
//! `--no-environment` skips it); with `--online`, what each connector reaches (its SFTP
//! server, the file it would take, the platform). Exit 2 for a problem of the files or the
//! environment; online, the exit code of the worst connector.

use super::Cli;
use super::term::shown_lines;
use crate::exit::Exit;
use crate::preflight::{self, Finding, online};

pub struct Options {
    pub environment: bool,
    pub online: bool,
}

pub async fn run(cli: &Cli, opts: Options) -> super::Result<i32> {
    let cfg = super::load_config(cli)?;
    let env: Vec<Finding> = if opts.environment { preflight::environment(&cfg, &preflight::System) } else { Vec::new() };
    let reached = if opts.online { Some(online::reach(&cfg).await) } else { None };
    let mut exit = if cfg.problems.is_empty() && env.is_empty() { Exit::Ok } else { Exit::Config };
    if let Some(r) = &reached {
        exit = online::worst(std::iter::once(exit).chain(r.iter().map(|r| r.exit)));
    }
    if cli.json {
        let v = serde_json::json!({
            "config": cfg.path,
            "ok": exit == Exit::Ok,
            "exit": exit.code(),
            "connectors": cfg.connectors.keys().collect::<Vec<_>>(),
            "broken": cfg.broken,
            "problems": cfg.problems,
            "environment": if opts.environment { Some(&env) } else { None },
            "online": reached,
        });
        println!("{v}");
        return Ok(exit.code());
    }
    if cfg.problems.is_empty() {
        println!(
            "{}: {} connector(s) OK: {}",
            cfg.path.display(),
            cfg.connectors.len(),
            cfg.connectors.keys().cloned().collect::<Vec<_>>().join(", ")
        );
    } else {
        println!("{} problem(s):", cfg.problems.len());
        for p in &cfg.problems {
            println!("  {}", shown_lines(&p.to_string()));
        }
        if !cfg.connectors.is_empty() {
            println!("valid connector(s), which will run: {}", cfg.connectors.keys().cloned().collect::<Vec<_>>().join(", "));
        }
        if !cfg.broken.is_empty() {
            println!("refused until fixed: {}", cfg.broken.join(", "));
        }
    }
    if !env.is_empty() {
        println!("{} problem(s) in the environment (a run would fail; --no-environment skips these checks):", env.len());
        for f in &env {
            let who = f.connector.as_deref().map(|c| format!("connector {c}")).unwrap_or_else(|| "every connector".into());
            println!("  {who}: {}", shown_lines(&f.to_string()));
        }
    } else if opts.environment && !cfg.connectors.is_empty() {
        println!("environment OK: variables set, key and secret files readable");
    }
    if let Some(r) = &reached {
        let width = r.iter().map(|r| r.connector.len()).max().unwrap_or(0);
        for c in r {
            let verdict = if c.exit == Exit::Ok { "ok".to_string() } else { format!("FAILED (exit {})", c.exit.code()) };
            let steps = [Some(&c.source), c.columns.as_ref(), Some(&c.platform)];
            let failed: Vec<&str> = steps.iter().flatten().filter(|s| !s.ok).map(|s| s.message.as_str()).collect::<Vec<_>>();
            let detail = if failed.is_empty() {
                let columns = c.columns.as_ref().map(|s| format!("; {}", s.message)).unwrap_or_default();
                format!("{}{columns}; platform {}", c.source.message, c.platform.message)
            } else {
                failed.join("; ")
            };
            // A message of several lines (a host key mismatch says what to compare, line by
            // line) keeps its lines, indented under the connector's, not `\n` escapes.
            let lines = shown_lines(&detail).replace('\n', &format!("\n{:width$}    ", ""));
            println!("{:width$}  {verdict}  {lines}", c.connector);
        }
    }
    Ok(exit.code())
}
