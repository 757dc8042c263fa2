//! A run's memory budget over what grows with the file: the rows kept for planning, the
//! duplicate tracking, a workbook's shared strings. Streaming bounds what is *read* at once
//! (`Limits`: a row, a field, the inflated size); this bounds what is *held*, which a small
//! file can make huge (one id on millions of rows, a string table that inflates to gigabytes).
//!
//! Sizes are estimated where things are stored, from their lengths (no allocator hooks): the
//! estimates follow the data structures (`mapping::footprint`), so the budget says when a file
//! would make the process hold about that much, and refuses it before it does.

use super::{FormatError, Limit, Limits};

/// Bytes held for one file, against `[sync] max_memory`.
#[derive(Debug)]
pub struct Held {
    file: String,
    limits: Limits,
    used: u64,
}

impl Held {
    /// An empty budget for `file` under `limits.max_memory`.
    pub fn new(file: &str, limits: &Limits) -> Held {
        Held { file: file.into(), limits: *limits, used: 0 }
    }

    /// No bound (tests, and tools that read a sample).
    pub fn unbounded() -> Held {
        Held { file: String::new(), limits: Limits { max_memory: u64::MAX, ..Limits::default() }, used: 0 }
    }

    pub fn used(&self) -> u64 {
        self.used
    }

    pub fn max(&self) -> u64 {
        self.limits.max_memory
    }

    /// Whether `bytes` more would pass the budget (nothing is charged).
    pub fn would_pass(&self, bytes: u64) -> bool {
        self.used.saturating_add(bytes) > self.limits.max_memory
    }

    /// Takes `bytes` more, or refuses the file naming what grew (`what` is called only then)
    /// and the line reached.
    pub fn charge(&mut self, bytes: u64, line: Option<u64>, what: impl FnOnce() -> String) -> Result<(), FormatError> {
        if self.would_pass(bytes) {
            return Err(self.exceeded(line, what()));
        }
        self.used += bytes;
        Ok(())
    }

    /// Gives back `bytes` (what was held is dropped).
    pub fn release(&mut self, bytes: u64) {
        self.used = self.used.saturating_sub(bytes);
    }

    /// The refusal: exit 4, naming the file, what grew and the key that raises the budget.
    pub fn exceeded(&self, line: Option<u64>, what: String) -> FormatError {
        self.limits.exceeded(&self.file, line, Limit::Memory, what)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_up_to_the_budget_and_names_the_key_past_it() {
        let limits = Limits { max_memory: 1000, ..Limits::default() };
        let mut h = Held::new("export.csv.gz", &limits);
        h.charge(600, None, || unreachable!()).unwrap();
        h.charge(400, None, || unreachable!()).unwrap();
        let e = h.charge(1, Some(77), || "the rows held".into()).unwrap_err();
        assert!(matches!(e, FormatError::TooLarge { limit: Limit::Memory, .. }), "{e:?}");
        let text = e.to_string();
        assert!(text.starts_with("export.csv.gz:77: the rows held is over 1000 bytes ([sync] max_memory"), "{text}");
        assert_eq!(h.used(), 1000, "a refused charge takes nothing");
        h.release(300);
        assert!(!h.would_pass(300) && h.would_pass(301));
    }
}
