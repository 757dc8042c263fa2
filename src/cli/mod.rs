//! The command line: one file per command; anyhow lives here and in main only.

pub fn main() -> i32 {
    0
}
