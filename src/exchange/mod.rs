//! The exchange with the customer beyond the export itself: OpenPGP exports in
//! (`source::pgp` decrypts them; their keys are part of these settings), result files and
//! email notices out. This module owns these settings; `config::exchange` reads and checks them.

use crate::source::pgp::PgpSettings;

/// A connector's exchange settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Exchange {
    /// `[file]` `decrypt_key` / `verify_key`: the export is OpenPGP.
    pub pgp: Option<PgpSettings>,
}
