//! Build-time facts for `--version` and `rostersync_build_info`: the git commit and the
//! build date. A build from a source tarball (no .git, no git) still works: the commit is
//! then "unknown". SOURCE_DATE_EPOCH (reproducible builds) fixes the date.

use std::process::Command;

fn main() {
    // `sqlx::migrate!` embeds migrations/ at build time: rebuild when a migration is added or
    // changed, not only when src/state/sqlite.rs is touched.
    println!("cargo:rerun-if-changed=migrations");
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    println!("cargo:rerun-if-env-changed=ROSTERSYNC_GIT_COMMIT");

    // A packager building outside git may name the commit itself.
    let commit = std::env::var("ROSTERSYNC_GIT_COMMIT").ok().filter(|c| !c.is_empty()).or_else(git_commit);
    println!("cargo:rustc-env=ROSTERSYNC_GIT_COMMIT={}", commit.as_deref().unwrap_or("unknown"));
    if commit.is_some() {
        // Rebuild when HEAD moves (a commit, a checkout); `--git-path` finds the files in a
        // worktree too, where .git is a file pointing elsewhere.
        for p in ["HEAD", "packed-refs"] {
            if let Some(path) = git(&["rev-parse", "--git-path", p]) {
                println!("cargo:rerun-if-changed={path}");
            }
        }
        if let Some(head_ref) = git(&["symbolic-ref", "-q", "HEAD"])
            && let Some(path) = git(&["rev-parse", "--git-path", &head_ref])
        {
            println!("cargo:rerun-if-changed={path}");
        }
    }

    let secs = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .unwrap_or_else(|| std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0));
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    println!("cargo:rustc-env=ROSTERSYNC_BUILD_DATE={y:04}-{m:02}-{d:02}");
}

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!s.is_empty()).then_some(s)
}

/// The commit checked out. No "-dirty" mark: the script reruns when HEAD moves, not on every
/// edit, so such a mark would often be stale.
fn git_commit() -> Option<String> {
    // Only this repository's: a source tarball unpacked inside some other checkout must not
    // take that checkout's commit.
    let top = git(&["rev-parse", "--show-toplevel"])?;
    let here = std::env::var("CARGO_MANIFEST_DIR").ok()?;
    if std::fs::canonicalize(top).ok()? != std::fs::canonicalize(here).ok()? {
        return None;
    }
    git(&["rev-parse", "--short=12", "HEAD"])
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (H. Hinnant's
/// `civil_from_days`): a date without a date crate in the build script.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}
