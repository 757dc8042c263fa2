//! `rostersync check`: every problem in every connector and mapping, at once; no network.

use super::Cli;
use crate::exit::Exit;

pub fn run(cli: &Cli) -> anyhow::Result<i32> {
    let cfg = super::load_config(cli)?;
    if cli.json {
        let v = serde_json::json!({
            "config": cfg.path,
            "ok": cfg.problems.is_empty(),
            "connectors": cfg.connectors.keys().collect::<Vec<_>>(),
            "broken": cfg.broken,
            "problems": cfg.problems,
        });
        println!("{v}");
    } else if cfg.problems.is_empty() {
        println!(
            "{}: {} connector(s) OK: {}",
            cfg.path.display(),
            cfg.connectors.len(),
            cfg.connectors.keys().cloned().collect::<Vec<_>>().join(", ")
        );
    } else {
        println!("{} problem(s):", cfg.problems.len());
        for p in &cfg.problems {
            println!("  {}", super::term::shown_lines(&p.to_string()));
        }
        if !cfg.connectors.is_empty() {
            println!("valid connector(s), which will run: {}", cfg.connectors.keys().cloned().collect::<Vec<_>>().join(", "));
        }
        if !cfg.broken.is_empty() {
            println!("refused until fixed: {}", cfg.broken.join(", "));
        }
    }
    Ok(if cfg.problems.is_empty() { Exit::Ok } else { Exit::Config }.code())
}
