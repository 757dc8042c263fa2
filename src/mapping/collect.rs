//! Mapping a whole export on several threads: one thread reads records (the format's
//! parsing), workers map and validate batches of them, and the results are put back in
//! file order, so reports and duplicate checks read exactly as a single pass would.
//!
//! Why: reading and mapping a million rows took ≈2.5 s on one core while the other sat
//! idle (perf, BENCHMARKS.md issue 8). Mapping is a pure function of one record, so it
//! parallelises without changing any result.

use std::collections::BTreeMap;
use std::sync::mpsc::{Receiver, sync_channel};
use std::sync::{Arc, Mutex};

use super::footer::Candidate;
use super::{Mapped, Mapper, SwappedDates, footprint, mark_duplicates};
use crate::format::{FormatError, Held, ReadError, Record, Records};
use crate::model::{RowError, SourcedUser};

/// Records per hand-over: large enough that channel traffic is noise, small enough that
/// memory in flight stays at a few MB.
const BATCH: usize = 1024;

type Item = Result<Record, ReadError>;

/// What one batch gave.
#[derive(Default)]
struct MappedBatch {
    users: Vec<SourcedUser>,
    errors: Vec<RowError>,
    rows: u64,
    swapped_dates: SwappedDates,
    out_of_scope: Vec<super::OutOfScope>,
    dates: Vec<(String, super::dates::Dates)>,
    fill: super::fill::Counter,
    /// Rows that may be a footer (`super::footer`), and the line of the last row that may not.
    candidates: Vec<Candidate>,
    last_person: u64,
    /// A file-level fault ends the batch, and the file.
    fault: Option<FormatError>,
}

/// Maps a batch in place: errors are taken out of it, records are only read, so the batch
/// goes back to the reader with its records for reuse (`Record::recycle`).
fn map_batch(items: &mut [Item], mapper: &Mapper) -> MappedBatch {
    let mut part = MappedBatch { users: Vec::with_capacity(items.len()), ..MappedBatch::default() };
    for item in items.iter_mut() {
        if item.is_err() {
            if let Err(e) = std::mem::replace(item, Ok(Record::default()))
                && part.read_error(e, mapper)
            {
                break;
            }
            continue;
        }
        let Ok(rec) = &*item else { continue };
        if !mapper.in_scope(rec) {
            part.last_person = rec.line;
            if let Some(external_id) = mapper.external_id(rec) {
                part.out_of_scope.push(super::OutOfScope { external_id, line: rec.line });
            }
            continue;
        }
        part.rows += 1;
        part.fill.count(rec);
        match mapper.map(rec).and_then(|user| Ok((mapper.dates(rec)?, user))) {
            Ok((dates, user)) => {
                part.last_person = rec.line;
                if !dates.is_empty() {
                    part.dates.push((user.external_id.to_string(), dates));
                }
                part.users.push(SourcedUser { user: Box::new(user), line: rec.line })
            }
            Err(mut errs) if errs.iter().all(|e| e.external_id.is_none()) => {
                // A date fault of a row otherwise valid: its person is known.
                let id = mapper.external_id(rec);
                errs.iter_mut().for_each(|e| e.external_id.clone_from(&id));
                mapper.note_swapped_dates(rec, &mut part.swapped_dates);
                part.note_invalid(rec, mapper);
                part.errors.extend(errs)
            }
            Err(errs) => {
                mapper.note_swapped_dates(rec, &mut part.swapped_dates);
                part.note_invalid(rec, mapper);
                part.errors.extend(errs)
            }
        }
    }
    part
}

/// `collect_within` with no memory bound (tests, samples).
pub fn collect(records: Records, mapper: &Mapper) -> Result<Mapped, FormatError> {
    collect_within(records, mapper, &mut Held::unbounded())
}

