//! Text from outside as the CLI prints it: the helpers live in `crate::text`, which the
//! library's stages share; the commands keep importing them from here.

pub use crate::text::{Numbers, shown, shown_lines};
