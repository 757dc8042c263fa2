//! State: snapshots, file fingerprints, run history and leases, behind a trait so that
//! PostgreSQL can follow SQLite without touching plan or sync.
