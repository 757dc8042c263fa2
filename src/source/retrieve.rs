//! The one retry loop of the source: connect → list → select → download, driven by
//! `retry::Policy::SFTP` and the run's `Budget`. Sources make one attempt per call; nothing
//! below this loop retries, so against a server that hangs for good the fetch fails after
//! `max_attempts × timeout` plus the backoff (retry.rs), not a product of nested loops.
//!
//! Each attempt opens a fresh connection (the old one is dropped, never read again). A cut
//! download resumes from the byte it reached, into the same sink and hasher, once the file
//! is seen to be the one it started on (same size and mtime). Errors that another attempt
//! cannot fix (host key, login, permission, no such file, too large) end the loop at once.

use std::io::Write;
use std::time::Duration;

use super::settings::SourceConfig;
use super::{Fetched, HashingWriter, RemoteFile, Source, SourceError, connect};
use crate::exit::Classify;
use crate::retry::{Budget, Decision, Policy};

/// What the caller makes of the listing (asked once per run, by the first attempt that
/// lists): download a file into a sink, or stop with a value (nothing new to sync).
pub enum Choice<W, T> {
    Take(RemoteFile, W),
    Stop(T),
}

/// How `retrieve` ended.
pub enum Retrieved<W, T> {
    /// The file, whole and of its listed size; the connection that finished it stays open
    /// for `after` (move/delete).
    Done {
        source: Box<dyn Source>,
        file: RemoteFile,
        sink: W,
        fetched: Fetched,
    },
    Stopped(T),
}

/// What to fetch, from where, within which budget.
pub struct Request<'a> {
    pub source: &'a SourceConfig,
    /// `[file] path`: folder and glob.
    pub pattern: &'a str,
    pub max_size: u64,
    /// The run's retries, shared with the rest of the run (SCIM).
    pub budget: &'a Budget,
}

/// "sftp://user@host:port" or "local:/dir", before connecting (for retry warnings).
pub fn describe(cfg: &SourceConfig) -> String {
    match cfg {
        SourceConfig::Local { dir } => format!("local:{}", dir.display()),
        SourceConfig::Sftp(s) => format!("sftp://{}@{}", s.username, super::sftp::at(&s.host, s.port)),
    }
}

/// A download under way: the file as first listed, and everything written so far.
struct Taken<W: Write> {
    file: RemoteFile,
    w: HashingWriter<W>,
}

/// How one attempt failed.
enum Failed {
    /// Another attempt cannot help (or would be unsound): end now.
    Final(SourceError),
    /// Worth another attempt, if the policy and the budget allow.
    Retry(SourceError),
}

impl From<SourceError> for Failed {
    fn from(e: SourceError) -> Failed {
        if e.retriable() { Failed::Retry(e) } else { Failed::Final(e) }
    }
}

enum Step<T> {
    Stopped(T),
    /// The file was read to its end over this connection.
    Read(Box<dyn Source>),
}

/// Connects, lists, lets `choose` pick, and downloads, retrying what may pass.
pub fn retrieve<W: Write, T>(
    req: &Request<'_>,
    mut choose: impl FnMut(&mut dyn Source, Vec<RemoteFile>) -> Result<Choice<W, T>, SourceError>,
) -> Result<Retrieved<W, T>, SourceError> {
    let policy = Policy::SFTP;
    let mut taken: Option<Taken<W>> = None;
    let mut attempt = 0;
    let source = loop {
        attempt += 1;
        let e = match attempt_once(req, &mut taken, &mut choose) {
            Ok(Step::Stopped(t)) => return Ok(Retrieved::Stopped(t)),
            Ok(Step::Read(src)) => break src,
            Err(Failed::Final(e)) => return Err(e),
            Err(Failed::Retry(e)) => e,
        };
        let (path, offset) = match &taken {
            Some(t) => (t.file.path.as_str(), t.w.bytes),
            None => (req.pattern, 0),
        };
        match policy.next(attempt, None, req.budget) {
            Decision::Retry(wait) => {
                let wait_s = humantime::format_duration(Duration::from_millis(wait.as_millis() as u64));
                let next = if taken.is_some() {
                    format!("reconnecting in {wait_s} to resume {path} from byte {offset}")
                } else {
                    format!("reconnecting in {wait_s} to list {path}")
                };
                tracing::warn!(
                    host = %describe(req.source),
                    path,
                    attempt,
                    offset,
                    "{e}; {next} (attempt {attempt} of {} failed)",
                    policy.max_attempts
                );
                std::thread::sleep(wait);
            }
            Decision::GiveUp(why) => {
                return Err(match taken {
                    Some(t) => SourceError::Truncated {
                        path: t.file.path,
                        got: t.w.bytes,
                        expected: t.file.size,
                        detail: format!("{e}; {why}, the run can be retried later"),
                    },
                    None => SourceError::GaveUp { why, last: Box::new(e) },
                });
            }
        }
    };
    let Some(Taken { file, w }) = taken else {
        return Err(SourceError::Other("the download ended without a file; this is a bug in rostersync".into()));
    };
    let (sink, fetched) = w.finish();
    let fetched = check_size(&file, fetched)?;
    Ok(Retrieved::Done { source, file, sink, fetched })
}

