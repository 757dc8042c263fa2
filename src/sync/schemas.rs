//! The run's note on the mapped attributes the platform's `/Schemas` does not define: they
//! are not sent (a server refuses, or silently drops, an attribute its schema lacks), and the
//! run says so once, naming them, as it does for a schema the platform does not offer.

use super::{Ctx, Tally};
use crate::platform::scim::ScimClient;
use crate::state::StateStore;

impl<S: StateStore> Ctx<'_, S> {
    /// Said once per run (a log line and a report note), when there is anything to say.
    pub(super) fn note_undefined_attributes(&self, t: &mut Tally, p: &ScimClient) {
        let m = &self.conn.mapping;
        let employee_id = m.fields.contains_key(&crate::mapping::rules::PlatformField::EmployeeId).then_some("employee_id");
        let names = employee_id.into_iter().chain(m.attributes.keys().map(String::as_str));
        let dropped = p.undefined_attributes(names);
        if dropped.is_empty() {
            return;
        }
        let text = format!(
            "the platform's /Schemas does not define the attributes these mapped ones go to, so they are not sent: {}; add them to the platform's schema, or drop them from the mapping (docs/scim-mapping.md lists where each goes)",
            dropped.join(", ")
        );
        tracing::warn!("{text}");
        t.report.notes.push(text);
    }
}
