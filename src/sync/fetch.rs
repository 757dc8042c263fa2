//! Step 2 of a run: the file. Connect, list, pick and download it (`source::retrieve`,
//! the one loop that retries and resumes), or take the local `--file`; with a streaming
//! format, parsing starts while the bytes arrive (`crate::spool`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::parse::{EarlyParse, ParseFailure, read_and_map};
use super::unsent::Unsent;
use super::{Progress, RunError, SyncOptions};
use crate::config::Connector;
use crate::model::FileFingerprint;
use crate::retry::Budget;
use crate::source::{self, Choice, RemoteFile, Retrieved, Source, SourceError, pgp, select};
use crate::spool;

/// The file to process, downloaded and verified.
pub(super) struct Got {
    /// The source file (None for `--file`).
    pub remote: Option<RemoteFile>,
    pub spool: Spool,
    pub name: String,
    pub fingerprint: FileFingerprint,
    pub source: Option<Box<dyn Source>>,
    /// The file parsed and mapped while it downloaded, when its format reads as a stream.
    pub early: Option<EarlyParse>,
    /// What the report should say of the choice of file (newer files passed over by min_age,
    /// a modification time ahead of our clock).
    pub notes: Vec<String>,
}

/// Where the download lands; removed when dropped (unless it is the user's own `--file`, or
/// a local folder's file read in place).
pub(super) struct Spool {
    pub path: PathBuf,
    _temp: Option<tempfile::TempPath>,
    /// A file read in place: what it must still be once parsed (`spool::Stamp`).
    pub stamp: Option<spool::Stamp>,
}

pub(super) enum Fetch {
    Got(Box<Got>),
    NoNewFile(NoNew),
}

/// Why a run found no new file to sync.
pub(super) struct NoNew {
    pub why: String,
    /// The file is the one synced last: `--force` would take it again. Only then, and only
    /// to a person running a command, is `--force` advised: the daemon's routine quiet
    /// days (nothing new, a file still being written) have nothing to force.
    pub forceable: bool,
}

impl NoNew {
    fn quiet(why: String) -> NoNew {
        NoNew { why, forceable: false }
    }

    /// As said to whoever runs it.
    pub fn said(self, by_hand: bool) -> String {
        if self.forceable && by_hand { format!("{}; use --force to sync it again", self.why) } else { self.why }
    }
}

/// Fetches the file (`began` is told when its bytes start coming): the local `--file`, or
/// the connector's source on a blocking thread, its retries taken from the run's `budget`.
/// The rows are mapped as they arrive, leaving out bad values of the `unsent` attributes.
pub(super) async fn fetch(
    conn: &Connector,
    opts: &SyncOptions,
    last: Option<&FileFingerprint>,
    began: tokio::sync::oneshot::Sender<()>,
    budget: &Budget,
    unsent: &Unsent,
) -> Result<Fetch, RunError> {
    if let Some(path) = &opts.file {
        let _ = began.send(());
        return fetch_local(conn, path).await;
    }
    let conn = conn.clone();
    let last = last.cloned();
    // A reconcile compares the platform with the current file, synced already or not.
    let force = opts.force || opts.reconcile;
    let progress = opts.progress.clone();
    let budget = budget.clone();
    let stream = Stream { began, unsent: unsent.clone() };
    // Blocking threads do not inherit the task's span: enter the run's there, so that the
    // SFTP retry warnings carry its connector and run_id like every other line of the run.
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || {
        let _in_run = span.enter();
        fetch_blocking(&conn, last.as_ref(), force, progress.as_deref(), Some(stream), &budget)
    })
    .await
    .map_err(|e| RunError::Thread { what: "download", detail: Some(e.to_string()) })?
    .map_err(RunError::from)
}

