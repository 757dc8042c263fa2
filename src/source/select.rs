//! Picking the file: pure decisions over a listing (glob, newest or last name, min_age).

use chrono::{DateTime, Utc};

use super::RemoteFile;
use super::settings::{FileRule, Pick};
use crate::exit::{Classify, Exit};

#[derive(Debug, thiserror::Error)]
pub enum SelectError {
    #[error(
        "[file] path \"{pattern}\": the file name pattern \"{name}\" is not a valid glob ({detail}); \
         use *, ?, [0-9], [!x] or {{a,b}}, and a \\ before any of those characters meant literally"
    )]
    BadGlob { pattern: String, name: String, detail: String },
}

impl Classify for SelectError {
    fn exit(&self) -> Exit {
        Exit::Config
    }
}

/// Splits "/exports/employees_*.csv" into ("/exports", "employees_*.csv").
pub fn split_pattern(pattern: &str) -> (&str, &str) {
    match pattern.rsplit_once('/') {
        Some(("", name)) => ("/", name),
        Some((dir, name)) => (dir, name),
        None => (".", pattern),
    }
}

/// A `[file] path` compiled: a literal folder, and a shell glob over the names in it —
/// `*`, `?`, `[abc]`, `[0-9]`, `[!x]`, `{a,b}` — matched against the whole name,
/// case-sensitively (as the server's file system and `ls` do), with `*` never crossing a `/`.
///
/// globset compiles the glob to a regex, so a match takes time linear in the name: a
/// hostile server's 3,000-character name cannot stall a run the way backtracking did.
#[derive(Debug, Clone)]
pub struct PathGlob {
    pub folder: String,
    name: globset::GlobMatcher,
}

impl PathGlob {
    pub fn matches(&self, name: &str) -> bool {
        self.name.is_match(name)
    }
}

/// Compiles a `[file] path`. Config validation calls this, so a bad glob is a config-time
/// error; sources call it again to list.
pub fn compile_glob(pattern: &str) -> Result<PathGlob, SelectError> {
    let (folder, name) = split_pattern(pattern);
    let glob = globset::GlobBuilder::new(name)
        .literal_separator(true)
        .case_insensitive(false)
        .backslash_escape(true)
        .build()
        .map_err(|e| SelectError::BadGlob { pattern: pattern.into(), name: name.into(), detail: e.kind().to_string() })?;
    Ok(PathGlob { folder: folder.to_string(), name: glob.compile_matcher() })
}

/// The result of choosing among listed files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    Picked(RemoteFile),
    /// Files match, but every one is younger than `min_age` (still being written).
    TooYoung {
        youngest: RemoteFile,
    },
    NoMatch,
}

/// A file's age by its mtime; a time ahead of our clock (a customer server whose clock runs
/// fast) is age 0, never "too young for ever". No mtime: old enough.
pub fn age(f: &RemoteFile, now: DateTime<Utc>) -> Option<std::time::Duration> {
    f.mtime.map(|t| now.signed_duration_since(t).to_std().unwrap_or_default())
}

/// Whether the file's mtime is ahead of our clock.
pub fn in_future(f: &RemoteFile, now: DateTime<Utc>) -> bool {
    f.mtime.is_some_and(|t| t > now)
}

/// The order `pick` ranks files in (the greatest is taken).
fn rank(pick: Pick, a: &RemoteFile, b: &RemoteFile) -> std::cmp::Ordering {
    match pick {
        Pick::Newest => a.mtime.cmp(&b.mtime).then_with(|| a.path.cmp(&b.path)),
        Pick::LastName => a.name().cmp(b.name()),
    }
}

fn old_enough(f: &RemoteFile, rule: &FileRule, now: DateTime<Utc>) -> bool {
    age(f, now).is_none_or(|a| a >= rule.min_age)
}

/// The files `pick` would have taken over `picked` but for `min_age`: the report names them,
/// so a newer export left for a later run is never a silent choice.
pub fn passed_over<'a>(files: &'a [RemoteFile], picked: &RemoteFile, rule: &FileRule, now: DateTime<Utc>) -> Vec<&'a RemoteFile> {
    files.iter().filter(|f| !old_enough(f, rule, now) && rank(rule.pick, f, picked).is_gt()).collect()
}

