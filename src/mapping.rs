//! Mapping: records → users and row errors. A pure function of the mapping file and the
//! record; no I/O.

use crate::config::Mapping;
use crate::format::Record;
use crate::model::{RowError, User};

/// A mapping compiled against the columns requested from the format (`Mapping::columns()`).
pub struct Mapper {
    mapping: Mapping,
    columns: Vec<String>,
}

impl Mapper {
    pub fn new(mapping: &Mapping) -> Mapper {
        Mapper { columns: mapping.columns(), mapping: mapping.clone() }
    }

    /// The columns to ask the format for, in the order `Record::values` will hold them.
    pub fn columns(&self) -> &[String] {
        &self.columns
    }

    /// Maps and validates one record.
    pub fn map(&self, record: &Record) -> Result<User, Vec<RowError>> {
        let _ = (&self.mapping, record);
        unimplemented!()
    }
}

/// Everything mapped from one file.
#[derive(Debug, Default)]
pub struct Mapped {
    /// Valid users, in file order.
    pub users: Vec<crate::model::SourcedUser>,
    /// Invalid rows; duplicates of one unique id are all here, each with its line.
    pub errors: Vec<RowError>,
    /// Data rows read (valid + invalid).
    pub rows: u64,
}

/// Maps every record, then marks rows that share a unique id as errors (all of them).
pub fn collect(records: crate::format::Records, mapper: &Mapper) -> Mapped {
    let _ = (records, mapper);
    unimplemented!()
}
