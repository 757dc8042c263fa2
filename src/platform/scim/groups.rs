//! SCIM Groups (RFC 7643 §4.2): what the groups step (`crate::sync`, `[groups]`) reads and
//! writes — a group's members, a group found by displayName, a group created, members added
//! and removed by PATCH. Every request goes through `Inner::call`: the same credentials,
//! timeouts and retries as the users', from the run's one retry budget.
//!
//! A member change is one PATCH of at most a chunk of members (the caller chunks): one `add`
//! of `members` with their values, and one `remove` per member by the filter
//! `members[value eq "ID"]` — the form RFC 7644 §3.5.2.2 defines for removing some members.
//! Some servers (django-scim2, Entra ID's own requests) know only a `remove` of `members`
//! with a value list instead, which to a strict RFC server means "remove every member": so
//! that form is sent only to a server that refused the filter (501, or 400 `invalidPath` /
//! `invalidFilter` / `noTarget`), and remembered for the rest of the run. Both forms are
//! idempotent (adding a member twice, removing one that left), so a PATCH whose answer was
//! lost is sent again.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;

use reqwest::Method;
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::ScimError;
use super::listing::ListResponse;
use super::{CallError, ScimClient, Shared};
use crate::platform::{OpFailure, PlatformError};
use crate::retry::Budget;

const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const PATCH_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// A Group resource as far as we read it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct GroupResource {
    id: Option<String>,
    #[serde(default)]
    external_id: Option<String>,
    #[serde(default)]
    members: Option<Vec<MemberRef>>,
}

#[derive(Debug, Deserialize)]
struct MemberRef {
    value: Option<String>,
}

/// A group on the platform with a given displayName.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundGroup {
    pub platform_id: String,
    pub external_id: Option<String>,
}

/// A group write's result: Ok, or this write failed (the others go on); Err stops the step
/// (credentials refused, the retry budget spent).
pub type GroupWrite<T, F = OpFailure> = Result<Result<T, F>, PlatformError>;

impl ScimClient {
    /// The members (platform ids) of a group; None when the group is gone (404).
    pub async fn group_members(&self, budget: &Budget, platform_id: &str) -> Result<Option<BTreeSet<String>>, PlatformError> {
        let inner = &self.inner;
        let mut url = inner.url(&["Groups", platform_id]);
        url.query_pairs_mut().append_pair("attributes", "members");
        let r = inner.call(&Shared::new(budget), Method::GET, url.clone(), None, true).await.map_err(|e| read_failed(&url, e))?;
        match r.status {
            404 => Ok(None),
            200 => {
                let g: GroupResource =
                    r.json().map_err(|e| PlatformError::Protocol { url: url.to_string(), detail: format!("not a SCIM Group: {e}") })?;
                Ok(Some(g.members.unwrap_or_default().into_iter().filter_map(|m| m.value).collect()))
            }
            _ => Err(PlatformError::Protocol { url: url.to_string(), detail: r.error_message() }),
        }
    }

    /// The groups named `display_name` (a filter on displayName).
    pub async fn find_groups(&self, budget: &Budget, display_name: &str) -> Result<Vec<FoundGroup>, PlatformError> {
        let inner = &self.inner;
        let mut url = inner.url(&["Groups"]);
        url.query_pairs_mut()
            .append_pair("filter", &format!("displayName eq {}", filter_literal(display_name)))
            .append_pair("attributes", "id,externalId");
        let r = inner.call(&Shared::new(budget), Method::GET, url.clone(), None, true).await.map_err(|e| read_failed(&url, e))?;
        if r.status == 404 || r.status == 501 {
            let detail = format!(
                "{}: the platform does not serve SCIM groups here; remove [groups] from the connector's mapping, or check [platform] base_url",
                r.error_message()
            );
            return Err(PlatformError::Protocol { url: url.to_string(), detail });
        }
        if r.status != 200 {
            return Err(PlatformError::Protocol { url: url.to_string(), detail: r.error_message() });
        }
        let found: ListResponse<GroupResource> =
            r.json().map_err(|e| PlatformError::Protocol { url: url.to_string(), detail: format!("not a SCIM ListResponse: {e}") })?;
        Ok(found
            .resources
            .unwrap_or_default()
            .into_iter()
            .filter_map(|g| Some(FoundGroup { platform_id: g.id?, external_id: g.external_id }))
            .collect())
    }

