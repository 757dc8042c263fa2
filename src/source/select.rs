//! Picking the file: pure decisions over a listing (glob, newest or last name, min_age).

use chrono::{DateTime, Utc};

use super::RemoteFile;
use crate::config::{FileRule, Pick};

/// Splits "/exports/employees_*.csv" into ("/exports", "employees_*.csv").
pub fn split_pattern(pattern: &str) -> (&str, &str) {
    match pattern.rsplit_once('/') {
        Some(("", name)) => ("/", name),
        Some((dir, name)) => (dir, name),
        None => (".", pattern),
    }
}

/// Shell-style match of one file name: `*`, `?` and `[abc]`.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    fn m(p: &[char], n: &[char]) -> bool {
        match p.first() {
            None => n.is_empty(),
            Some('*') => (0..=n.len()).any(|i| m(&p[1..], &n[i..])),
            Some('?') => !n.is_empty() && m(&p[1..], &n[1..]),
            Some('[') => {
                let Some(close) = p.iter().position(|&c| c == ']') else {
                    return n.first() == Some(&'[') && m(&p[1..], &n[1..]);
                };
                let set = &p[1..close];
                !n.is_empty() && set.contains(&n[0]) && m(&p[close + 1..], &n[1..])
            }
            Some(c) => n.first() == Some(c) && m(&p[1..], &n[1..]),
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    m(&p, &n)
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

/// Chooses the file to sync among `files` (already filtered by the glob).
pub fn select(files: &[RemoteFile], rule: &FileRule, now: DateTime<Utc>) -> Selection {
    let old_enough = |f: &&RemoteFile| match f.mtime {
        Some(t) => now.signed_duration_since(t).to_std().map(|age| age >= rule.min_age).unwrap_or(false),
        None => true,
    };
    let candidates: Vec<&RemoteFile> = files.iter().filter(old_enough).collect();
    let best = match rule.pick {
        Pick::Newest => candidates.iter().max_by(|a, b| a.mtime.cmp(&b.mtime).then_with(|| a.path.cmp(&b.path))),
        Pick::LastName => candidates.iter().max_by(|a, b| a.name().cmp(b.name())),
    };
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
    use crate::config::After;
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
