//! What the plan is configured with: the `[connectors.NAME.sync]` rules (who is deactivated
//! or deleted, the safeguards' thresholds, adoption and re-hire). The plan owns these types;
//! `config` reads them from connectors.toml and checks them.

use std::str::FromStr;

use serde::Deserialize;

/// A threshold given as a count of people or a percent of a base number.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Limit {
    Count(u64),
    Percent(f64),
}

impl Limit {
    pub fn parse(s: &str) -> Result<Limit, String> {
        let t = s.trim();
        if let Some(p) = t.strip_suffix('%') {
            let v: f64 =
                p.trim().parse().map_err(|_| format!("expected a count such as \"50\" or a percent such as \"10%\"; got \"{s}\""))?;
            if !(0.0..=100.0).contains(&v) {
                return Err(format!("a percent must be between 0% and 100%; got \"{s}\""));
            }
            Ok(Limit::Percent(v))
        } else {
            t.parse::<u64>()
                .map(Limit::Count)
                .map_err(|_| format!("expected a count such as \"50\" or a percent such as \"10%\"; got \"{s}\""))
        }
    }

    /// The largest number allowed, given the base the percent applies to. A percent rounds
    /// down but never below one: "5%" of a 5-row file is one row, not none — a percent
    /// that forbade a single invalid row or leaver of a small customer would stop it on
    /// every ordinary day. "0%" (or a count of 0) forbids all.
    pub fn allowed(self, base: u64) -> u64 {
        match self {
            Limit::Count(n) => n,
            Limit::Percent(p) if p > 0.0 && base > 0 => (((base as f64) * p / 100.0).floor() as u64).max(1),
            Limit::Percent(_) => 0,
        }
    }
}

impl FromStr for Limit {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Limit::parse(s)
    }
}

impl std::fmt::Display for Limit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Limit::Count(n) => write!(f, "{n}"),
            Limit::Percent(p) => write!(f, "{p}%"),
        }
    }
}

/// `sync.on_missing`: what happens to a person absent from the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnMissing {
    #[default]
    Deactivate,
    Delete,
    Ignore,
}

/// `sync.rehire`: what a new id whose email is the account of a person absent from (or
/// inactive in) the file does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Rehire {
    /// The account moves to the new id and stays active (`rekeyed`).
    #[default]
    Rekey,
    /// Nothing is rewritten; the new id is reported as a conflict.
    Conflict,
}

#[derive(Debug, Clone)]
pub struct SyncRule {
    pub on_missing: OnMissing,
    pub max_deactivations: Limit,
    pub max_invalid: Limit,
    /// Connectors whose accounts this one may adopt (a migration from them); any other
    /// connector's account is a conflict.
    pub adopt_from: Vec<String>,
    pub rehire: Rehire,
    /// The limits on every other kind of change (`plan::budget`).
    pub budget: super::budget::ChangeBudget,
    /// The employee lifecycle (`plan::lifecycle`): who gets an account, who is left alone.
    pub lifecycle: Lifecycle,
    /// The longest one run may take (`[sync] max_run_time`).
    pub max_run_time: std::time::Duration,
    /// What one file may make a run hold, in bytes (`[sync] max_memory`; the format stage
    /// applies it as `format::Limits::max_memory`).
    pub max_memory: u64,
}

/// A run's deadline when `max_run_time` is not set: a fixed bound rather than one derived
/// from the file and the platform's rate, which a first sync (no rate measured yet) or a
/// slowing platform would get wrong. Two hours is ~70 times the 1M first sync of
/// BENCHMARKS.md, and short enough that a hung platform costs a daily schedule one slot.
pub const DEFAULT_MAX_RUN_TIME: std::time::Duration = std::time::Duration::from_secs(2 * 3600);

impl Default for SyncRule {
    fn default() -> Self {
        SyncRule {
            on_missing: OnMissing::Deactivate,
            max_deactivations: Limit::Percent(10.0),
            max_invalid: Limit::Percent(5.0),
            adopt_from: Vec::new(),
            rehire: Rehire::Rekey,
            budget: super::budget::ChangeBudget::default(),
            lifecycle: Lifecycle::default(),
            max_run_time: DEFAULT_MAX_RUN_TIME,
            max_memory: crate::format::Limits::DEFAULT_MAX_MEMORY,
        }
    }
}

// The employee lifecycle's rules (`plan::lifecycle`): a block of its own.

/// The `[sync]` keys of the employee lifecycle (issue 27).
#[derive(Debug, Clone, Default)]
pub struct Lifecycle {
    /// `create_inactive`: a person inactive in the file who never had an account gets one
    /// (inactive). Off by default: a file that lists leavers of years past creates nobody.
    pub create_inactive: bool,
    /// `protected`: accounts rostersync never adopts, changes, deactivates or deletes, by
    /// userName (compared without case) or platform id.
    pub protected: Vec<String>,
    /// `on_safeguard`: what a `mass_deactivation` stop holds.
    pub on_safeguard: OnSafeguard,
    /// `out_of_scope`: what happens to a known person whose row is out of the mapping's
    /// `[scope]`.
    pub out_of_scope: OutOfScope,
    /// `deactivate_after`: how long a person absent from the file keeps their account (None:
    /// on_missing applies at once).
    pub deactivate_after: Option<std::time::Duration>,
    /// `create_lead`: how many days before their start date a future hire gets an
    /// (inactive) account; earlier they are pending, with no account.
    pub create_lead_days: i64,
}

/// `sync.out_of_scope`: a known person whose row moved out of the mapping's `[scope]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OutOfScope {
    /// Treated as gone from the file: `on_missing` applies (after any grace).
    #[default]
    Deactivate,
    /// The account stays as it is, no longer synced.
    Ignore,
}

/// `sync.on_safeguard`: what a run stopped by `mass_deactivation` holds for approval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnSafeguard {
    /// Nothing is sent until the plan is approved.
    #[default]
    HoldAll,
    /// Creates and updates are sent; the deactivations and deletions wait for approval.
    HoldDeactivations,
}