fn attempt_once<W: Write, T>(
    req: &Request<'_>,
    taken: &mut Option<Taken<W>>,
    choose: &mut impl FnMut(&mut dyn Source, Vec<RemoteFile>) -> Result<Choice<W, T>, SourceError>,
) -> Result<Step<T>, Failed> {
    let mut src = connect(req.source)?;
    match taken {
        Some(t) => {
            // Resuming is only sound if the file is the one we started on.
            let now = src.stat(&t.file.path)?;
            if !same_file(&t.file, &now) {
                return Err(Failed::Final(SourceError::Truncated {
                    path: t.file.path.clone(),
                    got: t.w.bytes,
                    expected: t.file.size,
                    detail: "the file changed on the server during the download; retry once the export is complete (set min_age)".into(),
                }));
            }
        }
        None => {
            let files = src.list(req.pattern)?;
            match choose(&mut *src, files)? {
                Choice::Stop(t) => return Ok(Step::Stopped(t)),
                Choice::Take(file, sink) => {
                    if file.size > req.max_size {
                        return Err(Failed::Final(SourceError::TooLarge { path: file.path.clone(), size: file.size, max: req.max_size }));
                    }
                    *taken = Some(Taken { file, w: HashingWriter::new(sink) });
                }
            }
        }
    }
    let Some(t) = taken.as_mut() else {
        return Err(Failed::Final(SourceError::Other("no file to download; this is a bug in rostersync".into())));
    };
    let offset = t.w.bytes;
    src.read_from(&t.file, offset, &mut t.w, req.max_size)?;
    Ok(Step::Read(src))
}

/// The same file as listed: size and, when the server gives one, modification time.
fn same_file(listed: &RemoteFile, now: &RemoteFile) -> bool {
    now.size == listed.size && listed.mtime.is_none_or(|m| now.mtime == Some(m))
}

/// A whole file is exactly as long as listed: a short one reaching the plan would
/// deactivate everyone after the cut.
pub(super) fn check_size(file: &RemoteFile, fetched: Fetched) -> Result<Fetched, SourceError> {
    if fetched.bytes != file.size {
        return Err(SourceError::Truncated {
            path: file.path.clone(),
            got: fetched.bytes,
            expected: file.size,
            detail: "the server ended the file at another size than listed; it was probably being rewritten — retry once the export is complete (set min_age)".into(),
        });
    }
    Ok(fetched)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(size: u64, mtime: Option<i64>) -> RemoteFile {
        RemoteFile { path: "/x/a.csv".into(), size, mtime: mtime.and_then(|s| chrono::DateTime::from_timestamp(s, 0)) }
    }

    #[test]
    fn resume_only_the_same_file() {
        assert!(same_file(&f(10, Some(5)), &f(10, Some(5))));
        assert!(!same_file(&f(10, Some(5)), &f(10, Some(6))), "rewritten in place");
        assert!(!same_file(&f(10, Some(5)), &f(11, Some(5))), "grew");
        assert!(same_file(&f(10, None), &f(10, Some(6))), "no mtime listed: size alone");
    }

    #[test]
    fn failures_split_by_classification() {
        let timeout = SourceError::Timeout { host: "h:22".into(), step: "x".into(), secs: 2 };
        assert!(matches!(Failed::from(timeout), Failed::Retry(_)));
        assert!(matches!(Failed::from(SourceError::HostKey("changed".into())), Failed::Final(_)));
        assert!(matches!(Failed::from(SourceError::NoFile("none".into())), Failed::Final(_)));
    }
}
