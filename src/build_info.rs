//! What this binary is: version, git commit and build date (set by build.rs), for
//! `--version`, the daemon's start line and `rostersync_build_info`.

pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// 12 hex digits, or "unknown" for a build outside git.
pub const COMMIT: &str = env!("ROSTERSYNC_GIT_COMMIT");
/// YYYY-MM-DD (UTC), or the date of SOURCE_DATE_EPOCH.
pub const BUILD_DATE: &str = env!("ROSTERSYNC_BUILD_DATE");

/// `0.1.0 (commit 0123456789ab, built 2026-12-01)`: what `--version` prints after the name.
pub const LONG_VERSION: &str =
    concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("ROSTERSYNC_GIT_COMMIT"), ", built ", env!("ROSTERSYNC_BUILD_DATE"), ")");