impl MappedBatch {
    /// A record the format could not give whole. Returns whether it ends the file.
    fn read_error(&mut self, e: ReadError, mapper: &Mapper) -> bool {
        match e {
            ReadError::Row { mut error, cells } => {
                self.rows += 1;
                match &cells {
                    Some(c) => {
                        self.fill.count(c);
                        self.note_invalid(c, mapper);
                    }
                    None => self.last_person = error.line,
                }
                error.external_id = cells.as_ref().and_then(|c| mapper.external_id(c));
                self.errors.push(error);
                false
            }
            ReadError::Sparse { error, values } => {
                self.rows += 1;
                let label = values.first().cloned();
                self.candidates.push(Candidate { line: error.line, label, values, counted: Vec::new() });
                self.errors.push(error);
                false
            }
            ReadError::File(e) => {
                self.fault = Some(e);
                true
            }
        }
    }

    /// An invalid record: a footer candidate when one or two of its cells are filled (its
    /// label the unique id's cell), else a row that may be a person.
    fn note_invalid(&mut self, rec: &Record, mapper: &Mapper) {
        let counted: Vec<usize> =
            rec.values().enumerate().filter(|(_, v)| v.is_some_and(|v| !super::is_blank(v))).map(|(i, _)| i).collect();
        if (1..=2).contains(&counted.len()) {
            let values = counted.iter().filter_map(|&i| rec.get(i)).map(|v| crate::text::excerpt(v.trim())).collect();
            self.candidates.push(Candidate { line: rec.line, label: mapper.external_id(rec), values, counted });
        } else {
            self.last_person = rec.line;
        }
    }
}

/// Skips the footer rows at the end of the file (`super::footer`): out of the rows, the
/// errors and the column fill, into `Mapped::footers`.
fn skip_footers(out: &mut Mapped, fill: &mut super::fill::Counter, candidates: &[Candidate], last_person: u64) {
    let found = super::footer::at_end(candidates, last_person, out.users.iter().map(|u| u.user.external_id.as_ref()));
    if found.is_empty() {
        return;
    }
    let lines: std::collections::HashSet<u64> = found.iter().map(|&i| candidates[i].line).collect();
    out.errors.retain(|e| !lines.contains(&e.line));
    for &i in &found {
        let c = &candidates[i];
        out.rows -= 1;
        if !c.counted.is_empty() {
            fill.uncount(&c.counted);
        }
        out.footers.push(super::footer::Footer { line: c.line, values: c.values.clone() });
    }
}

