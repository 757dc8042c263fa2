//! Platform: applies a plan to the platform's user API (SCIM 2.0) and reports each
//! operation's outcome as it happens, so `state` can record it at once.

pub mod scim;
pub mod targets;

use crate::exit::{Classify, Exit};
use crate::plan::{Existing, Op, OpKind};
use crate::retry::Budget;

/// The outcome of one operation (`report::Outcome` is a whole run's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpOutcome {
    pub result: Result<Applied, OpFailure>,
    /// The operation itself, handed back: the caller records what was written from it
    /// instead of keeping its own copy of every operation (a million users, twice).
    pub op: Op,
}

impl OpOutcome {
    pub fn external_id(&self) -> &str {
        self.op.external_id()
    }

    pub fn kind(&self) -> OpKind {
        self.op.kind()
    }
}

/// A successful write: the platform id of the user it touched (new for a create, or the
/// id of the user adopted after a 409), and what the report should know about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub platform_id: String,
    pub manager: ManagerLink,
    /// A create found the user already on the platform (HTTP 409) and made it ours.
    pub adopted: bool,
    /// The account had been deleted on the platform (404): how the write healed it.
    pub healed: Option<Healed>,
}

/// An update or deactivation answered 404: the account was deleted on the platform (by
/// hand). Instead of failing on every run, the write heals it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Healed {
    /// An active person: created again (`Applied::platform_id` is the new account).
    Recreated,
    /// A leaver: nothing left to deactivate; the state forgets them.
    Forgotten,
}

/// What became of the user's manager reference in a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManagerLink {
    /// No manager to set: the user has none, or the write does not carry content
    /// (a deactivation, a deletion).
    Absent,
    /// Set to the manager's platform id.
    Linked,
    /// Left unset: the manager was not on the platform when this user was written.
    /// `sync` records the user without the manager and links it in a second pass.
    LeftUnset,
}

/// One user's failure; the others go on, and this user's state stays as before so the
/// next run tries again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpFailure {
    pub status: Option<u16>,
    /// The server's `detail` (and `scimType`), or the transport error.
    pub message: String,
}

/// A failure that stops the whole push (the remaining operations are not sent).
#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    #[error(
        "the platform refused our credentials (HTTP {status}) at {url}: {detail}; check the token in {env} (or the OAuth2 client) and its permissions"
    )]
    Unauthorized { status: u16, url: String, detail: String, env: String },
    #[error("cannot reach the platform at {url}: {detail}")]
    Unreachable { url: String, detail: String },
    #[error(
        "the platform kept failing after retries ({detail}); {done} operation(s) were applied and recorded, the rest will be sent by the next run"
    )]
    RetriesExhausted { detail: String, done: u64 },
    #[error("{0}")]
    Config(String),
    #[error("the platform answered something we cannot read at {url}: {detail}")]
    Protocol { url: String, detail: String },
}

impl Classify for PlatformError {
    fn exit(&self) -> Exit {
        match self {
            PlatformError::Config(_) => Exit::Config,
            _ => Exit::Platform,
        }
    }
    fn retriable(&self) -> bool {
        matches!(self, PlatformError::Unreachable { .. } | PlatformError::RetriesExhausted { .. })
    }
}

/// A platform user API.
#[allow(async_fn_in_trait)]
pub trait Platform {
    /// Every user on the platform (id, externalId, userName): used on a connector's first
    /// sync to adopt existing users instead of duplicating them.
    /// Its retries take from the run's `budget`.
    async fn existing_users(&self, budget: &Budget) -> Result<Vec<Existing>, PlatformError>;

    /// Applies `ops`, sending each outcome on `outcomes` as soon as it is known. Returns
    /// Err only for a failure that stops everything (auth, platform down past the retry
    /// budget); per-user failures are outcomes.
    ///
    /// `known` maps the external id of every user already on the platform (the snapshot)
    /// to its platform id: it resolves `User::manager` to the manager's platform id.
    /// Every retry takes from `budget`, the run's one budget (`crate::retry`), which the
    /// caller sizes to the work.
    async fn apply(
        &self,
        ops: Vec<Op>,
        known: std::collections::HashMap<String, String>,
        budget: &Budget,
        outcomes: tokio::sync::mpsc::Sender<OpOutcome>,
    ) -> Result<(), PlatformError>;
}