    /// Creates an empty group; its id. `external_id` marks it as this connector's, so a group
    /// whose create answer was lost is known as ours when found by name later.
    pub async fn create_group(&self, budget: &Budget, display_name: &str, external_id: &str) -> GroupWrite<String> {
        let inner = &self.inner;
        let url = inner.url(&["Groups"]);
        let body = json!({"schemas": [GROUP_SCHEMA], "displayName": display_name, "externalId": external_id, "members": []});
        // A create is not sent again blindly: a lost answer may have made the group.
        let r = match inner.call(&Shared::new(budget), Method::POST, url.clone(), Some(&body), false).await {
            Ok(r) => r,
            Err(CallError::Stop(e)) => return Err(e),
            Err(CallError::Failed { status, message, .. }) => return Ok(Err(OpFailure { status, message })),
        };
        if !r.success() {
            return Ok(Err(OpFailure { status: Some(r.status), message: format!("POST {url}: {}", r.error_message()) }));
        }
        match r.json::<GroupResource>().ok().and_then(|g| g.id) {
            Some(id) => Ok(Ok(id)),
            None => Err(PlatformError::Protocol { url: url.to_string(), detail: "the created group has no id".into() }),
        }
    }

    /// Adds and removes members (platform ids) of a group in one PATCH. A 404 is a failure
    /// with status 404: the group was deleted meanwhile.
    pub async fn patch_members(&self, budget: &Budget, group_id: &str, add: &[&str], remove: &[&str]) -> GroupWrite<()> {
        if add.is_empty() && remove.is_empty() {
            return Ok(Ok(()));
        }
        let by_value = self.groups_remove_by_value.load(Ordering::Acquire);
        let r = self.send_members(budget, group_id, &members_patch(add, remove, by_value)).await?;
        let r = match r {
            Err(refused) if !remove.is_empty() && !by_value && filter_refused(&refused) => {
                tracing::info!("the platform refuses member removal by filter; removing by value list from now on");
                self.groups_remove_by_value.store(true, Ordering::Release);
                self.send_members(budget, group_id, &members_patch(add, remove, true)).await?
            }
            other => other,
        };
        Ok(r.map(drop).map_err(|(f, _)| f))
    }

    /// One PATCH of a group's members; a refusal keeps the server's scimType.
    async fn send_members(&self, budget: &Budget, group_id: &str, body: &Value) -> GroupWrite<(), (OpFailure, Option<String>)> {
        let inner = &self.inner;
        let url = inner.url(&["Groups", group_id]);
        let r = match inner.call(&Shared::new(budget), Method::PATCH, url.clone(), Some(body), true).await {
            Ok(r) => r,
            Err(CallError::Stop(e)) => return Err(e),
            Err(CallError::Failed { status, message, .. }) => return Ok(Err((OpFailure { status, message }, None))),
        };
        if !r.success() {
            let scim_type = ScimError::read(&r.body).scim_type().map(str::to_string);
            return Ok(Err((OpFailure { status: Some(r.status), message: format!("PATCH {url}: {}", r.error_message()) }, scim_type)));
        }
        Ok(Ok(()))
    }
}

/// Whether a refused PATCH says the server does not take a filter in a `remove` path.
fn filter_refused((f, scim_type): &(OpFailure, Option<String>)) -> bool {
    match f.status {
        Some(501) => true,
        Some(400) => matches!(scim_type.as_deref(), Some("invalidPath" | "invalidFilter" | "noTarget")),
        _ => false,
    }
}

/// The PatchOp of one chunk: removals first, each by its own filter (or, `by_value`, one
/// `remove` with the value list), then one add.
fn members_patch(add: &[&str], remove: &[&str], by_value: bool) -> Value {
    let values = |ids: &[&str]| -> Vec<Value> { ids.iter().map(|id| json!({"value": id})).collect() };
    let mut ops: Vec<Value> = if by_value && !remove.is_empty() {
        vec![json!({"op": "remove", "path": "members", "value": values(remove)})]
    } else {
        remove.iter().map(|id| json!({"op": "remove", "path": format!("members[value eq {}]", filter_literal(id))})).collect()
    };
    if !add.is_empty() {
        ops.push(json!({"op": "add", "path": "members", "value": values(add)}));
    }
    json!({"schemas": [PATCH_SCHEMA], "Operations": ops})
}

/// A string as a SCIM filter literal.
fn filter_literal(v: &str) -> String {
    format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))
}

fn read_failed(url: &url::Url, e: CallError) -> PlatformError {
    match e {
        CallError::Stop(e) => e,
        CallError::Failed { message, .. } => PlatformError::Unreachable { url: url.to_string(), detail: message },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunk_removes_each_member_by_filter_then_adds_the_rest_at_once() {
        let body = members_patch(&["a", "b"], &["x\"y"], false);
        assert_eq!(
            body,
            json!({"schemas": [PATCH_SCHEMA], "Operations": [
                {"op": "remove", "path": "members[value eq \"x\\\"y\"]"},
                {"op": "add", "path": "members", "value": [{"value": "a"}, {"value": "b"}]},
            ]})
        );
        let body = members_patch(&[], &["p1", "p2"], true);
        assert_eq!(
            body["Operations"],
            json!([{"op": "remove", "path": "members", "value": [{"value": "p1"}, {"value": "p2"}]}]),
            "only for a server that refused the filter"
        );
    }
}