/// A file the customer sent by other means: hashed and parsed in place, never moved or
/// removed (an OpenPGP one is decrypted and verified into a file of our own first).
async fn fetch_local(conn: &Connector, path: &Path) -> Result<Fetch, RunError> {
    // Hashed, then read again by the parse: stamped first, like a local folder's file.
    let stamp = spool::Stamp::of(path).map_err(|source| RunError::Unreadable { path: path.to_path_buf(), source })?;
    let p = path.to_path_buf();
    let (sha256, size) = tokio::task::spawn_blocking(move || hash_file(&p))
        .await
        .map_err(|e| RunError::Thread { what: "hashing", detail: Some(e.to_string()) })?
        .map_err(|source| RunError::Unreadable { path: path.to_path_buf(), source })?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mtime = std::fs::metadata(path).and_then(|m| m.modified()).ok().map(|t| DateTime::<Utc>::from(t).to_rfc3339());
    let spool = match decrypt_local(conn, path, &name).await? {
        Some(plain) => Spool { path: plain.to_path_buf(), _temp: Some(plain), stamp: Some(stamp) },
        None => Spool { path: path.to_path_buf(), _temp: None, stamp: Some(stamp) },
    };
    Ok(Fetch::Got(Box::new(Got {
        remote: None,
        fingerprint: FileFingerprint { path: path.display().to_string(), size, mtime, sha256 },
        spool,
        name,
        source: None,
        early: None,
        notes: Vec::new(),
    })))
}

/// A local OpenPGP file decrypted and verified whole, before anything reads it.
async fn decrypt_local(conn: &Connector, path: &Path, name: &str) -> Result<Option<tempfile::TempPath>, RunError> {
    let keys = pgp_keys(conn)?;
    let Some(keys) = keys else {
        if pgp::is_pgp_name(name) {
            return Err(SourceError::from(pgp::PgpError::NotConfigured { file: name.to_string(), connector: conn.name.clone() }).into());
        }
        return Ok(None);
    };
    let (path, name, max_size) = (path.to_path_buf(), name.to_string(), conn.file.max_size);
    tokio::task::spawn_blocking(move || -> Result<tempfile::TempPath, SourceError> {
        let input =
            std::fs::File::open(&path).map_err(|source| SourceError::Io { context: format!("cannot read {}", path.display()), source })?;
        let temp = tempfile::Builder::new()
            .prefix("rostersync-")
            .suffix(&format!("-{}", pgp::inner_name(&name)))
            .tempfile()
            .map_err(|source| SourceError::Io { context: "cannot create the file an export is decrypted to".into(), source })?;
        let (out, plain) = temp.into_parts();
        pgp::decrypt(&keys, &name, input, std::io::BufWriter::new(out), max_size)?;
        Ok(plain)
    })
    .await
    .map_err(|e| RunError::Thread { what: "decrypting", detail: Some(e.to_string()) })?
    .map(Some)
    .map_err(RunError::from)
}

fn hash_file(path: &Path) -> std::io::Result<(String, u64)> {
    let mut f = std::fs::File::open(path)?;
    let mut sink = std::io::sink();
    let mut w = source::HashingWriter::new(&mut sink);
    std::io::copy(&mut std::io::BufReader::with_capacity(1 << 20, &mut f), &mut w)?;
    let (_, fetched) = w.finish();
    Ok((fetched.sha256, fetched.bytes))
}

/// The download file and what reads it, set up once the file is picked. Kept across
/// retries; dropping it before `guard.complete()` fails the growing file, which stops the parse.
/// A fetch whose download is parsed and mapped as it arrives: told when it begins, and what
/// the mapping leaves out (`Mapper::leaving_out`).
struct Stream {
    began: tokio::sync::oneshot::Sender<()>,
    unsent: Unsent,
}

struct Started {
    landing: Landing,
    guard: spool::EndGuard,
    early: Option<EarlyParse>,
    /// An OpenPGP export's plaintext, decrypted as it downloads (`source::pgp`).
    decrypting: Option<Decrypting>,
}

/// Where the file's bytes are for the parse.
enum Landing {
    /// A download file of ours.
    Download(tempfile::TempPath),
    /// The file itself, on this machine (`crate::spool`).
    InPlace(spool::Stamp),
}

