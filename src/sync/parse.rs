//! Step 3 of a run: the file's records mapped to users (CPU work, off the async threads).

use std::collections::BTreeSet;
use std::path::Path;

use super::fetch::Got;
use super::{Ctx, FileRefusal, RunError, Tally};
use crate::config::{Connector, Format, Mapping};
use crate::format::{FormatError, Input};
use crate::mapping::{Mapped, Mapper};
use crate::report::RunOutcome;
use crate::state::StateStore;

/// The parse that followed the download (see `crate::spool`). Its result is used only when
/// the download succeeded and was checked; otherwise it ended with an error by itself.
pub(super) type EarlyParse = std::thread::JoinHandle<Result<Mapped, ParseFailure>>;

/// Why parsing failed: the file itself (which `sync` may turn into a safeguard stop), or
/// anything else.
pub(super) enum ParseFailure {
    Format(FormatError),
    Other(RunError),
}

/// Reads every record of the export and maps it (CPU work: call it off the async threads).
/// Values of the `unsent` attributes (the platform will not take them) refuse no row.
pub(super) fn read_and_map(
    input: &Input,
    name: &str,
    format: Format,
    mapping: &Mapping,
    unsent: &BTreeSet<String>,
) -> Result<Mapped, FormatError> {
    let mapper = Mapper::new(mapping).leaving_out(unsent);
    let mut held = crate::format::Held::new(name, &mapping.source.limits);
    // A workbook's shared strings are held while its rows are read: charged first.
    let strings = crate::format::held_on_open(input, name, format, &mapping.source.limits)?;
    held.charge(strings, None, || "the workbook's shared strings".into())?;
    let records = crate::format::open_input(input, name, format, &mapping.source, mapper.columns())?;
    let mapped = crate::mapping::collect_within(records, &mapper, &mut held)?;
    // A date column read the other way round taints every row: refused as a file error.
    match mapped.date_order_fault(name) {
        Some(e) => Err(e),
        None => Ok(mapped),
    }
}

/// The connector's mapping with the bounds of its file: `[file] max_size` also bounds the
/// bytes a compressed export inflates to, `[sync] max_memory` what the file makes the run hold.
pub(super) fn mapping_of(conn: &Connector) -> Mapping {
    let mut m = conn.mapping.clone();
    m.source.limits.max_size = conn.file.max_size;
    m.source.limits.max_memory = conn.sync.max_memory;
    m
}

/// Parses and maps a local file with the connector's mapping, on a blocking thread.
pub async fn parse_file(conn: &Connector, path: &Path, name: &str) -> Result<Mapped, RunError> {
    parse_file_detailed(conn, path, name, &BTreeSet::new()).await.map_err(|e| match e {
        ParseFailure::Format(e) => RunError::from(e),
        ParseFailure::Other(f) => f,
    })
}

async fn parse_file_detailed(conn: &Connector, path: &Path, name: &str, unsent: &BTreeSet<String>) -> Result<Mapped, ParseFailure> {
    // "auto": by extension, looking inside a .zip at the one file it holds.
    let format = match conn.file.format {
        Some(f) => f,
        None => crate::format::detect(path, name).map_err(ParseFailure::Format)?,
    };
    let input = Input::from(path);
    let name = name.to_string();
    let mapping = mapping_of(conn);
    let unsent = unsent.clone();
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || {
        let _in_run = span.enter();
        read_and_map(&input, &name, format, &mapping, &unsent).map_err(ParseFailure::Format)
    })
    .await
    .map_err(|e| ParseFailure::Other(RunError::Thread { what: "parsing", detail: Some(e.to_string()) }))?
}

impl<S: StateStore> Ctx<'_, S> {
    /// The users of the file: from the parse that followed the download, or parsed now. A
    /// file that cannot be used at all (empty, a mapped column missing) stops the run here.
    pub(super) async fn parse(&self, t: &mut Tally, got: &mut Got, unsent: &super::unsent::Unsent) -> Result<Mapped, RunError> {
        // Not through a &Got across the await: a reference to the boxed source held there
        // would make the run's future not Send (the daemon runs it on its worker threads).
        let parsed = match got.early.take() {
            Some(early) => {
                tracing::debug!(file = %got.name, "parsed and mapped while it downloaded");
                tokio::task::spawn_blocking(move || early.join())
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .unwrap_or_else(|| Err(ParseFailure::Other(RunError::Thread { what: "parsing", detail: None })))
            }
            None => {
                // Answered by now: asked as the download began, beside the snapshot's load.
                let unsent = unsent.clone();
                let unsent = tokio::task::spawn_blocking(move || unsent.wait()).await.unwrap_or_default();
                parse_file_detailed(self.conn, &got.spool.path, &got.name, &unsent).await
            }
        };
        // A file read in place must not have changed while it was hashed and parsed: the
        // plan would be made from bytes no hash describes (`crate::spool`).
        if let Some(stamp) = &got.spool.stamp
            && !stamp.holds()
        {
            let path = got.remote.as_ref().map_or_else(|| stamp.path().display().to_string(), |r| r.path.clone());
            return Err(crate::source::SourceError::Changed { path }.into());
        }
        match parsed {
            Ok(m) => Ok(m),
            // An empty export empties the customer: only on an explicit --allow-mass-change.
            Err(ParseFailure::Format(FormatError::Empty { .. })) if self.opts.allow_mass_change => Ok(Mapped::default()),
            Err(ParseFailure::Format(e)) => Err(self.refuse_file(t, e)),
            Err(ParseFailure::Other(f)) => Err(f),
        }
    }

    /// A file that is empty or lacks a mapped column is refused by a safeguard: nothing
    /// is planned from it.
    fn refuse_file(&self, t: &mut Tally, e: FormatError) -> RunError {
        let Some(refusal) = FileRefusal::of(&e) else { return RunError::from(e) };
        t.report.outcome = RunOutcome::Stopped;
        t.report.stopped_by = Some(refusal.rule().to_string());
        RunError::FileRefused { connector: self.conn.name.clone(), refusal, error: Box::new(e) }
    }
}