/// Chooses the file to sync among `files` (already filtered by the glob).
pub fn select(files: &[RemoteFile], rule: &FileRule, now: DateTime<Utc>) -> Selection {
    let candidates: Vec<&RemoteFile> = files.iter().filter(|f| old_enough(f, rule, now)).collect();
    let best = candidates.iter().max_by(|a, b| rank(rule.pick, a, b));
    match best {
        Some(f) => Selection::Picked((*f).clone()),
        None => match files.iter().max_by_key(|f| f.mtime) {
            Some(y) => Selection::TooYoung { youngest: y.clone() },
            None => Selection::NoMatch,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::settings::After;
    use std::time::Duration;

    fn f(path: &str, mins_ago: i64, now: DateTime<Utc>) -> RemoteFile {
        RemoteFile { path: path.into(), size: 1, mtime: Some(now - chrono::Duration::minutes(mins_ago)) }
    }
    fn rule(pick: Pick, min_age: u64) -> FileRule {
        FileRule {
            path: "/x/*.csv".into(),
            pick,
            format: None,
            min_age: Duration::from_secs(min_age * 60),
            after: After::Keep,
            stale_after: None,
            max_size: 1 << 30,
        }
    }

    #[test]
    fn a_file_from_the_future_is_age_zero_and_newer_files_passed_over_are_named() {
        let now: DateTime<Utc> = "2026-11-22T10:00:00Z".parse().unwrap();
        let ahead = f("/x/b.csv", -30, now); // its server's clock runs 30 minutes fast
        let older = f("/x/a.csv", 600, now);
        let files = vec![older.clone(), ahead.clone()];
        assert_eq!(select(&files, &rule(Pick::Newest, 0), now), Selection::Picked(ahead.clone()), "min_age = 0 takes it");
        assert!(in_future(&ahead, now) && !in_future(&older, now));
        assert_eq!(age(&ahead, now), Some(Duration::ZERO));
        // With min_age the future file waits, and the older one taken says so.
        let r = rule(Pick::Newest, 2);
        assert_eq!(select(&files, &r, now), Selection::Picked(older.clone()));
        assert_eq!(passed_over(&files, &older, &r, now), vec![&ahead]);
        assert!(passed_over(&files, &ahead, &rule(Pick::Newest, 0), now).is_empty());
    }

    fn glob_match(pattern: &str, name: &str) -> bool {
        compile_glob(pattern).unwrap_or_else(|e| panic!("{e}")).matches(name)
    }

    #[test]
    fn globs() {
        assert!(glob_match("employees_*.csv", "employees_2024-01-02.csv"));
        assert!(!glob_match("employees_*.csv", "employees_2024.xlsx"));
        assert!(glob_match("e?.csv", "e1.csv"));
        assert!(glob_match("e[12].csv", "e2.csv"));
        assert!(!glob_match("e[12].csv", "e3.csv"));
        assert_eq!(split_pattern("/exports/a*.csv"), ("/exports", "a*.csv"));
        assert_eq!(split_pattern("/a.csv"), ("/", "a.csv"));
    }

    #[test]
    fn glob_table() {
        // (pattern, name, matches)
        let table = [
            ("/x/employees_[0-9].csv", "employees_5.csv", true),
            ("/x/employees_[0-9].csv", "employees_x.csv", false),
            ("/x/employees_[0-9].csv", "employees_12.csv", false),
            ("/x/e[!x].csv", "ea.csv", true),
            ("/x/e[!x].csv", "ex.csv", false),
            ("/x/e[^x].csv", "ex.csv", false),
            ("/x/export.{csv,xlsx}", "export.xlsx", true),
            ("/x/export.{csv,xlsx}", "export.csv", true),
            ("/x/export.{csv,xlsx}", "export.json", false),
            // Case-sensitive, as before and as the server's file system.
            ("/x/Employees.csv", "employees.csv", false),
            ("/x/*.CSV", "a.csv", false),
            // The whole name: no partial matches.
            ("/x/a.csv", "a.csv.bak", false),
            ("/x/*.csv", "a.csv.bak", false),
            // A backslash makes a special character literal.
            ("/x/\\[draft\\].csv", "[draft].csv", true),
            ("/x/\\[draft\\].csv", "d.csv", false),
            // Names with dots and spaces are ordinary.
            ("/x/HR export *.csv", "HR export 2026-01-01.csv", true),
            ("employees.csv", "employees.csv", true),
        ];
        for (pattern, name, want) in table {
            assert_eq!(glob_match(pattern, name), want, "{pattern} against {name}");
        }
        let g = compile_glob("/exports/in/e_*.csv").unwrap();
        assert_eq!(g.folder, "/exports/in");
        assert_eq!(compile_glob("e.csv").unwrap().folder, ".");
    }

    #[test]
    fn a_bad_glob_is_a_config_error_that_names_it() {
        for bad in ["/x/e[0-9.csv", "/x/{a,b.csv", "/x/a\\"] {
            let e = compile_glob(bad).expect_err(bad);
            assert_eq!(e.exit(), Exit::Config, "{e}");
            assert!(e.to_string().contains(bad), "{e}");
        }
    }

    #[test]
    fn a_hostile_name_matches_in_linear_time() {
        // The old backtracking matcher ran for minutes on this.
        let name = format!("{}.txt", "_".repeat(3000));
        let start = std::time::Instant::now();
        assert!(!glob_match("/x/*_*_*_*.csv", &name));
        let long_ok = format!("{}.csv", "a_".repeat(1500));
        assert!(glob_match("/x/*_*_*_*.csv", &long_ok));
        assert!(start.elapsed() < std::time::Duration::from_secs(1), "{:?}", start.elapsed());
    }

    #[test]
    fn picks_newest_or_last_name_and_respects_min_age() {
        let now = Utc::now();
        let files = vec![f("/x/b_2024-01-01.csv", 10, now), f("/x/a_2024-02-01.csv", 60, now), f("/x/c.csv", 1, now)];
        assert_eq!(select(&files, &rule(Pick::Newest, 2), now), Selection::Picked(files[0].clone()));
        assert_eq!(select(&files, &rule(Pick::Newest, 0), now), Selection::Picked(files[2].clone()));
        assert_eq!(select(&files, &rule(Pick::LastName, 2), now), Selection::Picked(files[0].clone()));
        assert_eq!(select(&files[2..], &rule(Pick::Newest, 2), now), Selection::TooYoung { youngest: files[2].clone() });
        assert_eq!(select(&[], &rule(Pick::Newest, 2), now), Selection::NoMatch);
    }
}
