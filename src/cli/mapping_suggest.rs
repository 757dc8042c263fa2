//! `rostersync mapping suggest FILE`: prints a draft mapping for a sample export (see
//! `mapping::suggest`), checked with the same validation `rostersync check` runs.

use std::path::Path;

use anyhow::Context;

use crate::exit::{Classify, Exit};

pub fn run(file: &Path) -> super::Result<i32> {
    let name = file.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_else(|| file.display().to_string());
    let text = match crate::mapping::suggest::draft(file, &name) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {}", super::term::shown_lines(&e.to_string()));
            return Ok(e.exit().code());
        }
    };
    // The draft must be a mapping `check` accepts; anything else is our bug, said plainly.
    crate::config::parse_mapping(&text, Path::new("draft.toml"))
        .map_err(|ps| anyhow::anyhow!("{}", ps.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("\n")))
        .context("the drafted mapping does not validate; please report this with the sample file")?;
    print!("{text}");
    if !text.ends_with('\n') {
        println!();
    }
    eprintln!("Save it as mappings/CONNECTOR.toml, review the lines marked \"unsure\", then run `rostersync test CONNECTOR`.");
    Ok(Exit::Ok.code())
}