/// The decryption that follows an OpenPGP download: its plaintext file, whose readers see
/// its end only once the integrity check and the signature passed.
struct Decrypting {
    plain_path: tempfile::TempPath,
    done: std::thread::JoinHandle<Result<pgp::Opened, pgp::PgpError>>,
}

/// Starts decrypting the download as it arrives, on its own thread, into a plaintext spool
/// of its own; the parse reads that one. The plaintext is complete only when the whole
/// download decrypted and verified: until then a parse of it cannot finish.
fn start_decrypt(
    keys: &Arc<pgp::Keys>,
    name: &str,
    download: &Arc<spool::Growing>,
    max_size: u64,
) -> Result<(Decrypting, Arc<spool::Growing>), SourceError> {
    let io = |context: &str| {
        let context = context.to_string();
        move |source| SourceError::Io { context, source }
    };
    let temp = tempfile::Builder::new()
        .prefix("rostersync-")
        .suffix(&format!("-{}", pgp::inner_name(name)))
        .tempfile()
        .map_err(io("cannot create the file an export is decrypted to"))?;
    let (out, plain_path) = temp.into_parts();
    let plain = spool::Growing::new(&plain_path);
    let guard = plain.guard();
    let writer = plain.writer(out);
    let reader = download.reader().map_err(io("cannot read the download to decrypt it"))?;
    let (keys, name) = (Arc::clone(keys), name.to_string());
    let span = tracing::Span::current();
    let done = std::thread::Builder::new()
        .name("decrypt-download".into())
        .spawn(move || {
            let _in_run = span.enter();
            let opened = pgp::decrypt(&keys, &name, reader, writer, max_size)?;
            guard.complete();
            Ok(opened)
        })
        .map_err(io("cannot start decrypting the download"))?;
    Ok((Decrypting { plain_path, done }, plain))
}

/// The decryption's verdict, once the download is complete: Ok with the plaintext's path.
fn finish_decrypt(d: Decrypting, name: &str) -> Result<tempfile::TempPath, SourceError> {
    let opened =
        d.done.join().map_err(|_| SourceError::Other(format!("decrypting {name} stopped unexpectedly; this is a bug in rostersync")))??;
    tracing::info!(file = %name, bytes = opened.bytes, signer = opened.signer.as_deref().unwrap_or("none required"), "OpenPGP export decrypted and verified");
    Ok(d.plain_path)
}

/// The connector's OpenPGP keys, read once per download; an OpenPGP file without them is
/// refused (it would otherwise be parsed as its ciphertext).
fn pgp_keys(conn: &Connector) -> Result<Option<Arc<pgp::Keys>>, SourceError> {
    match &conn.exchange.pgp {
        Some(settings) => Ok(Some(Arc::new(settings.load()?))),
        None => Ok(None),
    }
}

