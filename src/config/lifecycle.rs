//! The `[connectors.NAME.sync]` keys of the employee lifecycle (`plan::lifecycle`), checked
//! apart from the other sync keys: what `check_sync` hands over, and what it gets back.

use super::checker::Checker;
use super::units::HumanDuration;
use super::word::Parsed;
use crate::plan::settings::{Lifecycle, OnSafeguard, OutOfScope};

/// The lifecycle's raw keys, as `RawSync` read them.
pub(super) struct Keys {
    pub create_inactive: Option<bool>,
    pub protected: Vec<String>,
    pub on_safeguard: Option<Parsed<OnSafeguard>>,
    pub out_of_scope: Option<Parsed<OutOfScope>>,
    pub deactivate_after: Option<Parsed<HumanDuration>>,
    pub create_lead: Option<Parsed<HumanDuration>>,
}

pub(super) fn check(ck: &mut Checker, key: &str, k: Keys) -> Lifecycle {
    let mut protected = Vec::with_capacity(k.protected.len());
    for p in k.protected {
        if p.trim().is_empty() {
            ck.problem(&format!("{key}.sync.protected"), "has an empty entry; list userNames or platform ids, e.g. [\"root@acme.com\"]");
        } else if !protected.contains(&p) {
            protected.push(p);
        }
    }
    let on_safeguard = ck.value(&format!("{key}.sync.on_safeguard"), k.on_safeguard).unwrap_or_default();
    let out_of_scope = ck.value(&format!("{key}.sync.out_of_scope"), k.out_of_scope).unwrap_or_default();
    let deactivate_after = ck.value(&format!("{key}.sync.deactivate_after"), k.deactivate_after).map(|d| d.0).filter(|d| !d.is_zero());
    let lead = ck.value(&format!("{key}.sync.create_lead"), k.create_lead).map_or(0, |d| d.0.as_secs());
    if !lead.is_multiple_of(86_400) {
        ck.problem(&format!("{key}.sync.create_lead"), "counts whole days before the start date, e.g. \"14d\"");
    }
    let create_lead_days = i64::try_from(lead / 86_400).unwrap_or(i64::MAX);
    Lifecycle {
        create_inactive: k.create_inactive.unwrap_or(false),
        protected,
        on_safeguard,
        out_of_scope,
        deactivate_after,
        create_lead_days,
    }
}
