//! Reading users: every user on the platform, page by page (a first sync adopts them), and
//! one user by filter (the lookups of a 409 and of a create whose outcome is unknown).

use reqwest::Method;
use serde::Deserialize;

use super::{CallError, Inner, Shared};
use crate::plan::Existing;
use crate::platform::PlatformError;

/// A ListResponse (RFC 7644 §3.4.2). `Resources` may be left out when there are none, and
/// a server that leaves out `totalResults` is read until a short page; an answer with
/// neither is no listing at all (an empty 200 must not read as "no users", which would
/// create everyone again).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ListResponse<T = UserResource> {
    #[serde(rename = "Resources")]
    pub resources: Option<Vec<T>>,
    #[serde(default)]
    pub total_results: Option<u64>,
    #[serde(default)]
    pub items_per_page: Option<u64>,
    #[serde(default)]
    pub start_index: Option<u64>,
}

/// A User resource as far as we read it; everything else is ignored. Only `id` is always
/// there (we ask for `attributes=id,…`, and a server may leave out what a user lacks).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct UserResource {
    pub id: Option<String>,
    #[serde(default)]
    pub external_id: Option<String>,
    #[serde(default)]
    pub user_name: Option<String>,
    #[serde(default, deserialize_with = "super::lenient::emails")]
    pub emails: Vec<String>,
    #[serde(default)]
    pub active: Option<bool>,
    #[serde(default)]
    pub meta: Option<Meta>,
}

#[derive(Debug, Deserialize)]
pub(super) struct Meta {
    /// The resource's own URL: its last segment is the id, for a server that answers a
    /// create without `id` or `Location`.
    #[serde(default)]
    pub location: Option<String>,
}

impl<T> ListResponse<T> {
    /// Neither `Resources` nor `totalResults`: not a listing.
    fn is_empty_answer(&self) -> bool {
        self.resources.is_none() && self.total_results.is_none()
    }
}

/// A platform account as a reconcile run reads it: who it is bound to, whether it is
/// active, and the whole resource (to see hand edits of what we map).
#[derive(Debug, Clone)]
pub struct Account {
    pub existing: Existing,
    pub active: Option<bool>,
    pub resource: serde_json::Value,
}

impl UserResource {
    /// The account as matching judges it (`plan::matching`), when it has an id.
    pub fn existing(self) -> Option<Existing> {
        let platform_id = self.platform_id()?;
        Some(Existing { platform_id, external_id: self.external_id, user_name: self.user_name, emails: self.emails, active: self.active })
    }

    /// The platform id: `id`, else the last segment of `meta.location`.
    pub fn platform_id(&self) -> Option<String> {
        self.id.clone().or_else(|| self.meta.as_ref()?.location.as_deref().and_then(id_from_location))
    }
}

/// The last path segment of a Location URL: the new resource's id.
pub(super) fn id_from_location(loc: &str) -> Option<String> {
    let path = loc.split(['?', '#']).next()?;
    path.trim_end_matches('/').rsplit('/').next().filter(|s| !s.is_empty()).map(str::to_string)
}

/// The attributes matching judges an account on (`plan::matching`).
const MATCHED: &str = "id,externalId,userName,emails,active";

/// A SCIM filter string literal.
fn filter_literal(v: &str) -> String {
    format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))
}

impl Inner {
    /// Every user on the platform (id, externalId, userName, emails), by pages of `page_size`.
    pub(super) async fn list_users(&self, sh: &Shared) -> Result<Vec<Existing>, PlatformError> {
        let all: Vec<UserResource> = self.list_pages(sh, Some(MATCHED)).await?;
        Ok(all.into_iter().filter(|u| u.id.is_some()).filter_map(UserResource::existing).collect())
    }

    /// Every user on the platform with every attribute the server returns (a reconcile).
    pub(super) async fn list_accounts(&self, sh: &Shared) -> Result<Vec<Account>, PlatformError> {
        let all: Vec<serde_json::Value> = self.list_pages(sh, None).await?;
        Ok(all
            .into_iter()
            .filter_map(|resource| {
                let text = |k: &str| resource.get(k).and_then(serde_json::Value::as_str).map(str::to_string);
                let emails = resource.get("emails").map(super::lenient::email_values).unwrap_or_default();
                let active = resource.get("active").and_then(serde_json::Value::as_bool);
                let existing =
                    Existing { platform_id: text("id")?, external_id: text("externalId"), user_name: text("userName"), emails, active };
                Some(Account { existing, active, resource })
            })
            .collect())
    }