/// Connects, lists, picks and downloads (`source::retrieve` retries and resumes). With
/// `stream`, the file is also parsed and mapped as it arrives (`Got::early`), and the sender
/// is told when the download begins.
fn fetch_blocking(
    conn: &Connector,
    last: Option<&FileFingerprint>,
    force: bool,
    progress: Option<&dyn Progress>,
    stream: Option<Stream>,
    budget: &Budget,
) -> Result<Fetch, SourceError> {
    let (mut began, unsent) = match stream {
        Some(s) => (Some(s.began), Some(s.unsent)),
        None => (None, None),
    };
    let rule = &conn.file;
    let mut started: Option<Started> = None;
    let mut notes: Vec<String> = Vec::new();
    let keys = pgp_keys(conn)?;
    let req = source::Request { source: &conn.source, pattern: &rule.path, max_size: rule.max_size, budget };
    let retrieved = source::retrieve(&req, |src, files| {
        let file = match pick(conn, last, force, src, &files)? {
            Picked::File(f, why) => {
                notes = why;
                f
            }
            Picked::NoNewFile(why) => return Ok(Choice::Stop(why)),
        };
        // A file on this machine is read where it is (`crate::spool`), stamped first.
        let (growing, writer, landing) = match src.in_place(&file) {
            Some(path) => {
                let stamp = spool::Stamp::of(&path)
                    .map_err(|e| SourceError::Io { context: format!("cannot stat {}", path.display()), source: e })?;
                let growing = spool::Growing::new(&path);
                let writer = growing.in_place();
                (growing, writer, Landing::InPlace(stamp))
            }
            None => {
                let temp = tempfile::Builder::new()
                    .prefix("rostersync-")
                    .suffix(&format!("-{}", file.name()))
                    .tempfile()
                    .map_err(|e| SourceError::Io { context: "cannot create a download file".into(), source: e })?;
                let (out, temp_path) = temp.into_parts();
                let growing = spool::Growing::new(&temp_path);
                let writer = growing.writer(out);
                (growing, writer, Landing::Download(temp_path))
            }
        };
        let guard = growing.guard();
        let (decrypting, readable) = match &keys {
            Some(keys) => {
                let (d, plain) = start_decrypt(keys, file.name(), &growing, rule.max_size)?;
                (Some(d), plain)
            }
            None if pgp::is_pgp_name(file.name()) => {
                return Err(pgp::PgpError::NotConfigured { file: file.path.clone(), connector: conn.name.clone() }.into());
            }
            None => (None, Arc::clone(&growing)),
        };
        let early = unsent.as_ref().and_then(|u| start_parse(conn, file.name(), &readable, u));
        started = Some(Started { landing, guard, early, decrypting });
        if let Some(tx) = began.take() {
            let _ = tx.send(());
        }
        if let Some(p) = progress {
            p.stage(super::Stage::Download(file.name().to_string()), Some(file.size));
        }
        // Unbuffered: the source writes in chunks of up to 2 MiB, and the parser should see
        // each one as soon as it is written.
        Ok(Choice::Take(file, ProgressWriter { inner: writer, progress, done: 0 }))
    })?;
    let (src, file, fetched) = match retrieved {
        Retrieved::Stopped(why) => return Ok(Fetch::NoNewFile(why)),
        Retrieved::Done { source, file, fetched, .. } => (source, file, fetched),
    };
    if let Some(p) = progress {
        p.finish();
    }
    verify(Finished { src, file, fetched, notes }, started, last, force)
}

/// A download `source::retrieve` finished, before it is checked.
struct Finished {
    src: Box<dyn Source>,
    file: RemoteFile,
    fetched: source::Fetched,
    notes: Vec<String>,
}

/// The finished download checked (its size against the listing, its content against the
/// last synced file) and handed to the parse, which waits for `guard.complete()`.
fn verify(d: Finished, started: Option<Started>, last: Option<&FileFingerprint>, force: bool) -> Result<Fetch, SourceError> {
    let Finished { src, file, fetched, notes } = d;
    let Some(Started { landing, guard, early, decrypting }) = started else {
        return Err(SourceError::Other("a file was downloaded without a download file; this is a bug in rostersync".into()));
    };
    let mtime = file.mtime.map(|t| t.to_rfc3339());
    // `retrieve` checks this already; checked again here because a short file reaching
    // the plan would deactivate everyone after the cut, whatever source a future one is.
    if fetched.bytes != file.size {
        return Err(SourceError::Truncated {
            path: file.path.clone(),
            got: fetched.bytes,
            expected: file.size,
            detail: "size differs from the listing".into(),
        });
    }
    if !force
        && let Some(l) = last
        && l.sha256 == fetched.sha256
    {
        return Ok(Fetch::NoNewFile(NoNew {
            why: format!("{} has the same content (sha256) as the last synced file {}", file.path, l.path),
            forceable: true,
        }));
    }
    guard.complete();
    // An OpenPGP export: what is parsed is the plaintext, and only once it verified.
    let spool = match (decrypting, landing) {
        (Some(d), landing) => {
            let plain = finish_decrypt(d, file.name())?;
            let stamp = match landing {
                Landing::InPlace(stamp) => Some(stamp),
                Landing::Download(_) => None,
            };
            Spool { path: plain.to_path_buf(), _temp: Some(plain), stamp }
        }
        (None, Landing::Download(temp)) => Spool { path: temp.to_path_buf(), _temp: Some(temp), stamp: None },
        (None, Landing::InPlace(stamp)) => Spool { path: stamp.path().to_path_buf(), _temp: None, stamp: Some(stamp) },
    };
    Ok(Fetch::Got(Box::new(Got {
        fingerprint: FileFingerprint { path: file.path.clone(), size: fetched.bytes, mtime, sha256: fetched.sha256 },
        name: file.name().to_string(),
        spool,
        remote: Some(file),
        source: Some(src),
        early,
        notes,
    })))
}

