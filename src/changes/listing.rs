//! Every operation of a plan, for `--json` and `--plan-out` (issue 15 lists them all),
//! without a second copy of a million people in memory: BENCHMARKS.md ("1M dry run: listing
//! every operation") measured 1M owned entries plus their JSON text at +149 MiB and +1.6 s
//! of CPU on a 1M dry run. A plan nothing will send (a dry run, a stopped run) is kept and
//! described one person at a time while the output is written. A plan about to be sent
//! hands its people to the push, so it is described first into an unnamed temporary file,
//! one JSON line per person, and read back line by line.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::os::unix::fs::FileExt;

use serde::ser::{Error as _, SerializeSeq};
use serde::{Serialize, Serializer};

use super::{PersonOp, person_ops};
use crate::model::User;
use crate::plan::Plan;

/// A plan's operations and conflicts, person by person, in `describe`'s order, made as
/// they are read. Serializes as the JSON array of them.
pub struct Listing {
    inner: Inner,
    len: usize,
}

enum Inner {
    /// A plan nothing sends: described as it is read.
    Plan { plan: Box<Plan>, stored: HashMap<String, User>, connector: String },
    /// A plan sent since: its entries as JSON lines (the file goes with the process).
    Spilled(File),
    /// The temporary file could not be written (a full disk): the entries themselves.
    Held(Vec<PersonOp>),
}

impl Listing {
    /// The listing of a plan nothing will send, which it keeps; `stored` as for `describe`
    /// (every operation's).
    pub fn of_plan(plan: Plan, stored: HashMap<String, User>, connector: &str) -> Listing {
        let len = plan.ops.len() + plan.conflicts.len();
        Listing { inner: Inner::Plan { plan: Box::new(plan), stored, connector: connector.to_string() }, len }
    }

    /// The listing of a plan about to be sent, written out now. Never fails: without a
    /// temporary file the entries are held in memory (the cost the file avoids), and said.
    pub fn spill(plan: &Plan, stored: &HashMap<String, User>, connector: &str) -> Listing {
        let len = plan.ops.len() + plan.conflicts.len();
        let written = tempfile::tempfile().and_then(|file| {
            let mut w = BufWriter::with_capacity(1 << 16, &file);
            for op in person_ops(plan, stored, connector) {
                serde_json::to_writer(&mut w, &op)?;
                w.write_all(b"\n")?;
            }
            w.flush()?;
            drop(w);
            Ok(file)
        });
        match written {
            Ok(file) => Listing { inner: Inner::Spilled(file), len },
            Err(e) => {
                tracing::warn!(
                    "cannot write the plan's {len} operation(s) to a temporary file ({e}); holding them in memory for the report (check TMPDIR's free space)"
                );
                Listing { inner: Inner::Held(person_ops(plan, stored, connector).collect()), len }
            }
        }
    }

    /// Operations and conflicts listed.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The entries in order. Reading one back from the temporary file may fail (an I/O
    /// error); a plan's are made without any.
    pub fn iter(&self) -> Box<dyn Iterator<Item = io::Result<PersonOp>> + '_> {
        match &self.inner {
            Inner::Plan { plan, stored, connector } => Box::new(person_ops(plan, stored, connector).map(Ok)),
            Inner::Held(ops) => Box::new(ops.iter().cloned().map(Ok)),
            // Each reader keeps its own offset: two readings never share the file's.
            Inner::Spilled(file) => Box::new(BufReader::with_capacity(1 << 16, At { file, pos: 0 }).lines().map(|line| {
                let line = line?;
                serde_json::from_str::<PersonOp>(&line).map_err(io::Error::other)
            })),
        }
    }

    /// `--plan-out`: the entries as `write_csv` writes them, one at a time.
    pub fn write_csv<W: Write>(&self, w: W) -> Result<(), csv::Error> {
        let mut out = super::csv_writer(w)?;
        for op in self.iter() {
            super::write_csv_rows(&mut out, &op?)?;
        }
        out.flush()?;
        Ok(())
    }
}

impl Serialize for Listing {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.len))?;
        if let Inner::Plan { plan, stored, connector } = &self.inner {
            // Borrowed: a million entries are written without a copy of each id and name.
            for op in super::person_op_refs(plan, stored, connector) {
                seq.serialize_element(&op)?;
            }
            return seq.end();
        }
        for op in self.iter() {
            seq.serialize_element(&op.map_err(|e| S::Error::custom(format!("cannot read back the plan's operations: {e}")))?)?;
        }
        seq.end()
    }
}

impl std::fmt::Debug for Listing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let how = match self.inner {
            Inner::Plan { .. } => "plan",
            Inner::Spilled(_) => "spilled",
            Inner::Held(_) => "held",
        };
        f.debug_struct("Listing").field("len", &self.len).field("from", &how).finish()
    }
}

/// A reader of a file from its own offset (positional reads).
struct At<'a> {
    file: &'a File,
    pos: u64,
}

impl Read for At<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read_at(buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fixtures::user;
    use crate::plan::{Bound, Conflict, Op};

    fn plan(n: usize) -> Plan {
        let ops: Vec<Op> = (0..n).map(|i| Op::Create { user: Box::new(user(&format!("E{i:05}"), true, "x")) }).collect();
        Plan {
            lines: (0..n as u64).map(|l| l + 2).collect(),
            ops,
            conflicts: vec![Conflict {
                external_id: "X".into(),
                line: 9,
                platform_id: "P-X".into(),
                bound: Bound::TakenInRun { external_id: "E00000".into() },
            }],
            ..Plan::default()
        }
    }

    #[test]
    fn a_listing_reads_as_describe_whole_from_the_plan_or_its_file() {
        let p = plan(3000);
        let whole = super::super::describe(&p, &HashMap::new(), "acme", usize::MAX);
        assert_eq!(whole.len(), 3001);
        let spilled = Listing::spill(&p, &HashMap::new(), "acme");
        assert!(matches!(spilled.inner, Inner::Spilled(_)), "{spilled:?}");
        let kept = Listing::of_plan(p, HashMap::new(), "acme");
        for l in [&kept, &spilled] {
            assert_eq!(l.len(), 3001);
            let read: Vec<PersonOp> = l.iter().collect::<io::Result<_>>().unwrap();
            assert_eq!(read, whole, "{l:?}");
            // Two readings at once do not disturb each other (each has its own offset).
            let (mut a, mut b) = (l.iter(), l.iter());
            assert_eq!(a.next().unwrap().unwrap(), whole[0]);
            assert_eq!(b.next().unwrap().unwrap(), whole[0]);
            assert_eq!(a.next().unwrap().unwrap(), whole[1]);
            // The JSON is the array `describe`'s entries make, and the CSV its rows.
            assert_eq!(serde_json::to_value(l).unwrap(), serde_json::to_value(&whole).unwrap());
            let (mut csv_l, mut csv_w) = (Vec::new(), Vec::new());
            l.write_csv(&mut csv_l).unwrap();
            super::super::write_csv(&whole, &mut csv_w).unwrap();
            assert_eq!(String::from_utf8(csv_l).unwrap(), String::from_utf8(csv_w).unwrap());
        }
    }
}