    /// Every user resource, page by page, followed to `totalResults`.
    async fn list_pages<T: serde::de::DeserializeOwned>(&self, sh: &Shared, attributes: Option<&str>) -> Result<Vec<T>, PlatformError> {
        let mut all = Vec::new();
        let mut start = 1u64;
        loop {
            let mut url = self.url(&["Users"]);
            url.query_pairs_mut().append_pair("startIndex", &start.to_string()).append_pair("count", &self.caps.page_size.to_string());
            if let Some(a) = attributes {
                url.query_pairs_mut().append_pair("attributes", a);
            }
            let r = self.call(sh, Method::GET, url.clone(), None, true).await.map_err(|e| match e {
                CallError::Stop(e) => e,
                CallError::Failed { message, .. } => PlatformError::Unreachable { url: url.to_string(), detail: message },
            })?;
            if r.status != 200 {
                return Err(PlatformError::Protocol { url: url.to_string(), detail: r.error_message() });
            }
            let page: ListResponse<T> =
                r.json().map_err(|e| PlatformError::Protocol { url: url.to_string(), detail: format!("not a SCIM ListResponse: {e}") })?;
            if page.is_empty_answer() {
                return Err(PlatformError::Protocol {
                    url: url.to_string(),
                    detail: "HTTP 200 without `Resources` or `totalResults`: not a user listing (a proxy or a broken server?); nothing was pushed, as every user would have been created again".into(),
                });
            }
            // A server that ignores startIndex would hand back the first page forever.
            if page.start_index.is_some_and(|s| s != start) {
                return Err(PlatformError::Protocol {
                    url: url.to_string(),
                    detail: format!("asked for the page at startIndex {start}, got startIndex {}", page.start_index.unwrap_or(0)),
                });
            }
            let resources = page.resources.unwrap_or_default();
            let n = resources.len() as u64;
            tracing::debug!(start, n, per_page = ?page.items_per_page, total = page.total_results, "listed a page of users");
            all.extend(resources);
            let last = match page.total_results {
                Some(total) => start - 1 + n >= total,
                None => n < self.caps.page_size as u64,
            };
            if n == 0 || last {
                return Ok(all);
            }
            start += n;
        }
    }

    /// The platform id of the user whose `attr` equals `value`, if any.
    pub(super) async fn find(&self, sh: &Shared, attr: &str, value: &str) -> Result<Option<String>, CallError> {
        self.find_with(sh, attr, value, "id").await.map(|u| u.and_then(|u| u.platform_id()))
    }

    /// The users whose `attr` equals `value` by the server's filter, with what matching
    /// judges them on (whether a 409's account may be adopted is decided on that, here,
    /// not on the filter: a server may compare with case, or ignore a filter it lacks).
    pub(super) async fn find_accounts(&self, sh: &Shared, attr: &str, value: &str) -> Result<Vec<Existing>, CallError> {
        let found = self.find_all(sh, attr, value, MATCHED).await?;
        Ok(found.into_iter().filter_map(UserResource::existing).collect())
    }

    async fn find_with(&self, sh: &Shared, attr: &str, value: &str, attributes: &str) -> Result<Option<UserResource>, CallError> {
        Ok(self.find_all(sh, attr, value, attributes).await?.into_iter().find(|u| u.platform_id().is_some()))
    }

    async fn find_all(&self, sh: &Shared, attr: &str, value: &str, attributes: &str) -> Result<Vec<UserResource>, CallError> {
        let mut url = self.url(&["Users"]);
        url.query_pairs_mut().append_pair("filter", &format!("{attr} eq {}", filter_literal(value))).append_pair("attributes", attributes);
        let r = self.call(sh, Method::GET, url.clone(), None, true).await?;
        let refused = |message: String| CallError::Failed { status: Some(r.status), message, maybe_applied: false };
        if r.status != 200 {
            return Err(refused(format!("GET {url}: {}", r.error_message())));
        }
        let found: ListResponse = r.json().map_err(|e| refused(format!("GET {url}: not a SCIM ListResponse: {e}")))?;
        Ok(found.resources.unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn location_ids_and_filters() {
        assert_eq!(id_from_location("http://h/v2/Users/abc").as_deref(), Some("abc"));
        assert_eq!(id_from_location("http://h/v2/Users/abc/").as_deref(), Some("abc"));
        assert_eq!(id_from_location("http://h/v2/Users/abc?x=1").as_deref(), Some("abc"));
        assert_eq!(filter_literal(r#"a"b\c"#), r#""a\"b\\c""#);
    }

    #[test]
    fn list_responses_sparse_and_full() {
        let full: ListResponse = serde_json::from_str(
            r#"{"schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"], "totalResults": 3, "itemsPerPage": 2, "startIndex": 1,
                "Resources": [{"id": "a", "externalId": "E1", "userName": "ann@example.com", "active": true, "meta": {"resourceType": "User"}},
                              {"id": "b"}]}"#,
        )
        .unwrap();
        assert_eq!((full.total_results, full.items_per_page, full.start_index), (Some(3), Some(2), Some(1)));
        let res = full.resources.as_deref().unwrap();
        assert_eq!(res[0].external_id.as_deref(), Some("E1"));
        assert_eq!(res[1].user_name, None);
        // No users: some servers leave out `Resources` altogether.
        let empty: ListResponse = serde_json::from_str(r#"{"totalResults": 0}"#).unwrap();
        assert!(empty.resources.is_none() && !empty.is_empty_answer());
        // An empty 200 is no listing at all.
        assert!(serde_json::from_str::<ListResponse>("{}").unwrap().is_empty_answer());
        assert_eq!(serde_json::from_str::<ListResponse>(r#"{"Resources": [{"id": "a"}]}"#).unwrap().total_results, None);
        assert!(serde_json::from_str::<ListResponse>(r#"{"Resources": {"id": "a"}}"#).is_err(), "not a list: unreadable");
        let by_meta: UserResource = serde_json::from_str(r#"{"meta": {"location": "https://p/scim/v2/Users/xyz"}}"#).unwrap();
        assert_eq!(by_meta.platform_id().as_deref(), Some("xyz"));
    }
}
