//! What the server offers (/ServiceProviderConfig, /ResourceTypes/User), read once at
//! connect, and the credentials checked there before anything is planned or written.

use reqwest::Method;
use serde::Deserialize;

use super::listing::ListResponse;
use super::{CallError, Inner, Shared};
use crate::platform::PlatformError;

/// What the server says it supports (/ServiceProviderConfig).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capabilities {
    pub patch: bool,
    /// None when the server has no /Bulk, or `bulk = off` in the config.
    pub bulk: Option<BulkLimits>,
    /// Page size for listing users (the server's filter maxResults, at most 1000).
    pub page_size: usize,
    /// Whether /ResourceTypes/User lists the configured custom schema.
    pub custom_schema: bool,
    /// Whether /ResourceTypes/User lists the enterprise extension (true when the server
    /// does not answer it: every extension is assumed offered, as before).
    pub enterprise: bool,
    /// Whether the server announces ETags (`etag.supported`): a read-merge-write then sends
    /// `If-Match` with the `meta.version` it read (an `ETag` header is used either way).
    pub etag: bool,
    /// The attributes each schema of `/Schemas` defines (schema URN → attribute names,
    /// lowercased: SCIM names compare without case); None when the server serves no
    /// readable `/Schemas`. A mapped attribute its schema lacks is not sent (`Encoder`).
    pub schemas: Option<std::sync::Arc<Defined>>,
}

/// Schema URN → the names of its top-level attributes, lowercased.
pub type Defined = std::collections::BTreeMap<String, std::collections::BTreeSet<String>>;

impl Default for Capabilities {
    /// A server without /ServiceProviderConfig: PATCH (RFC 7644 requires it) and no Bulk.
    fn default() -> Self {
        Capabilities { patch: true, bulk: None, page_size: 100, custom_schema: true, enterprise: true, etag: false, schemas: None }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BulkLimits {
    pub max_operations: usize,
    pub max_payload_size: usize,
}

/// /ServiceProviderConfig (RFC 7643 §5), the parts we use. A feature the server leaves out
/// is a feature it does not offer.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ServiceProviderConfig {
    #[serde(default)]
    patch: Supported,
    #[serde(default)]
    bulk: BulkConfig,
    #[serde(default)]
    filter: FilterConfig,
    #[serde(default)]
    etag: Supported,
}

#[derive(Debug, Default, Deserialize)]
struct Supported {
    #[serde(default)]
    supported: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct BulkConfig {
    #[serde(default)]
    supported: bool,
    #[serde(default)]
    max_operations: u64,
    #[serde(default)]
    max_payload_size: u64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct FilterConfig {
    #[serde(default)]
    supported: bool,
    #[serde(default)]
    max_results: u64,
}

/// /ResourceTypes/User (RFC 7643 §6): which extension schemas the server's users take.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ResourceType {
    #[serde(default)]
    schema_extensions: Vec<SchemaExtension>,
}

#[derive(Debug, Deserialize)]
struct SchemaExtension {
    schema: String,
}

/// A schema of `/Schemas` (RFC 7643 §7), the part we read: its URN and attribute names.
#[derive(Debug, Deserialize)]
struct SchemaResource {
    id: String,
    #[serde(default)]
    attributes: Vec<SchemaAttribute>,
}

#[derive(Debug, Deserialize)]
struct SchemaAttribute {
    name: String,
}

/// What a `/Schemas` answer defines; None when it lists no schema with attributes (an empty
/// or partial answer defines nothing, rather than every attribute being undefined).
fn defined(schemas: Vec<SchemaResource>) -> Option<Defined> {
    let d: Defined = schemas
        .into_iter()
        .filter(|s| !s.attributes.is_empty())
        .map(|s| (s.id, s.attributes.into_iter().map(|a| a.name.to_lowercase()).collect()))
        .collect();
    (!d.is_empty()).then_some(d)
}

impl ServiceProviderConfig {
    /// The capabilities it announces. A bulk limit too small to batch anything (one
    /// operation, a payload under 1 KiB) is no bulk at all.
    fn capabilities(&self, bulk_allowed: bool) -> Capabilities {
        let b = &self.bulk;
        let (ops, size) =
            (usize::try_from(b.max_operations).unwrap_or(usize::MAX), usize::try_from(b.max_payload_size).unwrap_or(usize::MAX));
        let bulk = (bulk_allowed && b.supported && ops > 1 && size > 1024)
            .then(|| BulkLimits { max_operations: ops.min(1000), max_payload_size: size });
        let page_size = match self.filter.max_results {
            0 => 100,
            m => usize::try_from(m).unwrap_or(usize::MAX).min(1000),
        };
        Capabilities {
            patch: self.patch.supported,
            bulk,
            page_size,
            custom_schema: true,
            enterprise: true,
            etag: self.etag.supported,
            schemas: None,
        }
    }
}

impl Inner {
    pub(super) async fn discover(&self, sh: &Shared, bulk_allowed: bool) -> Result<Capabilities, PlatformError> {
        let unreachable = |url: &url::Url, e: CallError| match e {
            CallError::Stop(e) => e,
            CallError::Failed { message, .. } => PlatformError::Unreachable { url: url.to_string(), detail: message },
        };
        let spc_url = self.url(&["ServiceProviderConfig"]);
        let spc = self.call(sh, Method::GET, spc_url.clone(), None, true).await.map_err(|e| unreachable(&spc_url, e))?;
        let mut caps = if spc.status == 200 {
            let config = spc.json::<ServiceProviderConfig>().unwrap_or_else(|e| {
                tracing::warn!(url = %spc_url, "unreadable ServiceProviderConfig ({e}); assuming no PATCH and no Bulk");
                ServiceProviderConfig::default()
            });
            if !config.filter.supported {
                tracing::warn!(url = %spc_url, "the platform announces no filtering: users it already holds cannot be looked up by externalId or userName after a 409");
            }
            config.capabilities(bulk_allowed)
        } else {
            tracing::warn!(url = %spc_url, status = spc.status, "no ServiceProviderConfig; assuming PATCH and no Bulk");
            Capabilities::default()
        };
        // Discovery endpoints may be public (scim2-server's are): read one user to check
        // the credentials before anything is planned or written.
        let mut probe = self.url(&["Users"]);
        probe.query_pairs_mut().append_pair("count", "1").append_pair("attributes", "id");
        let r = self.call(sh, Method::GET, probe.clone(), None, true).await.map_err(|e| unreachable(&probe, e))?;
        if r.status != 200 || r.json::<ListResponse>().is_err() {
            return Err(PlatformError::Protocol {
                url: probe.to_string(),
                detail: format!("{}; is base_url the SCIM root (the URL that /Users is under)?", r.error_message()),
            });
        }
        let rt_url = self.url(&["ResourceTypes", "User"]);
        if let Ok(rt) = self.call(sh, Method::GET, rt_url.clone(), None, true).await
            && rt.status == 200
        {
            let offered = rt.json::<ResourceType>().unwrap_or_default().schema_extensions;
            caps.custom_schema = offered.iter().any(|e| e.schema == self.enc.custom_schema);
            caps.enterprise = offered.iter().any(|e| e.schema == super::encode::ENTERPRISE);
            // Said by the run, once, naming the mapped attributes it drops (a mapping
            // with none loses nothing, and a daemon connects once per run per connector).
            tracing::debug!(url = %rt_url, offered = caps.custom_schema, "custom schema {}", self.enc.custom_schema);
        }
        caps.schemas = self.read_schemas(sh).await.map(std::sync::Arc::new);
        Ok(caps)
    }

