//! /Bulk (RFC 7644 §3.7): a phase's operations cut into batches within the server's
//! `maxOperations` and `maxPayloadSize`, each answer read per operation. What a bulk cannot
//! settle (a 409 to adopt, an unknown outcome, an operation too large) is sent alone.

use std::collections::HashMap;
use std::sync::Arc;

use reqwest::Method;
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::encode::{BULK_REQUEST, Encoder};
use super::error::ScimError;
use super::listing::{UserResource, id_from_location};
use super::retry::transient_status;
use super::{BulkLimits, CallError, Pending, Push, Start, wire};
use crate::model::User;
use crate::plan::Op;
use crate::platform::{Applied, ManagerLink, OpFailure, OpOutcome, PlatformError};

/// One operation of a BulkRequest, with its JSON as sent.
#[derive(Debug)]
struct BulkOperation {
    method: &'static str,
    path: String,
    bulk_id: String,
    /// `{"method":…,"path":…,"bulkId":…,"data":…}`, written once (`wire`): its length is
    /// what the batch's size counts, and the request is these joined.
    json: Vec<u8>,
}

/// An operation's `data`.
enum Data<'a> {
    None,
    /// A user's full resource (`Encoder::write_resource`).
    Resource(&'a User, Option<&'a str>),
    Value(Value),
}

