//! The integration tests, one binary: each file of `tests/` is a module of it. Forty-nine
//! binaries, each linking the whole crate and its dependencies, took most of CI's build time
//! and 7+ GB of its disk. Run one file's tests with `cargo nextest run -E 'test(/^e2e::/)'`.

mod support;

mod adoption_race;
mod check;
mod commands;
mod config_reference;
mod daemon;
mod daemon_isolation;
mod damaged_files;
mod damaged_values;
mod deadline;
mod e2e;
mod etags;
mod excel_display;
mod exchange;
mod fencing_all;
mod file_drift;
mod fleet;
mod formats;
mod groups;
mod identity;
mod identity_rules;
mod lease;
mod lifecycle;
mod listing;
mod logs;
mod memory_budget;
mod metrics_manual;
mod multivalued;
mod packaging;
mod persons;
mod pg_tls;
mod pgp;
mod preflight;
mod reconcile;
mod redaction;
mod run_record;
mod safeguards;
mod schemas;
mod scim;
mod scim_b;
mod sftp;
mod soft_delete;
mod standalone;
mod state;
mod state_faults;
mod status_marker;
mod status_page;
mod tenants;
mod unsent_attributes;
mod wrong_files;
