//! `rostersync daemon`: the schedules, until SIGTERM or SIGINT (see `crate::daemon`).

use super::Cli;
use crate::config;

pub async fn run(cli: &Cli) -> super::Result<i32> {
    // Flat memory across thousands of runs (`crate::alloc`).
    crate::alloc::daemon_without_huge_pages();
    let path = cli.config.clone().unwrap_or_else(config::default_path);
    match crate::daemon::serve(&path).await {
        Ok(stopped) if stopped.abandoned.is_empty() => Ok(0),
        Ok(_) => {
            // Abandoned runs still occupy blocking threads, and dropping the runtime would
            // wait for them: leave now. SQLite commits are atomic, leases expire, and the
            // next run adopts whatever reached the platform unrecorded.
            std::process::exit(0)
        }
        Err(e) => Err(e.into()),
    }
}