/// Maps every record, then marks rows that share a unique id as errors (all of them).
/// A file-level fault (truncated or corrupt file) is returned as is: the records read so far
/// are not the full export. What is kept is charged to `held` as it arrives (`footprint`):
/// past the budget, an id's rows beyond its first few are counted instead of kept, and if
/// that does not free a quarter of the budget the file is refused (`Limit::Memory`).
pub fn collect_within(records: Records, mapper: &Mapper, held: &mut Held) -> Result<Mapped, FormatError> {
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 4);
    let mut out = Mapped::default();
    let mut fill = super::fill::Counter::default();
    let (mut candidates, mut last_person) = (Vec::new(), 0u64);
    let fault = std::thread::scope(|s| {
        let (batch_tx, batch_rx) = sync_channel::<(u64, Vec<Item>)>(workers * 2);
        let (part_tx, part_rx) = sync_channel::<(u64, MappedBatch)>(workers * 2);
        // Emptied batches go back to the reader: a thousand batches of a million rows reuse
        // a few buffers instead of each growing a new one by doubling on the reader and
        // freeing it on a worker (fresh memory the kernel zeroes every time: perf).
        let (spare_tx, spare_rx) = std::sync::mpsc::channel::<Vec<Item>>();
        s.spawn(move || {
            let mut records = records;
            for seq in 0.. {
                let mut batch = match spare_rx.try_recv() {
                    // The records mapped go back to this thread's spares, which the format
                    // fills again (`Record::reused`).
                    Ok(mut done) => {
                        Record::recycle(done.drain(..).filter_map(Result::ok));
                        done
                    }
                    Err(_) => Vec::with_capacity(BATCH),
                };
                batch.extend(records.by_ref().take(BATCH));
                let last = batch.len() < BATCH || matches!(batch.last(), Some(Err(ReadError::File(_))));
                // A closed channel means the collector stopped (a fault): stop reading too.
                if batch.is_empty() || batch_tx.send((seq, batch)).is_err() || last {
                    break;
                }
            }
        });
        let batch_rx = Arc::new(Mutex::new(batch_rx));
        for _ in 0..workers {
            let rx = Arc::clone(&batch_rx);
            let tx = part_tx.clone();
            let spare = spare_tx.clone();
            s.spawn(move || {
                while let Some((seq, mut items)) = next(&rx) {
                    let part = map_batch(&mut items, mapper);
                    // The reader may have finished: a batch nobody takes back is just freed.
                    let _ = spare.send(items);
                    if tx.send((seq, part)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(part_tx);
        drop(spare_tx);
        drop(batch_rx);
        // Parts arrive in any order; merge them in file order. Returning drops `part_rx`,
        // which stops the workers, which stops the reader.
        let mut pending: BTreeMap<u64, MappedBatch> = BTreeMap::new();
        let mut want = 0u64;
        for (seq, part) in part_rx {
            pending.insert(seq, part);
            while let Some(mut part) = pending.remove(&want) {
                want += 1;
                if let Err(e) = keep_within(&mut out, &mut part, mapper, held) {
                    return Some(e);
                }
                out.rows += part.rows;
                out.users.extend(part.users);
                out.errors.extend(part.errors);
                out.swapped_dates.merge(part.swapped_dates);
                out.out_of_scope.extend(part.out_of_scope);
                out.dates.extend(part.dates);
                fill.merge(part.fill);
                candidates.extend(part.candidates);
                last_person = last_person.max(part.last_person);
                if part.fault.is_some() {
                    return part.fault;
                }
            }
        }
        None
    });
    if let Some(e) = fault {
        return Err(e);
    }
    // Once the budget made some ids' rows counts, every such id keeps only its first rows:
    // the result does not depend on when the budget filled.
    if !out.duplicates_untold.is_empty() {
        footprint::compact_duplicates(&mut out, mapper.mapping.id_rule());
    }
    skip_footers(&mut out, &mut fill, &candidates, last_person);
    out.fill = fill.named(mapper.columns());
    mark_duplicates(&mut out, mapper);
    // However a message was made, it carries no more than a bounded piece of the file.
    for e in &mut out.errors {
        bound_message(&mut e.message);
    }
    Ok(out)
}

/// Charges a batch to the budget before it joins `out`; when it does not fit, the rows of
/// ids on many rows are counted instead of kept first.
fn keep_within(out: &mut Mapped, part: &mut MappedBatch, mapper: &Mapper, held: &mut Held) -> Result<(), FormatError> {
    // Messages bounded now rather than at the end: a kept message is what is charged.
    part.errors.iter_mut().for_each(|e| bound_message(&mut e.message));
    let bytes = part.users.iter().map(footprint::user_bytes).sum::<u64>()
        + part.errors.iter().map(footprint::error_bytes).sum::<u64>()
        + part.out_of_scope.iter().map(|o| footprint::string_bytes(&o.external_id) + 8).sum::<u64>()
        + part.dates.iter().map(|(id, _)| footprint::string_bytes(id) + std::mem::size_of::<super::dates::Dates>() as u64).sum::<u64>();
    if !held.would_pass(bytes) {
        return held.charge(bytes, None, String::new);
    }
    let freed = footprint::compact_duplicates(out, mapper.mapping.id_rule());
    held.release(freed);
    let line = part.users.last().map(|u| u.line).into_iter().chain(part.errors.last().map(|e| e.line)).max();
    if held.used() > held.max() / 4 * 3 {
        return Err(held.exceeded(line, what_grew(out, part)));
    }
    held.charge(bytes, line, || what_grew(out, part))
}

/// What the budget was spent on, for the refusal.
fn what_grew(out: &Mapped, part: &MappedBatch) -> String {
    let people = out.users.len() + part.users.len();
    let errors = out.errors.len() + part.errors.len();
    format!("what its rows make the run hold to plan ({people} people and {errors} row errors kept when reading stopped)")
}

fn next(rx: &Mutex<Receiver<(u64, Vec<Item>)>>) -> Option<(u64, Vec<Item>)> {
    rx.lock().ok()?.recv().ok()
}

/// Longest row-error message kept, in bytes.
const MAX_MESSAGE: usize = 600;

fn bound_message(m: &mut String) {
    if m.len() > MAX_MESSAGE {
        let mut cut = MAX_MESSAGE;
        while !m.is_char_boundary(cut) {
            cut -= 1;
        }
        let total = m.len();
        m.truncate(cut);
        m.push_str(&format!("… ({total} bytes in all)"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAPPING: &str = r#"
unique_id = "employee_id"
[fields]
employee_id = "Id"
first_name  = "First"
last_name   = "Last"
[attributes]
hire_date = { column = "Hired", date = "%Y-%m-%d" }
"#;

    fn mapper() -> Mapper {
        Mapper::new(&crate::config::parse_mapping(MAPPING, std::path::Path::new("m.toml")).unwrap())
    }

    #[allow(clippy::result_large_err)] // test data; ReadError is what the format yields
    /// Row `i` (line i + 2): every 7th has a bad date, every 1000th repeats the id of the row
    /// before it, every 500th is a misaligned row (unidentified) and every 500th + 100 has an
    /// unreadable cell beside a readable id; the rest are valid.
    fn records(m: &Mapper, n: u64) -> Vec<Item> {
        (0..n)
            .map(|i| {
                let line = i + 2;
                let id = if i % 1000 == 999 { format!("E{}", i - 1) } else { format!("E{i}") };
                let date = if i % 7 == 3 { "not a date" } else { "2020-01-31" };
                let cells = m.columns().iter().map(|c| match c.as_str() {
                    "Id" => Some(id.clone()),
                    "First" => Some("Ann".to_string()),
                    "Last" => Some(format!("L{i}")),
                    _ => Some(date.to_string()),
                });
                let rec = Record::from_values(line, cells);
                if i % 500 == 250 {
                    let error = RowError { line, column: None, message: "found 3 fields".into(), external_id: None };
                    return Err(ReadError::unidentified(error));
                }
                if i % 500 == 350 {
                    let error = RowError { line, column: Some("Last".into()), message: "invalid UTF-8".into(), external_id: None };
                    return Err(ReadError::Row { error, cells: Some(rec) });
                }
                Ok(rec)
            })
            .collect()
    }

    #[test]
    fn parallel_result_equals_one_pass_in_file_order() {
        let m = mapper();
        let n = 10 * BATCH as u64 + 123;
        let got = collect(Box::new(records(&m, n).into_iter()), &m).unwrap();

        // The same, one record at a time on this thread.
        let mut want = Mapped::default();
        let part = map_batch(&mut records(&m, n), &m);
        want.rows = part.rows;
        want.users = part.users;
        want.errors = part.errors;
        mark_duplicates(&mut want, &m);

        assert_eq!(got.rows, n);
        assert_eq!(got.users, want.users);
        assert_eq!(got.errors, want.errors);
        assert!(got.users.windows(2).all(|w| w[0].line < w[1].line), "users in file order");
        let dups = got.errors.iter().filter(|e| e.message.contains("is on 2 rows")).count();
        assert!(dups >= 2 * 9, "each repeated id fails both its rows: {dups}");
        assert!(got.errors.iter().any(|e| e.message.contains("not a date")));
        // A reader's row error keeps the id of its readable cells; a shifted row has none.
        let at = |line: u64| got.errors.iter().find(|e| e.line == line).unwrap();
        assert_eq!(at(352).external_id.as_deref(), Some("E350"));
        assert_eq!(at(252).external_id, None);
        // Rows without an id, and rows sharing one, hold absentees.
        assert_eq!(got.ambiguous, want.ambiguous);
        assert!(!got.ambiguous.is_empty());
        let mut held: Vec<u64> = (0..n).filter(|i| i % 500 == 250).map(|i| i + 2).chain(want.ambiguous.iter().copied()).collect();
        held.sort_unstable();
        assert_eq!(got.unidentified_lines(), held);
    }

    #[test]
    fn a_fault_mid_file_fails_the_whole_file() {
        let m = mapper();
        let mut items = records(&m, 5 * BATCH as u64);
        items.truncate(3 * BATCH + 17);
        items.push(Err(ReadError::File(FormatError::Malformed { file: "f.csv".into(), line: Some(9), message: "truncated".into() })));
        let err = collect(Box::new(items.into_iter()), &m).unwrap_err();
        assert!(err.to_string().contains("truncated"), "{err}");
    }

    #[allow(clippy::result_large_err)] // test data; ReadError is what the format yields
    /// Cells in the mapping's column order (`Id`, `First`, `Last`, `Hired`).
    fn cells(line: u64, v: [&str; 4]) -> Item {
        Ok(Record::from_values(line, v.iter().map(|c| (!c.is_empty()).then_some(*c))))
    }

    #[test]
    #[allow(clippy::result_large_err)]
    fn the_column_fill_counts_values_and_a_footer_at_the_end_is_taken_out() {
        let m = mapper();
        let mut items: Vec<Item> = (0..10).map(|i| cells(i + 2, [&format!("E{i}"), "Ann", "Lee", ""])).collect();
        // A spreadsheet's footer: a label in the id column and a total beside it (rows of
        // the right width, not a person); then a short CSV line.
        items.push(cells(12, ["Total", "", "", "10"]));
        let error = RowError { line: 13, column: None, message: "found 1 fields".into(), external_id: None };
        items.push(Err(ReadError::Sparse { error, values: vec!["Generated by Workday".into()] }));
        let got = collect(Box::new(items.into_iter()), &m).unwrap();
        assert_eq!((got.rows, got.errors.len(), got.users.len()), (10, 0, 10), "{:?}", got.errors);
        assert_eq!(got.footers.iter().map(|f| f.line).collect::<Vec<_>>(), [12, 13]);
        assert_eq!(got.footers[0].values, ["Total", "10"]);
        assert!(got.unidentified_lines().is_empty());
        let filled = |c: &str| got.fill.filled[c];
        assert_eq!((got.fill.rows, filled("Id"), filled("First"), filled("Last"), filled("Hired")), (10, 10, 10, 10, 0));
    }

    #[test]
    #[allow(clippy::result_large_err)]
    fn a_footer_like_row_before_a_person_stays_and_holds() {
        let m = mapper();
        let mut items: Vec<Item> = (0..10).map(|i| cells(i + 2, [&format!("E{i}"), "Ann", "Lee", "2020-01-31"])).collect();
        let error = RowError { line: 12, column: None, message: "found 1 fields".into(), external_id: None };
        items.insert(5, Err(ReadError::Sparse { error, values: vec!["Total: 9".into()] }));
        // A last row with no id (a person whose id is missing) is never a footer.
        items.push(cells(13, ["", "Bob", "", ""]));
        let got = collect(Box::new(items.into_iter()), &m).unwrap();
        assert!(got.footers.is_empty(), "{:?}", got.footers);
        assert_eq!(got.rows, 12);
        assert_eq!(got.unidentified_lines(), [12, 13]);
    }
}
