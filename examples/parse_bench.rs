//! Parse + map + validate one export, as `rostersync sync` does before planning, and print
//! rows/s. `cargo run --release --example parse_bench -- FILE [MAPPING.toml]`; without a
//! mapping, the one for gen_hris.py's columns is used. Peak memory: run under
//! `/usr/bin/time -v` (see scripts/bench_parse.sh). `--parse-only` reads and maps every row
//! but keeps no user: its peak memory shows that reading streams.

use std::path::Path;
use std::time::Instant;

const GEN_HRIS_MAPPING: &str = r#"
unique_id = "employee_id"
[source]
records = "/employees"
[fields]
employee_id = "Personnel Number"
first_name  = { column = "First Name", transform = ["trim"] }
last_name   = { column = "Last Name", transform = ["trim"] }
email       = { column = "Email", transform = ["trim", "lowercase"] }
language    = { column = "Language", default = "en" }
active      = { column = "Active", map = { "Yes" = true, "No" = false } }
[attributes]
department = "Department"
title      = "Job Title"
manager_id = "Manager ID"
location   = "Location"
hire_date  = { column = "Hire Date", date = "%Y-%m-%d" }
cost_center = "Cost Center"
"#;

fn main() -> anyhow::Result<()> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let parse_only = args.iter().any(|a| a == "--parse-only");
    args.retain(|a| a != "--parse-only");
    let file = args.first().ok_or_else(|| anyhow::anyhow!("usage: parse_bench FILE [MAPPING.toml]"))?;
    let src = match args.get(1) {
        Some(m) => std::fs::read_to_string(m)?,
        None => GEN_HRIS_MAPPING.to_string(),
    };
    let mapping = rostersync::config::parse_mapping(&src, Path::new("mapping.toml"))
        .map_err(|ps| anyhow::anyhow!("{}", ps.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("\n")))?;
    let path = Path::new(file);
    let format = rostersync::format::detect(path, file)?;
    let start = Instant::now();
    let mapper = rostersync::mapping::Mapper::new(&mapping);
    let records = rostersync::format::open(path, file, format, &mapping.source, mapper.columns())?;
    if parse_only {
        let (mut rows, mut valid) = (0u64, 0u64);
        for r in records {
            rows += 1;
            match r {
                Ok(rec) => valid += u64::from(mapper.map(&rec).is_ok()),
                Err(rostersync::format::ReadError::File(e)) => return Err(e.into()),
                Err(_) => {}
            }
        }
        let secs = start.elapsed().as_secs_f64();
        println!("{file}: {format:?}, {rows} rows ({valid} valid, none kept) in {secs:.2} s = {:.0} rows/s", rows as f64 / secs);
        return Ok(());
    }
    let mapped = rostersync::mapping::collect(records, &mapper)?;
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{file}: {:?}, {} rows ({} valid, {} invalid) in {:.2} s = {:.0} rows/s",
        format,
        mapped.rows,
        mapped.users.len(),
        mapped.errors.len(),
        secs,
        mapped.rows as f64 / secs
    );
    for g in rostersync::mapping::group_errors(&mapped.errors).iter().take(5) {
        println!("  {g}");
    }
    Ok(())
}
