//! Before the file is read: the mapped attributes the platform will not take, so that a value
//! of one that does not read invalidates no row (`Mapper::leaving_out`). A platform without
//! the custom schema drops the custom attributes, one without the enterprise extension the
//! enterprise ones (`crate::platform::scim::encode`); the run says so once, naming them
//! (`planning`'s notes). Rows are mapped as the file downloads, so this is asked of the
//! platform first (its discovery, cached per target in the daemon), and only when it can
//! matter: a mapped attribute with a `date` format, the one rule that refuses a row for a
//! value that is there.

use std::collections::BTreeSet;

use super::Ctx;
use crate::mapping::rules::Mapping;
use crate::model::MANAGER_ATTRIBUTE;
use crate::platform::scim::{ScimClient, is_custom, is_enterprise};
use crate::state::StateStore;

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
            Ok(p) => unsent(mapping, p.capabilities().custom_schema, p.enterprise_offered()),
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