enum Picked {
    /// The file, and what the report should say of the choice.
    File(RemoteFile, Vec<String>),
    NoNewFile(NoNew),
}

/// Which listed file to download, if any: the rule's choice, unless it is the one synced
/// last (same path, size and time), too young, or too large.
fn pick(
    conn: &Connector,
    last: Option<&FileFingerprint>,
    force: bool,
    src: &mut dyn Source,
    files: &[RemoteFile],
) -> Result<Picked, SourceError> {
    let rule = &conn.file;
    let now = Utc::now();
    let file = match select::select(files, rule, now) {
        select::Selection::Picked(f) => f,
        select::Selection::TooYoung { youngest } => {
            return Ok(Picked::NoNewFile(NoNew::quiet(format!(
                "{} was modified less than min_age ({}) ago{} and may still be being written; it will be taken by a later run",
                youngest.path,
                humantime::format_duration(rule.min_age),
                future_note(&youngest, now)
            ))));
        }
        // With after = move/delete an empty folder is the normal state between exports (the
        // last one was taken away); stale_after is what notices an export that stopped.
        select::Selection::NoMatch if rule.after != crate::config::After::Keep && last.is_some() => {
            return Ok(Picked::NoNewFile(NoNew::quiet(format!(
                "no file matches {} on {}; the last one was taken away after its sync (after = {:?})",
                rule.path,
                src.describe(),
                rule.after
            ))));
        }
        select::Selection::NoMatch => {
            let (folder, _) = select::split_pattern(&rule.path);
            let others = src.list(&format!("{}/*", folder.trim_end_matches('/'))).unwrap_or_default();
            let mut names: Vec<&str> = others.iter().map(|f| f.name()).collect();
            names.sort();
            let shown = names.iter().take(10).copied().collect::<Vec<_>>().join(", ");
            return Err(SourceError::NoFile(format!(
                "no file matches {} on {}; the folder holds {} file(s){}{}. Check [connectors.{}.file] path",
                rule.path,
                src.describe(),
                names.len(),
                if names.is_empty() { "" } else { ": " },
                if names.len() > 10 { format!("{shown}, …") } else { shown },
                conn.name
            )));
        }
    };
    let mtime = file.mtime.map(|t| t.to_rfc3339());
    if !force && let Some(l) = last {
        // Same name, size and time as the last synced file: skip without downloading.
        if l.path == file.path && l.size == file.size && l.mtime == mtime && mtime.is_some() {
            return Ok(Picked::NoNewFile(NoNew { why: format!("{} was already synced (same size and time)", file.path), forceable: true }));
        }
    }
    if file.size > rule.max_size {
        return Err(SourceError::TooLarge { path: file.path.clone(), size: file.size, max: rule.max_size });
    }
    let mut notes: Vec<String> = select::passed_over(files, &file, rule, now)
        .into_iter()
        .map(|f| {
            format!(
                "{} was passed over: modified less than min_age ({}) ago{}; {} was synced instead, and the newer file is taken by a later run",
                f.path,
                humantime::format_duration(rule.min_age),
                future_note(f, now),
                file.path
            )
        })
        .collect();
    if select::in_future(&file, now) {
        notes.push(format!("{}{}; it was taken as just written", file.path, future_note(&file, now)));
    }
    Ok(Picked::File(file, notes))
}

