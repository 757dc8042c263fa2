//! Exit codes (docs/design.md, "Exit codes"), and the trait every module's error enum implements so that
//! `cli` can turn any failure into the right code without knowing the module.

/// Process exit codes; the numbers are part of the CLI contract (scripts test them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Exit {
    Ok = 0,
    Other = 1,
    Config = 2,
    Connection = 3,
    Data = 4,
    Stopped = 5,
    Platform = 6,
}

impl Exit {
    pub fn code(self) -> i32 {
        self as i32
    }
}

/// Implemented by each module's error enum.
pub trait Classify {
    /// The exit code this error maps to.
    fn exit(&self) -> Exit;
    /// Whether trying the same step again may succeed (a dropped connection may; a
    /// changed host key, a bad password or a malformed file never will).
    fn retriable(&self) -> bool {
        false
    }
}