impl BulkOperation {
    fn new(method: &'static str, path: String, bulk_id: String, data: Data<'_>, enc: &Encoder) -> BulkOperation {
        let mut json = Vec::with_capacity(512);
        json.extend_from_slice(br#"{"method":"#);
        wire::string(&mut json, method);
        json.extend_from_slice(br#","path":"#);
        wire::string(&mut json, &path);
        json.extend_from_slice(br#","bulkId":"#);
        wire::string(&mut json, &bulk_id);
        match data {
            Data::None => {}
            Data::Resource(user, manager) => {
                json.extend_from_slice(br#","data":"#);
                enc.write_resource(user, manager, &mut json);
            }
            Data::Value(v) => {
                json.extend_from_slice(br#","data":"#);
                // A `Value` into a `Vec`: no I/O to fail, and its map keys are strings.
                let _ = serde_json::to_writer(&mut json, &v);
            }
        }
        json.push(b'}');
        BulkOperation { method, path, bulk_id, json }
    }
}

/// The BulkRequest of `ops`, as bytes.
fn bulk_request<'a>(ops: impl Iterator<Item = &'a BulkOperation>) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(br#"{"schemas":["#);
    wire::string(&mut body, BULK_REQUEST);
    body.extend_from_slice(br#"],"Operations":["#);
    for (i, op) in ops.enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(&op.json);
    }
    body.extend_from_slice(b"]}");
    body
}

/// A BulkResponse: one result per operation the server got to.
#[derive(Debug, Deserialize)]
struct BulkResponse {
    #[serde(rename = "Operations", default)]
    operations: Vec<BulkResult>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct BulkResult {
    #[serde(default)]
    bulk_id: Option<String>,
    #[serde(default)]
    location: Option<String>,
    /// Absent or unreadable: the operation's outcome is unknown.
    #[serde(default, deserialize_with = "super::lenient::status")]
    status: Option<u16>,
    /// The created resource, or the SCIM error of a failed operation.
    #[serde(default)]
    response: Option<Value>,
}

impl BulkResult {
    /// The id of a user this operation created: from the resource, else `location`.
    fn created_id(&self) -> Option<String> {
        let from_resource = self.response.as_ref().and_then(|r| UserResource::deserialize(r).ok()).and_then(|u| u.platform_id());
        from_resource.or_else(|| self.location.as_deref().and_then(id_from_location))
    }
}

/// An operation in a batch, with what was sent for it.
struct Batched {
    op: Op,
    wire: BulkOperation,
    /// Judged when the request was built: the manager may be created by this very bulk
    /// since, so asking again at the answer would say "linked" for a user sent without one.
    manager: ManagerLink,
}

/// How an operation goes into a bulk.
enum InBulk {
    Sent(BulkOperation, ManagerLink),
    /// An update with nothing to change (PATCH of the previous content): applied as is.
    Unchanged(ManagerLink),
    /// Not expressible in a bulk (a deactivation without PATCH needs a GET first).
    Alone,
}

/// What the answer says of one operation.
enum Settled {
    Done(Result<Applied, OpFailure>),
    Alone(Start),
}

/// Cuts a phase's operations into /Bulk requests, one at a time: within `maxOperations`
/// and (by the size of each operation's JSON) `maxPayloadSize`.
struct Batcher {
    ops: std::vec::IntoIter<Op>,
    /// Operations numbered across batches, for their bulkId.
    index: usize,
    /// The operation that did not fit in the last batch: it starts the next one.
    carry: Option<(Batched, usize)>,
    budget: usize,
    max_ops: usize,
}

impl Batcher {
    fn new(ops: Vec<Op>, limits: BulkLimits) -> Batcher {
        // Room for the envelope and our size estimate's slack.
        let budget = limits.max_payload_size.saturating_sub(256) * 95 / 100;
        Batcher { ops: ops.into_iter(), index: 0, carry: None, budget, max_ops: limits.max_operations }
    }

    /// The next batch (empty when the operations are all out), and operations to send on
    /// their own: too large for a bulk request, or not expressible in one.
    async fn next(&mut self, push: &Push) -> (Vec<Batched>, Vec<Pending>) {
        let mut cur: Vec<Batched> = Vec::new();
        let mut alone = Vec::new();
        let mut size = 0usize;
        if let Some((b, n)) = self.carry.take() {
            size = n;
            cur.push(b);
        }
        for op in self.ops.by_ref() {
            let i = self.index;
            self.index += 1;
            let (wire, manager) = match push.bulk_op(&op, format!("op{i}")) {
                InBulk::Sent(wire, manager) => (wire, manager),
                InBulk::Unchanged(manager) => {
                    if let Op::Update { platform_id, .. } = &op {
                        let applied = Applied { platform_id: platform_id.clone(), manager, adopted: false, healed: None };
                        push.report(OpOutcome { result: Ok(applied), op }).await;
                    }
                    continue;
                }
                InBulk::Alone => {
                    alone.push((op, Start::Fresh));
                    continue;
                }
            };
            let n = wire.json.len() + 1;
            if n > self.budget {
                alone.push((op, Start::Fresh));
                continue;
            }
            let b = Batched { op, wire, manager };
            if !cur.is_empty() && (cur.len() >= self.max_ops || size + n > self.budget) {
                self.carry = Some((b, n));
                break;
            }
            size += n;
            cur.push(b);
        }
        (cur, alone)
    }
}

impl Push {
    /// Sends a phase as bulk requests, each built only when a request slot is free:
    /// building the JSON of every operation up front held ~7 KB per user, 6 GB for a
    /// 1M-user first sync. Returns the operations to send alone.
    pub(super) async fn send_bulks(self: &Arc<Push>, ops: Vec<Op>, limits: BulkLimits, sem: &Arc<Semaphore>) -> Vec<Pending> {
        let mut batcher = Batcher::new(ops, limits);
        let mut set = JoinSet::new();
        let mut single: Vec<Pending> = Vec::new();
        while !self.shared.stopped() {
            let permit = sem.clone().acquire_owned().await.expect("semaphore open");
            let (batch, alone) = batcher.next(self).await;
            single.extend(alone);
            if batch.is_empty() {
                break;
            }
            let push = self.clone();
            set.spawn(async move {
                let left = match push.bulk(batch).await {
                    Ok(left) => left,
                    Err(e) => {
                        push.shared.set_stop(e);
                        Vec::new()
                    }
                };
                drop(permit);
                left
            });
            while let Some(r) = set.try_join_next() {
                match r {
                    Ok(left) => single.extend(left),
                    Err(e) => self.task_failed(e),
                }
            }
        }
        while let Some(r) = set.join_next().await {
            match r {
                Ok(left) => single.extend(left),
                Err(e) => self.task_failed(e),
            }
        }
        single
    }

    /// How `op` goes into a bulk request.
    fn bulk_op(&self, op: &Op, bulk_id: String) -> InBulk {
        let inner = &self.inner;
        let sent = |method, path, data, manager| InBulk::Sent(BulkOperation::new(method, path, bulk_id.clone(), data, &inner.enc), manager);
        match op {
            Op::Create { user } => {
                let (m, link) = self.manager_of(user);
                sent("POST", "/Users".into(), Data::Resource(user, m.as_deref()), link)
            }
            Op::Update { platform_id, user, adopt, previous } => {
                let (m, link) = self.manager_of(user);
                let path = format!("/Users/{platform_id}");
                // Without PATCH an update is a read-merge-write (kept attributes, the version
                // read), which a bulk PUT of our resource alone would not be: sent alone.
                if !inner.caps.patch {
                    return InBulk::Alone;
                }
                let prev_m = previous.as_deref().and_then(|p| self.previous_manager(p));
                let prev = if *adopt { None } else { previous.as_deref().map(|p| (p, prev_m.as_deref())) };
                match inner.enc.patch(user, m.as_deref(), prev) {
                    Some(p) => sent("PATCH", path, Data::Value(p), link),
                    None => InBulk::Unchanged(link),
                }
            }
            Op::Deactivate { platform_id, .. } if inner.caps.patch => {
                sent("PATCH", format!("/Users/{platform_id}"), Data::Value(Encoder::deactivate()), ManagerLink::Absent)
            }
            Op::Deactivate { .. } => InBulk::Alone,
            Op::Delete { platform_id, .. } => sent("DELETE", format!("/Users/{platform_id}"), Data::None, ManagerLink::Absent),
        }
    }

    /// Sends one bulk request and reports each operation by its own status. Returns the
    /// operations to send alone (retriable failures, 409 adoptions, an unreadable answer).
    async fn bulk(&self, batch: Vec<Batched>) -> Result<Vec<Pending>, PlatformError> {
        let url = self.inner.url(&["Bulk"]);
        let body = bulk_request(batch.iter().map(|b| &b.wire));
        let results = match self.inner.call_raw(&self.shared, Method::POST, url.clone(), body.into(), false).await {
            Ok(r) if r.status == 200 => match r.json::<BulkResponse>() {
                Ok(resp) => resp.operations,
                // Applied or not, we cannot tell: each is looked up and sent alone.
                Err(e) => {
                    tracing::warn!(%url, "unreadable bulk answer ({e}); sending its {} operations one by one", batch.len());
                    Vec::new()
                }
            },
            Ok(r) => {
                // Refused as a whole (413, 400…): nothing applied; each goes alone.
                tracing::warn!(%url, "bulk request refused ({}); sending its {} operations one by one", r.error_message(), batch.len());
                return Ok(batch.into_iter().map(|b| (b.op, Start::Fresh)).collect());
            }
            Err(CallError::Stop(e)) => return Err(e),
            Err(CallError::Failed { message, maybe_applied, .. }) => {
                tracing::warn!(%url, "bulk request failed ({message}); sending its {} operations one by one", batch.len());
                return Ok(batch.into_iter().map(|b| (b.op, Start::unknown_if(maybe_applied))).collect());
            }
        };
        let by_bulk_id: HashMap<&str, &BulkResult> = results.iter().filter_map(|r| r.bulk_id.as_deref().map(|b| (b, r))).collect();
        let n_batch = batch.len();
        let mut left = Vec::new();
        for (i, b) in batch.into_iter().enumerate() {
            // By bulkId; by position only when the server answered every operation.
            let r =
                by_bulk_id.get(b.wire.bulk_id.as_str()).copied().or_else(|| (results.len() == n_batch).then(|| results.get(i)).flatten());
            match self.settle(&b, r, &url)? {
                Settled::Done(result) => self.report(OpOutcome { result, op: b.op }).await,
                Settled::Alone(start) => left.push((b.op, start)),
            }
        }
        Ok(left)
    }

    /// What one operation's result in a BulkResponse means.
    fn settle(&self, b: &Batched, r: Option<&BulkResult>, url: &url::Url) -> Result<Settled, PlatformError> {
        let Some((r, status)) = r.and_then(|r| Some((r, r.status?))) else {
            return Ok(Settled::Alone(Start::Unknown));
        };
        let applied = |platform_id: &str| {
            Settled::Done(Ok(Applied { platform_id: platform_id.to_string(), manager: b.manager, adopted: false, healed: None }))
        };
        Ok(match (&b.op, status) {
            (Op::Create { .. }, 200..=299) => match r.created_id() {
                Some(id) => applied(&id),
                None => Settled::Alone(Start::Unknown),
            },
            (Op::Create { .. }, 409) => Settled::Alone(Start::Adopt),
            (Op::Update { platform_id, .. } | Op::Deactivate { platform_id, .. } | Op::Delete { platform_id, .. }, 200..=299) => {
                applied(platform_id)
            }
            (Op::Delete { platform_id, .. }, 404) => applied(platform_id),
            // Deleted on the platform by hand: sent alone, where the write heals it.
            (Op::Update { .. } | Op::Deactivate { .. }, 404) => Settled::Alone(Start::Fresh),
            // A path this server or this account does not take (a value filter with no match:
            // no work email): sent alone, where the write falls back to read-merge-write.
            (Op::Update { .. }, 400)
                if matches!(ScimError::of(r.response.as_ref()).scim_type(), Some("noTarget" | "invalidPath" | "invalidFilter")) =>
            {
                Settled::Alone(Start::Fresh)
            }
            (_, 401 | 403) => {
                return Err(PlatformError::Unauthorized {
                    status,
                    url: url.to_string(),
                    detail: ScimError::of(r.response.as_ref()).message(status),
                    env: self.inner.auth.source(),
                });
            }
            (op, s) => match transient_status(s, None) {
                Some(t) => Settled::Alone(Start::unknown_if(t.maybe_applied)),
                None => Settled::Done(Err(OpFailure {
                    status: Some(s),
                    message: format!(
                        "user {}: {} {} in bulk: {}",
                        op.external_id(),
                        b.wire.method,
                        b.wire.path,
                        ScimError::of(r.response.as_ref()).message(s)
                    ),
                })),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bulk_responses_with_string_or_number_statuses() {
        let resp: BulkResponse = serde_json::from_str(
            r#"{"schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkResponse"], "Operations": [
                {"method": "POST", "bulkId": "op0", "location": "https://p/v2/Users/u0", "status": "201"},
                {"method": "POST", "bulkId": "op1", "status": 201, "response": {"id": "u1", "userName": "b@example.com"}},
                {"method": "POST", "bulkId": "op2", "status": "400", "response": {"scimType": "invalidValue", "detail": "bad date", "status": "400"}},
                {"method": "PATCH", "status": {"code": "200"}}]}"#,
        )
        .unwrap();
        let ops = &resp.operations;
        assert_eq!(ops.iter().map(|o| o.status).collect::<Vec<_>>(), vec![Some(201), Some(201), Some(400), None]);
        assert_eq!(ops[0].created_id().as_deref(), Some("u0"));
        assert_eq!(ops[1].created_id().as_deref(), Some("u1"));
        assert_eq!(ScimError::of(ops[2].response.as_ref()).message(400), "HTTP 400 invalidValue: bad date");
        assert_eq!(ops[3].bulk_id, None);
        assert!(serde_json::from_str::<BulkResponse>("{}").unwrap().operations.is_empty());
    }

    #[test]
    fn bulk_requests_are_written_as_rfc_7644_says() {
        let enc = Encoder { custom_schema: "urn:x".into(), custom_offered: true, enterprise_offered: true, defined: None };
        let delete = BulkOperation::new("DELETE", "/Users/u1".into(), "op3".into(), Data::None, &enc);
        let patch = BulkOperation::new("PATCH", "/Users/u\"2".into(), "op4".into(), Data::Value(Encoder::deactivate()), &enc);
        let user = crate::model::fixtures::user("E5", true, "Lead");
        let create = BulkOperation::new("POST", "/Users".into(), "op5".into(), Data::Resource(&user, Some("m-1")), &enc);
        let body: Value = serde_json::from_slice(&bulk_request([&delete, &patch, &create].into_iter())).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"schemas": [BULK_REQUEST], "Operations": [
                {"method": "DELETE", "path": "/Users/u1", "bulkId": "op3"},
                {"method": "PATCH", "path": "/Users/u\"2", "bulkId": "op4", "data": Encoder::deactivate()},
                {"method": "POST", "path": "/Users", "bulkId": "op5", "data": enc.resource(&user, Some("m-1"))},
            ]})
        );
        let empty: Value = serde_json::from_slice(&bulk_request(std::iter::empty())).unwrap();
        assert_eq!(empty, serde_json::json!({"schemas": [BULK_REQUEST], "Operations": []}));
    }
}