    /// `/Schemas`, when the server serves it (RFC 7644 §4): what each schema defines. Not
    /// served, refused or unreadable: None, and every mapped attribute is sent as before.
    async fn read_schemas(&self, sh: &Shared) -> Option<Defined> {
        let url = self.url(&["Schemas"]);
        let r = self.call(sh, Method::GET, url.clone(), None, true).await.ok().filter(|r| r.status == 200)?;
        match r.json::<ListResponse<SchemaResource>>() {
            Ok(list) => defined(list.resources.unwrap_or_default()),
            Err(e) => {
                tracing::debug!(%url, "unreadable /Schemas ({e}); mapped attributes are sent without checking them");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(json: &str, bulk_allowed: bool) -> Capabilities {
        serde_json::from_str::<ServiceProviderConfig>(json).unwrap().capabilities(bulk_allowed)
    }

    #[test]
    fn service_provider_configs_of_every_shape() {
        let full = r#"{"schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
            "patch": {"supported": true}, "bulk": {"supported": true, "maxOperations": 5000, "maxPayloadSize": 1048576},
            "filter": {"supported": true, "maxResults": 200}, "changePassword": {"supported": false}}"#;
        assert_eq!(
            caps(full, true),
            Capabilities {
                patch: true,
                bulk: Some(BulkLimits { max_operations: 1000, max_payload_size: 1048576 }),
                page_size: 200,
                custom_schema: true,
                enterprise: true,
                etag: false,
                schemas: None
            }
        );
        assert_eq!(caps(full, false).bulk, None, "bulk = off in the config");
        // Sparse: what is left out is not offered.
        assert_eq!(
            caps("{}", true),
            Capabilities { patch: false, bulk: None, page_size: 100, custom_schema: true, enterprise: true, etag: false, schemas: None }
        );
        assert!(caps(r#"{"etag": {"supported": true}}"#, true).etag);
        let served: Vec<SchemaResource> = serde_json::from_str(
            r#"[{"id": "urn:x:User", "attributes": [{"name": "Title"}, {"name": "userName"}]}, {"id": "urn:x:Empty"}]"#,
        )
        .unwrap();
        let d = defined(served).unwrap();
        assert_eq!(d.len(), 1, "a schema without attributes defines nothing");
        assert!(d["urn:x:User"].contains("title"));
        assert_eq!(defined(Vec::new()), None);
        let useless_bulk = r#"{"patch": {"supported": true}, "bulk": {"supported": true, "maxOperations": 1, "maxPayloadSize": 100}}"#;
        assert_eq!(caps(useless_bulk, true).bulk, None);
    }
}