/// ", its time (…) is ahead of this machine's clock" for a file from the future.
fn future_note(f: &RemoteFile, now: chrono::DateTime<Utc>) -> String {
    match f.mtime {
        Some(t) if t > now => format!(
            " (its modification time, {}, is ahead of this machine's clock: the server's clock runs fast)",
            t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ),
        _ => String::new(),
    }
}

/// Starts parsing and mapping the download as it arrives, on its own thread. None when the
/// format is not known from the name (a `.zip` is looked into only once it is complete).
fn start_parse(conn: &Connector, name: &str, growing: &std::sync::Arc<spool::Growing>, unsent: &Unsent) -> Option<EarlyParse> {
    let format = conn.file.format.or_else(|| crate::config::Format::from_name(name))?;
    let input = crate::format::Input::Growing(std::sync::Arc::clone(growing));
    let (name, mapping, unsent) = (name.to_string(), super::parse::mapping_of(conn), unsent.clone());
    let span = tracing::Span::current();
    std::thread::Builder::new()
        .name("parse-download".into())
        .spawn(move || {
            let _in_run = span.enter();
            // The rows wait for the platform's answer (asked as the download began).
            read_and_map(&input, &name, format, &mapping, &unsent.wait()).map_err(ParseFailure::Format)
        })
        .ok()
}

pub struct Downloaded {
    pub fingerprint: FileFingerprint,
    pub name: String,
    pub path: PathBuf,
    _temp: Option<tempfile::TempPath>,
    /// The file read in place (`spool::Stamp`).
    stamp: Option<spool::Stamp>,
}

impl Downloaded {
    /// Moves the download to `dir/name` and returns that path.
    pub fn keep_in(mut self, dir: &Path) -> std::io::Result<PathBuf> {
        let target = dir.join(&self.name);
        match self._temp.take() {
            Some(t) => {
                if let Err(e) = t.persist(&target) {
                    // Across file systems rename fails: copy instead.
                    std::fs::copy(&e.path, &target)?;
                }
            }
            None => {
                // The file itself, read in place (a local folder's): copied unless `dir` is
                // its own folder, where a copy onto itself would empty it.
                if !same_file(&self.path, &target) {
                    std::fs::copy(&self.path, &target)?;
                }
                if self.stamp.as_ref().is_some_and(|s| !s.holds()) {
                    let e = SourceError::Changed { path: self.fingerprint.path.clone() };
                    return Err(std::io::Error::other(e.to_string()));
                }
            }
        }
        Ok(target)
    }
}

/// Whether two paths name the same file (both exist, same device and inode).
fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// Downloads the file the connector would pick now (ignoring what was synced before).
pub async fn download(conn: &Connector) -> Result<Option<Downloaded>, RunError> {
    let c = conn.clone();
    // Not part of a run: its own budget.
    let res = tokio::task::spawn_blocking(move || fetch_blocking(&c, None, true, None, None, &Budget::default()))
        .await
        .map_err(|e| RunError::Thread { what: "download", detail: Some(e.to_string()) })?
        .map_err(RunError::from)?;
    Ok(match res {
        Fetch::NoNewFile(no) => {
            tracing::warn!("{}", no.said(true));
            None
        }
        Fetch::Got(g) => {
            let Spool { path, _temp, stamp } = g.spool;
            Some(Downloaded { fingerprint: g.fingerprint, name: g.name, path, _temp, stamp })
        }
    })
}

/// Counts bytes on their way to the download file, for the progress display.
struct ProgressWriter<'a, W: std::io::Write> {
    inner: W,
    progress: Option<&'a dyn Progress>,
    done: u64,
}

impl<W: std::io::Write> std::io::Write for ProgressWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.done += n as u64;
        if let Some(p) = self.progress {
            p.advance(self.done);
        }
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
