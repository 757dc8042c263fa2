//! rostersync: keeps a platform's user directory in step with customers' HR exports.
//!
//! The modules read as the pipeline (see ARCHITECTURE.md):
//! `config` → `source` → `format` → `mapping` → `plan` → `platform` → `state`,
//! orchestrated for one run by `sync`, started by `schedule`/`daemon` or the `cli`.

pub mod alloc;
pub mod build_info;
pub mod changes;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod exchange;
pub mod exit;
pub mod format;
pub mod lookup;
pub mod mapping;
pub mod model;
pub mod plan;
pub mod platform;
pub mod preflight;
pub mod redact;
pub mod report;
pub mod retry;
pub mod schedule;
pub mod secret;
pub mod source;
pub mod spool;
pub mod state;
pub mod sync;
pub mod text;
