//! The exchange with the customer beyond the export itself: OpenPGP exports in
//! (`source::pgp` decrypts them; their keys are part of these settings), result files and
//! email notices out. This module owns these settings; `config::exchange` reads and checks them.

pub mod email;
pub mod result_file;

use crate::source::pgp::PgpSettings;
pub use result_file::{ResultRule, ResultWhen};

/// A connector's exchange settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Exchange {
    /// `[file]` `decrypt_key` / `verify_key`: the export is OpenPGP.
    pub pgp: Option<PgpSettings>,
    /// `[connectors.NAME.result]`: the result file written back to the customer.
    pub result: Option<ResultRule>,
    /// `[connectors.NAME.notify]`: who is emailed about the connector's problems.
    pub notify: Option<email::NotifyRule>,
}
