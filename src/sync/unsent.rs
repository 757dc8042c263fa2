//! Before the rows are mapped: the mapped attributes the platform will not take, so that a
//! value of one that does not read invalidates no row (`Mapper::leaving_out`). A platform
//! without the custom schema drops the custom attributes, one without the enterprise
//! extension the enterprise ones (`crate::platform::scim::encode`); the run says so once,
//! naming them (`planning`'s notes). The platform is asked (its discovery, cached per target
//! in the daemon) once the download begins, beside the snapshot's load, so a run that finds
//! no new file asks nothing; the rows, mapped as the file arrives, wait for the answer
//! (`Unsent`). Asked only when it can matter: a mapped attribute with a `date` format, the
//! one rule that refuses a row for a value that is there.

use std::collections::BTreeSet;
use std::sync::{Arc, Condvar, Mutex};

use super::Ctx;
use crate::mapping::rules::Mapping;
use crate::model::MANAGER_ATTRIBUTE;
use crate::platform::scim::{ScimClient, is_custom, is_enterprise};
use crate::state::StateStore;

/// The answer to "which attributes will the platform not take", shared between the task that
/// asks the platform and the threads that map the rows (which wait for it).
#[derive(Debug, Clone, Default)]
pub(super) struct Unsent(Arc<(Mutex<Option<Answer>>, Condvar)>);

/// The attributes left out, once known.
type Answer = Arc<BTreeSet<String>>;

impl Unsent {
    /// An answer known already.
    pub(super) fn known(set: BTreeSet<String>) -> Unsent {
        let u = Unsent::default();
        u.answer(set);
        u
    }

    /// Gives the answer (the first one given stands) and wakes the waiting mappers.
    fn answer(&self, set: BTreeSet<String>) {
        let (lock, ready) = &*self.0;
        let mut slot = lock.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if slot.is_none() {
            *slot = Some(Arc::new(set));
        }
        ready.notify_all();
    }

    /// The answer, blocking until it is given (call it off the async threads: a mapping
    /// thread). Always given: `Asking` answers "none" if dropped before it knew.
    pub(super) fn wait(&self) -> Answer {
        let (lock, ready) = &*self.0;
        let mut slot = lock.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        loop {
            if let Some(set) = &*slot {
                return Arc::clone(set);
            }
            slot = ready.wait(slot).unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }
}

/// The asking side of an `Unsent`: answers "none left out" when dropped unanswered (the run
/// stopped, or ended, before the platform said), so no mapping thread waits forever.
pub(super) struct Asking(pub(super) Unsent);

impl Asking {
    pub(super) fn answer(self, set: BTreeSet<String>) {
        self.0.answer(set);
    }
}

impl Drop for Asking {
    fn drop(&mut self) {
        self.0.answer(BTreeSet::new());
    }
}

/// The attributes of `mapping` a platform offering (or not) the custom schema and the
/// enterprise extension does not take. The manager link is never among them: it is a
/// reference the run resolves itself, whatever the extension.
pub(super) fn unsent(mapping: &Mapping, custom_offered: bool, enterprise_offered: bool) -> BTreeSet<String> {
    mapping
        .attributes
        .keys()
        .filter(|a| a.as_str() != MANAGER_ATTRIBUTE)
        .filter(|a| (!custom_offered && is_custom(a)) || (!enterprise_offered && is_enterprise(a)))
        .cloned()
        .collect()
}

/// Whether an attribute of `mapping` may refuse a row for a value that is there: one with a
/// `date` format that may go unsent.
fn dated(mapping: &Mapping) -> bool {
    mapping.attributes.iter().any(|(a, r)| a.as_str() != MANAGER_ATTRIBUTE && r.date.is_some())
}

impl<S: StateStore> Ctx<'_, S> {
    /// The attributes this run's platform will not take; none when no dated attribute is
    /// mapped (nothing is asked then), or when the platform cannot be asked now (every value
    /// is then checked as if sent, as the run connects again later and says why it cannot).
    pub(super) async fn unsent_attributes(&self) -> BTreeSet<String> {
        let mapping = &self.conn.mapping;
        if !dated(mapping) {
            return BTreeSet::new();
        }
        let Ok(target) = self.cfg.target(self.conn) else { return BTreeSet::new() };
        let own = crate::platform::targets::Targets::default();
        match ScimClient::connect_to(&target, self.opts.targets.as_deref().unwrap_or(&own)).await {
            Ok(p) => {
                let mut out = unsent(mapping, p.capabilities().custom_schema, p.enterprise_offered());
                // Nor what its /Schemas leaves out of a schema it does offer (`schemas.rs` says so).
                let defined_nowhere =
                    p.undefined_attributes(mapping.attributes.keys().map(String::as_str).filter(|a| *a != MANAGER_ATTRIBUTE));
                out.extend(defined_nowhere.into_iter().map(str::to_string));
                out
            }
            Err(e) => {
                tracing::debug!("cannot ask the platform which attributes it takes ({e}); every mapped value is checked");
                BTreeSet::new()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping() -> Mapping {
        let src = "unique_id = \"employee_id\"\n[fields]\nemployee_id = \"Id\"\nfirst_name = \"F\"\nlast_name = \"L\"\n\
                   [attributes]\nhire_date = { column = \"Hired\", date = \"%Y-%m-%d\" }\ndepartment = \"D\"\ntitle = \"T\"\nmanager_id = \"M\"\n";
        crate::config::parse_mapping(src, std::path::Path::new("m.toml")).unwrap()
    }

    #[test]
    fn a_mapping_thread_waits_for_the_answer_and_a_dropped_question_answers_none() {
        let u = Unsent::default();
        let asking = Asking(u.clone());
        let waiter = {
            let u = u.clone();
            std::thread::spawn(move || u.wait())
        };
        std::thread::sleep(std::time::Duration::from_millis(50));
        asking.answer(["hire_date".to_string()].into());
        assert_eq!(waiter.join().unwrap().iter().collect::<Vec<_>>(), ["hire_date"]);
        let dropped = Unsent::default();
        drop(Asking(dropped.clone()));
        assert!(dropped.wait().is_empty());
    }

    #[test]
    fn what_is_not_sent_follows_what_the_platform_offers() {
        let m = mapping();
        assert!(dated(&m));
        let names = |s: BTreeSet<String>| s.into_iter().collect::<Vec<_>>();
        assert!(unsent(&m, true, true).is_empty());
        assert_eq!(names(unsent(&m, false, true)), ["hire_date"]);
        // The manager link is the run's own, and `title` is core: always sent.
        assert_eq!(names(unsent(&m, true, false)), ["department"]);
        assert_eq!(names(unsent(&m, false, false)), ["department", "hire_date"]);
    }
}
