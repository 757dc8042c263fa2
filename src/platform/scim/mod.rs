//! SCIM 2.0 client (RFC 7643/7644): users, the enterprise extension, /Bulk when offered,
//! bounded concurrency otherwise, retries for 429/5xx/timeouts, adoption on 409.
//!
//! Layout: `auth` (credentials), `encode` (User ↔ JSON), `retry` (every retry decision);
//! this file sends requests and runs a plan.

mod auth;
mod encode;
pub mod retry;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;

use self::auth::Auth;
use self::encode::{BULK_REQUEST, Encoder, MANAGER_ID};
use self::retry::{Budget, RetryPolicy, Verdict};
use super::{Applied, OpFailure, Outcome, Platform, PlatformError};
use crate::config;
use crate::model::User;
use crate::plan::{Existing, Op, OpKind};

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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BulkLimits {
    pub max_operations: usize,
    pub max_payload_size: usize,
}

pub struct ScimClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    base: url::Url,
    auth: Auth,
    policy: RetryPolicy,
    caps: Capabilities,
    enc: Encoder,
    max_concurrency: usize,
}

/// A final HTTP answer (2xx or a 4xx the caller reads).
struct Resp {
    status: u16,
    body: Value,
    location: Option<String>,
}

enum CallError {
    /// Stops the run: credentials refused, or the retry budget spent.
    Stop(PlatformError),
    /// This request failed; `maybe_applied` when the server may have done it anyway.
    Failed { status: Option<u16>, message: String, maybe_applied: bool },
}

impl From<PlatformError> for CallError {
    fn from(e: PlatformError) -> Self {
        CallError::Stop(e)
    }
}

/// Everything one `apply` (or one listing) shares.
struct RunCtx {
    budget: Budget,
    applied: AtomicU64,
    stop: Mutex<Option<PlatformError>>,
}

impl RunCtx {
    fn new(policy: &RetryPolicy, ops: usize) -> RunCtx {
        RunCtx { budget: Budget::for_ops(policy, ops), applied: AtomicU64::new(0), stop: Mutex::new(None) }
    }
    fn stopped(&self) -> bool {
        self.stop.lock().map(|s| s.is_some()).unwrap_or(true)
    }
    fn set_stop(&self, e: PlatformError) {
        if let Ok(mut s) = self.stop.lock()
            && s.is_none()
        {
            *s = Some(e);
        }
    }
}

/// The error chain of a transport error, for messages (reqwest's top line alone is often
/// just "error sending request").
pub(crate) fn transport_detail(e: &reqwest::Error) -> String {
    let mut s = if e.is_timeout() { "timed out".to_string() } else { e.to_string() };
    let mut src = std::error::Error::source(e);
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

/// "HTTP 400 invalidValue: detail" from a SCIM error body.
fn scim_error(status: u16, body: &Value) -> String {
    let mut s = format!("HTTP {status}");
    if let Some(t) = body["scimType"].as_str() {
        s.push(' ');
        s.push_str(t);
    }
    if let Some(d) = body["detail"].as_str() {
        s.push_str(": ");
        s.push_str(d);
    }
    s
}

/// The last path segment of a Location URL: the new resource's id.
fn id_from_location(loc: &str) -> Option<String> {
    let path = loc.split(['?', '#']).next()?;
    path.trim_end_matches('/').rsplit('/').next().filter(|s| !s.is_empty()).map(str::to_string)
}

fn status_of(v: &Value) -> Option<u16> {
    match v {
        Value::String(s) => s.trim().parse().ok(),
        Value::Number(n) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
        _ => None,
    }
}

/// A SCIM filter string literal.
fn filter_literal(v: &str) -> String {
    format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))
}

impl Inner {
    fn url(&self, segments: &[&str]) -> url::Url {
        let mut u = self.base.clone();
        if let Ok(mut p) = u.path_segments_mut() {
            p.pop_if_empty().extend(segments);
        }
        u
    }

    /// Sends one request, retrying what `retry` says is worth retrying. With `blind_retry`
    /// false (a create, a bulk), a failure that may have been applied is returned to the
    /// caller instead, who must check before sending again.
    async fn call(&self, ctx: &RunCtx, method: Method, url: url::Url, body: Option<&Value>, blind_retry: bool) -> Result<Resp, CallError> {
        let bytes = body.map(|b| serde_json::to_vec(b).expect("JSON values serialize"));
        let mut attempt = 0u32;
        let mut reauthed = false;
        loop {
            attempt += 1;
            let authorization = match self.auth.header(&self.http).await {
                Ok(a) => a,
                // The token endpoint is down: nothing was sent, so the same rules apply.
                Err(PlatformError::Unreachable { url: token_url, detail }) => {
                    let message = format!("{method} {url}: no token from {token_url}: {detail}");
                    match self.retry_wait(ctx, attempt, Verdict::Retry { after: None, maybe_applied: false }, None, message, true).await {
                        Ok(()) => continue,
                        Err(e) => return Err(e),
                    }
                }
                Err(e) => return Err(CallError::Stop(e)),
            };
            let mut rb = self
                .http
                .request(method.clone(), url.clone())
                .header(reqwest::header::AUTHORIZATION, authorization)
                .header(reqwest::header::ACCEPT, "application/scim+json, application/json");
            if let Some(b) = &bytes {
                rb = rb.header(reqwest::header::CONTENT_TYPE, "application/scim+json").body(b.clone());
            }
            let (verdict, message, status) = match rb.send().await {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let header = |n: reqwest::header::HeaderName| resp.headers().get(n).and_then(|v| v.to_str().ok()).map(str::to_string);
                    let retry_after = header(reqwest::header::RETRY_AFTER);
                    let location = header(reqwest::header::LOCATION);
                    match resp.bytes().await {
                        Err(e) => (
                            self.policy.for_error(&e),
                            format!("{method} {url}: reading the answer failed: {}", transport_detail(&e)),
                            Some(status),
                        ),
                        Ok(b) => {
                            let body: Value = serde_json::from_slice(&b).unwrap_or(Value::Null);
                            if status == 401 || status == 403 {
                                // An OAuth2 token may have been revoked early: one fresh token.
                                if status == 401 && !reauthed && self.auth.invalidate().await {
                                    reauthed = true;
                                    continue;
                                }
                                return Err(CallError::Stop(PlatformError::Unauthorized {
                                    status,
                                    url: url.to_string(),
                                    detail: scim_error(status, &body),
                                    env: self.auth.source(),
                                }));
                            }
                            match self.policy.for_status(status, retry_after.as_deref()) {
                                Verdict::Final => return Ok(Resp { status, body, location }),
                                v => (v, format!("{method} {url}: {}", scim_error(status, &body)), Some(status)),
                            }
                        }
                    }
                }
                Err(e) => (self.policy.for_error(&e), format!("{method} {url}: {}", transport_detail(&e)), None),
            };
            self.retry_wait(ctx, attempt, verdict, status, message, blind_retry).await?;
        }
    }

    /// Decides whether attempt `attempt` gets a successor and waits for it; Err is the
    /// failure to return instead.
    async fn retry_wait(
        &self,
        ctx: &RunCtx,
        attempt: u32,
        verdict: Verdict,
        status: Option<u16>,
        message: String,
        blind_retry: bool,
    ) -> Result<(), CallError> {
        let Verdict::Retry { after, maybe_applied } = verdict else {
            return Err(CallError::Failed { status, message, maybe_applied: false });
        };
        if maybe_applied && !blind_retry {
            return Err(CallError::Failed { status, message, maybe_applied });
        }
        if attempt >= self.policy.max_attempts {
            return Err(CallError::Failed { status, message: format!("{message} (gave up after {attempt} attempts)"), maybe_applied });
        }
        let Some(delay) = self.policy.delay(attempt, after) else {
            return Err(CallError::Failed {
                status,
                message: format!("{message} (the server asked to wait {after:?}, longer than we wait)"),
                maybe_applied,
            });
        };
        if !ctx.budget.take() {
            return Err(CallError::Stop(PlatformError::RetriesExhausted {
                detail: format!("{} retries spent this run; last: {message}", ctx.budget.total),
                done: ctx.applied.load(Ordering::Acquire),
            }));
        }
        tracing::debug!(attempt, ?delay, "retrying: {message}");
        tokio::time::sleep(delay).await;
        Ok(())
    }

    /// The platform id of the user whose `attr` equals `value`, if any.
    async fn find(&self, ctx: &RunCtx, attr: &str, value: &str) -> Result<Option<String>, CallError> {
        let mut url = self.url(&["Users"]);
        url.query_pairs_mut().append_pair("filter", &format!("{attr} eq {}", filter_literal(value))).append_pair("attributes", "id");
        let r = self.call(ctx, Method::GET, url.clone(), None, true).await?;
        if r.status != 200 {
            return Err(CallError::Failed {
                status: Some(r.status),
                message: format!("GET {url}: {}", scim_error(r.status, &r.body)),
                maybe_applied: false,
            });
        }
        Ok(r.body["Resources"].as_array().and_then(|a| a.first()).and_then(|u| u["id"].as_str()).map(str::to_string))
    }

    async fn discover(&self, ctx: &RunCtx, bulk_allowed: bool) -> Result<Capabilities, PlatformError> {
        let unreachable = |url: &url::Url, e: CallError| match e {
            CallError::Stop(e) => e,
            CallError::Failed { message, .. } => PlatformError::Unreachable { url: url.to_string(), detail: message },
        };
        let spc_url = self.url(&["ServiceProviderConfig"]);
        let spc = self.call(ctx, Method::GET, spc_url.clone(), None, true).await.map_err(|e| unreachable(&spc_url, e))?;
        let mut caps = Capabilities { patch: true, bulk: None, page_size: 100, custom_schema: true };
        if spc.status == 200 {
            let b = &spc.body;
            caps.patch = b["patch"]["supported"].as_bool().unwrap_or(false);
            if bulk_allowed && b["bulk"]["supported"].as_bool() == Some(true) {
                let ops = b["bulk"]["maxOperations"].as_u64().unwrap_or(0) as usize;
                let size = b["bulk"]["maxPayloadSize"].as_u64().unwrap_or(0) as usize;
                if ops > 1 && size > 1024 {
                    caps.bulk = Some(BulkLimits { max_operations: ops.min(1000), max_payload_size: size });
                }
            }
            if let Some(m) = b["filter"]["maxResults"].as_u64().filter(|m| *m > 0) {
                caps.page_size = (m as usize).min(1000);
            }
        } else {
            tracing::warn!(url = %spc_url, status = spc.status, "no ServiceProviderConfig; assuming PATCH and no Bulk");
        }
        // Discovery endpoints may be public (scim2-server's are): read one user to check
        // the credentials before anything is planned or written.
        let mut probe = self.url(&["Users"]);
        probe.query_pairs_mut().append_pair("count", "1").append_pair("attributes", "id");
        let r = self.call(ctx, Method::GET, probe.clone(), None, true).await.map_err(|e| unreachable(&probe, e))?;
        if r.status != 200 {
            return Err(PlatformError::Protocol {
                url: probe.to_string(),
                detail: format!("{}; is base_url the SCIM root (the URL that /Users is under)?", scim_error(r.status, &r.body)),
            });
        }
        let rt_url = self.url(&["ResourceTypes", "User"]);
        if let Ok(rt) = self.call(ctx, Method::GET, rt_url.clone(), None, true).await
            && rt.status == 200
        {
            let ext = rt.body["schemaExtensions"].as_array().cloned().unwrap_or_default();
            caps.custom_schema = ext.iter().any(|e| e["schema"].as_str() == Some(self.enc.custom_schema.as_str()));
            if !caps.custom_schema {
                tracing::warn!(url = %rt_url, schema = %self.enc.custom_schema, "the platform does not offer the custom schema: attributes outside the core and enterprise schemas will not be sent; add the schema on the platform or set custom_schema in [platform]");
            }
        }
        Ok(caps)
    }
}

impl ScimClient {
    /// Builds a client: reads the credentials from the environment (never logged) and the
    /// server's capabilities, so a wrong URL or token fails here, before any write.
    pub async fn connect(cfg: &config::Platform) -> Result<ScimClient, PlatformError> {
        let auth = Auth::from_config(&cfg.auth)?;
        let http = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .connect_timeout(cfg.timeout.min(Duration::from_secs(10)))
            .pool_max_idle_per_host(cfg.max_concurrency.max(1))
            .user_agent(concat!("rostersync/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| PlatformError::Config(format!("cannot build the HTTP client: {}", transport_detail(&e))))?;
        let mut inner = Inner {
            http,
            base: cfg.base_url.clone(),
            auth,
            policy: RetryPolicy::default(),
            caps: Capabilities { patch: true, bulk: None, page_size: 100, custom_schema: true },
            enc: Encoder { custom_schema: cfg.custom_schema.clone(), custom_offered: true },
            max_concurrency: cfg.max_concurrency.max(1),
        };
        let ctx = RunCtx::new(&inner.policy, 0);
        inner.caps = inner.discover(&ctx, cfg.bulk).await?;
        inner.enc.custom_offered = inner.caps.custom_schema;
        tracing::debug!(caps = ?inner.caps, "SCIM platform capabilities");
        Ok(ScimClient { inner: Arc::new(inner) })
    }

    /// What the server offers, as read at connect.
    pub fn capabilities(&self) -> &Capabilities {
        &self.inner.caps
    }

    /// Overrides the retry policy (tests, benchmarks).
    pub fn set_retry_policy(&mut self, policy: RetryPolicy) {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.policy = policy;
        }
    }
}

impl Platform for ScimClient {
    async fn existing_users(&self) -> Result<Vec<Existing>, PlatformError> {
        let inner = &self.inner;
        let ctx = RunCtx::new(&inner.policy, 0);
        let mut all = Vec::new();
        let mut start = 1usize;
        loop {
            let mut url = inner.url(&["Users"]);
            url.query_pairs_mut()
                .append_pair("startIndex", &start.to_string())
                .append_pair("count", &inner.caps.page_size.to_string())
                .append_pair("attributes", "id,externalId,userName");
            let r = inner.call(&ctx, Method::GET, url.clone(), None, true).await.map_err(|e| match e {
                CallError::Stop(e) => e,
                CallError::Failed { message, .. } => PlatformError::Unreachable { url: url.to_string(), detail: message },
            })?;
            if r.status != 200 {
                return Err(PlatformError::Protocol { url: url.to_string(), detail: scim_error(r.status, &r.body) });
            }
            let page = r.body["Resources"].as_array().cloned().unwrap_or_default();
            let n = page.len();
            for u in page {
                let Some(id) = u["id"].as_str() else { continue };
                all.push(Existing {
                    platform_id: id.to_string(),
                    external_id: u["externalId"].as_str().map(str::to_string),
                    user_name: u["userName"].as_str().map(str::to_string),
                });
            }
            let total = r.body["totalResults"].as_u64().unwrap_or(0) as usize;
            if n == 0 || start - 1 + n >= total {
                return Ok(all);
            }
            start += n;
        }
    }

    async fn apply(&self, ops: Vec<Op>, known: HashMap<String, String>, outcomes: mpsc::Sender<Outcome>) -> Result<(), PlatformError> {
        let run =
            Arc::new(Run { inner: self.inner.clone(), ctx: RunCtx::new(&self.inner.policy, ops.len()), ids: Mutex::new(known), outcomes });
        {
            let mut ids = run.ids.lock().expect("ids lock");
            for op in &ops {
                if let Op::Update { platform_id, .. } | Op::Deactivate { platform_id, .. } | Op::Delete { platform_id, .. } = op {
                    ids.insert(op.external_id().to_string(), platform_id.clone());
                }
            }
        }
        let (creates, rest): (Vec<Op>, Vec<Op>) = ops.into_iter().partition(|o| matches!(o, Op::Create { .. }));
        // Managers before the people they manage, so every create can name its manager.
        for wave in manager_waves(creates) {
            run.phase(wave).await;
            if run.ctx.stopped() {
                break;
            }
        }
        if !run.ctx.stopped() {
            run.phase(rest).await;
        }
        match run.ctx.stop.lock().ok().and_then(|mut s| s.take()) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// Cuts a phase's operations into /Bulk requests, one at a time: within `maxOperations`
/// and (by the size of each operation's JSON) `maxPayloadSize`.
struct Batcher {
    ops: std::vec::IntoIter<Op>,
    /// Operations numbered across batches, for their bulkId.
    index: usize,
    /// The operation that did not fit in the last batch: it starts the next one.
    carry: Option<(Op, Value, usize)>,
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
    async fn next(&mut self, run: &Run) -> (Vec<(Op, Value)>, Vec<Pending>) {
        let mut cur: Vec<(Op, Value)> = Vec::new();
        let mut alone = Vec::new();
        let mut size = 0usize;
        if let Some((op, v, n)) = self.carry.take() {
            size = n;
            cur.push((op, v));
        }
        for op in self.ops.by_ref() {
            let i = self.index;
            self.index += 1;
            let Some(v) = run.bulk_op(&op, &format!("op{i}")) else {
                if let Op::Update { platform_id, .. } = &op
                    && run.inner.caps.patch
                {
                    // Nothing changed: applied without a request.
                    let o = Outcome { result: Ok(Applied { platform_id: platform_id.clone(), note: None }), op };
                    run.report(o).await;
                } else {
                    alone.push((op, Start::Fresh));
                }
                continue;
            };
            let n = serde_json::to_vec(&v).map(|b| b.len() + 1).unwrap_or(usize::MAX);
            if n > self.budget {
                alone.push((op, Start::Fresh));
                continue;
            }
            if !cur.is_empty() && (cur.len() >= self.max_ops || size + n > self.budget) {
                self.carry = Some((op, v, n));
                break;
            }
            size += n;
            cur.push((op, v));
        }
        (cur, alone)
    }
}

/// For each create, how many managers above it are created in this push too; 0 for one
/// whose chain of managers runs into a cycle. Linear: each chain is walked once and its
/// depths remembered (walking every chain again from each person was quadratic, 100 s for a
/// million people whose random managers form long chains).
fn manager_depths(creates: &[Op]) -> Vec<usize> {
    let index: HashMap<&str, usize> = creates.iter().enumerate().map(|(i, o)| (o.external_id(), i)).collect();
    let manager: Vec<Option<usize>> = creates
        .iter()
        .map(|o| match o {
            Op::Create { user } => user.attributes.get(MANAGER_ID).and_then(|m| index.get(m).copied()),
            _ => None,
        })
        .collect();
    const UNSEEN: usize = usize::MAX;
    const WALKING: usize = usize::MAX - 1;
    const CYCLE: usize = usize::MAX - 2;
    let mut depth = vec![UNSEEN; creates.len()];
    let mut chain = Vec::new();
    for start in 0..creates.len() {
        let mut cur = start;
        // Walk up until a person whose depth is known, the top, or a cycle.
        let below = loop {
            if depth[cur] != UNSEEN {
                break if depth[cur] == WALKING { CYCLE } else { depth[cur] };
            }
            depth[cur] = WALKING;
            chain.push(cur);
            match manager[cur] {
                Some(m) => cur = m,
                None => break UNSEEN,
            }
        };
        // Then down again: the top has depth 0, each report one more; all of a chain that
        // runs into a cycle is 0 and marked so.
        let mut d = below;
        while let Some(i) = chain.pop() {
            d = match d {
                UNSEEN => 0,
                CYCLE => CYCLE,
                n => n + 1,
            };
            depth[i] = d;
        }
    }
    depth.into_iter().map(|d| if d == CYCLE { 0 } else { d }).collect()
}

/// Groups creates by depth in the manager tree among themselves: wave 0 has managers that
/// are not being created in this push (or none), wave n the reports of wave n-1. Cycles
/// (bad data) land in wave 0; their manager is then unknown and reported.
fn manager_waves(creates: Vec<Op>) -> Vec<Vec<Op>> {
    let depths = manager_depths(&creates);
    let mut waves: Vec<Vec<Op>> = Vec::new();
    for (op, d) in creates.into_iter().zip(depths) {
        if waves.len() <= d {
            waves.resize_with(d + 1, Vec::new);
        }
        waves[d].push(op);
    }
    waves.retain(|w| !w.is_empty());
    waves
}

/// One `apply`.
struct Run {
    inner: Arc<Inner>,
    ctx: RunCtx,
    /// external id → platform id: known users, plus those created or adopted so far.
    ids: Mutex<HashMap<String, String>>,
    outcomes: mpsc::Sender<Outcome>,
}

/// Where a create starts when it is sent alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Start {
    /// Never sent.
    Fresh,
    /// Sent, outcome unknown: look it up by externalId before sending again.
    Unknown,
    /// The server said it exists (409 in a bulk): adopt it.
    Adopt,
}

impl Start {
    fn unknown_if(maybe_applied: bool) -> Start {
        if maybe_applied { Start::Unknown } else { Start::Fresh }
    }
}

/// An operation to send alone, and where it starts.
type Pending = (Op, Start);

impl Run {
    /// Runs a set of independent operations: in bulk batches when offered, else one
    /// request each; at most `max_concurrency` requests in flight.
    async fn phase(self: &Arc<Run>, ops: Vec<Op>) {
        if ops.is_empty() {
            return;
        }
        let sem = Arc::new(Semaphore::new(self.inner.max_concurrency));
        let mut single: Vec<Pending> = Vec::new();
        match self.inner.caps.bulk {
            Some(limits) if ops.len() > 1 => {
                // Each batch is built only when a request slot is free: building the JSON of
                // every operation up front held ~7 KB per user, 6 GB for a 1M-user first sync.
                let mut batcher = Batcher::new(ops, limits);
                let mut set = JoinSet::new();
                let done = |r: Result<Result<Vec<Pending>, PlatformError>, tokio::task::JoinError>, single: &mut Vec<Pending>| match r {
                    Ok(Ok(left)) => single.extend(left),
                    Ok(Err(e)) => self.ctx.set_stop(e),
                    Err(e) => self
                        .ctx
                        .set_stop(PlatformError::Protocol { url: self.inner.base.to_string(), detail: format!("a bulk task failed: {e}") }),
                };
                while !self.ctx.stopped() {
                    let permit = sem.clone().acquire_owned().await.expect("semaphore open");
                    let (batch, too_big) = batcher.next(self).await;
                    single.extend(too_big);
                    if batch.is_empty() {
                        break;
                    }
                    let run = self.clone();
                    set.spawn(async move {
                        let r = run.bulk(batch).await;
                        drop(permit);
                        r
                    });
                    while let Some(r) = set.try_join_next() {
                        done(r, &mut single);
                    }
                }
                while let Some(r) = set.join_next().await {
                    done(r, &mut single);
                }
            }
            _ => single.extend(ops.into_iter().map(|o| (o, Start::Fresh))),
        }
        let mut set = JoinSet::new();
        for (op, start) in single {
            if self.ctx.stopped() {
                break;
            }
            let permit = sem.clone().acquire_owned().await.expect("semaphore open");
            let run = self.clone();
            set.spawn(async move {
                let r = run.exec(op, start).await;
                drop(permit);
                match r {
                    Ok(o) => run.report(o).await,
                    Err(e) => run.ctx.set_stop(e),
                }
            });
        }
        while let Some(r) = set.join_next().await {
            if let Err(e) = r {
                // A bug, not the platform: stop rather than lose an outcome silently.
                self.ctx.set_stop(PlatformError::Protocol {
                    url: self.inner.base.to_string(),
                    detail: format!("an operation task failed: {e}"),
                });
            }
        }
    }

    /// Sends an outcome as soon as it is known, and remembers created ids for managers.
    async fn report(&self, o: Outcome) {
        if let Ok(a) = &o.result {
            self.ctx.applied.fetch_add(1, Ordering::AcqRel);
            if o.kind() != OpKind::Delete {
                self.ids.lock().expect("ids lock").insert(o.external_id().to_string(), a.platform_id.clone());
            }
        }
        // A closed receiver means the caller stopped listening; the writes stand.
        let _ = self.outcomes.send(o).await;
    }

    /// The manager's platform id, or a note saying why it is left unset.
    fn manager(&self, user: &User) -> (Option<String>, Option<String>) {
        match user.attributes.get(MANAGER_ID).filter(|m| !m.is_empty()) {
            None => (None, None),
            Some(m) => match self.ids.lock().expect("ids lock").get(m) {
                Some(id) => (Some(id.clone()), None),
                None => (
                    None,
                    Some(format!(
                        "manager {m} is not on the platform (not in this export, nor synced before); {}",
                        super::MANAGER_LEFT_UNSET
                    )),
                ),
            },
        }
    }

    fn previous_manager(&self, prev: &User) -> Option<String> {
        let m = prev.attributes.get(MANAGER_ID)?;
        self.ids.lock().expect("ids lock").get(m).cloned()
    }

    async fn exec(&self, op: Op, start: Start) -> Result<Outcome, PlatformError> {
        let external_id = op.external_id().to_string();
        let result = match &op {
            Op::Create { user } if start == Start::Adopt => {
                let (manager, note) = self.manager(user);
                self.adopt(user, manager.as_deref(), note).await?
            }
            Op::Create { user } => self.create(user, start == Start::Unknown).await?,
            Op::Update { platform_id, user, adopt, previous } => {
                let (manager, note) = self.manager(user);
                // An adopted user's content is unknown: replace everything we map.
                let prev = if *adopt { None } else { previous.as_deref().map(|p| (p, self.previous_manager(p))) };
                self.write_content(platform_id, user, manager.as_deref(), prev.as_ref().map(|(u, m)| (*u, m.as_deref())))
                    .await?
                    .map(|()| Applied { platform_id: platform_id.clone(), note })
            }
            Op::Deactivate { platform_id, .. } => {
                self.deactivate(platform_id).await?.map(|()| Applied { platform_id: platform_id.clone(), note: None })
            }
            Op::Delete { platform_id, .. } => {
                self.delete(platform_id).await?.map(|()| Applied { platform_id: platform_id.clone(), note: None })
            }
        };
        let result = result.map_err(|mut f| {
            f.message = format!("user {external_id}: {}", f.message);
            f
        });
        Ok(Outcome { result, op })
    }

    fn fail(status: Option<u16>, message: String) -> Result<Result<(), OpFailure>, PlatformError> {
        Ok(Err(OpFailure { status, message }))
    }

    /// POST a user. An unknown outcome (the connection dropped after sending) is looked up
    /// by externalId before sending again, so a user is never created twice.
    async fn create(&self, user: &User, lookup_first: bool) -> Result<Result<Applied, OpFailure>, PlatformError> {
        let inner = &self.inner;
        let (manager, note) = self.manager(user);
        let body = inner.enc.resource(user, manager.as_deref());
        let url = inner.url(&["Users"]);
        let mut check = lookup_first;
        let mut sends = 0u32;
        loop {
            if check {
                match inner.find(&self.ctx, "externalId", &user.external_id).await {
                    // Most likely our own write; but it may be someone else's user with
                    // our externalId, so make its content ours either way.
                    Ok(Some(id)) => {
                        return Ok(self
                            .write_content(&id, user, manager.as_deref(), None)
                            .await?
                            .map(|()| Applied { platform_id: id, note }));
                    }
                    Ok(None) => {}
                    Err(CallError::Stop(e)) => return Err(e),
                    Err(CallError::Failed { status, message, .. }) => {
                        return Ok(Err(OpFailure {
                            status,
                            message: format!(
                                "the create's outcome is unknown and looking it up failed ({message}); the next run adopts it by externalId if it was created"
                            ),
                        }));
                    }
                }
            }
            sends += 1;
            match inner.call(&self.ctx, Method::POST, url.clone(), Some(&body), false).await {
                Ok(r) if (200..300).contains(&r.status) => {
                    let id = r.body["id"].as_str().map(str::to_string).or_else(|| r.location.as_deref().and_then(id_from_location));
                    return Ok(match id {
                        Some(id) => Ok(Applied { platform_id: id, note }),
                        None => Err(OpFailure {
                            status: Some(r.status),
                            message: format!("POST {url}: HTTP {} without the new user's id", r.status),
                        }),
                    });
                }
                Ok(r) if r.status == 409 => return self.adopt(user, manager.as_deref(), note).await,
                Ok(r) => {
                    return Ok(Err(OpFailure {
                        status: Some(r.status),
                        message: format!("POST {url}: {}", scim_error(r.status, &r.body)),
                    }));
                }
                Err(CallError::Stop(e)) => return Err(e),
                Err(CallError::Failed { maybe_applied: true, message, .. }) if sends < inner.policy.max_attempts => {
                    if !self.ctx.budget.take() {
                        return Err(PlatformError::RetriesExhausted {
                            detail: format!("retry budget spent; last: {message}"),
                            done: self.ctx.applied.load(Ordering::Acquire),
                        });
                    }
                    tracing::debug!(external_id = %user.external_id, "create outcome unknown ({message}); looking it up before sending again");
                    check = true;
                    if let Some(d) = inner.policy.delay(sends, None) {
                        tokio::time::sleep(d).await;
                    }
                }
                Err(CallError::Failed { status, message, .. }) => return Ok(Err(OpFailure { status, message })),
            }
        }
    }

    /// After a 409: the user exists. Find them by externalId, then userName, and make
    /// their content ours.
    async fn adopt(&self, user: &User, manager: Option<&str>, note: Option<String>) -> Result<Result<Applied, OpFailure>, PlatformError> {
        let inner = &self.inner;
        let mut found = None;
        for (attr, value) in [("externalId", user.external_id.as_str()), ("userName", user.user_name())] {
            match inner.find(&self.ctx, attr, value).await {
                Ok(Some(id)) => {
                    found = Some(id);
                    break;
                }
                Ok(None) => {}
                Err(CallError::Stop(e)) => return Err(e),
                Err(CallError::Failed { status, message, .. }) => {
                    return Ok(Err(OpFailure {
                        status,
                        message: format!("the platform answered 409 (user exists) but looking the user up failed: {message}"),
                    }));
                }
            }
        }
        let Some(id) = found else {
            return Ok(Err(OpFailure {
                status: Some(409),
                message: format!(
                    "the platform answered 409 (already exists) but no user has externalId {:?} or userName {:?}; another attribute must be unique on the platform (email?) — find the conflicting user there",
                    user.external_id,
                    user.user_name()
                ),
            }));
        };
        Ok(self.write_content(&id, user, manager, None).await?.map(|()| {
            let adopted = format!("adopted existing platform user {id} (HTTP 409 on create)");
            Applied { platform_id: id, note: Some(note.map_or(adopted.clone(), |n| format!("{adopted}; {n}"))) }
        }))
    }

    /// PATCH (only what changed, when the previous content is known) or PUT.
    async fn write_content(
        &self,
        id: &str,
        user: &User,
        manager: Option<&str>,
        previous: Option<(&User, Option<&str>)>,
    ) -> Result<Result<(), OpFailure>, PlatformError> {
        let inner = &self.inner;
        let url = inner.url(&["Users", id]);
        let (method, body) = if inner.caps.patch {
            match inner.enc.patch(user, manager, previous) {
                Some(p) => (Method::PATCH, p),
                None => return Ok(Ok(())),
            }
        } else {
            (Method::PUT, inner.enc.resource(user, manager))
        };
        self.write(method, url, Some(&body)).await
    }

    async fn deactivate(&self, id: &str) -> Result<Result<(), OpFailure>, PlatformError> {
        let inner = &self.inner;
        let url = inner.url(&["Users", id]);
        if inner.caps.patch {
            return self.write(Method::PATCH, url, Some(&Encoder::deactivate())).await;
        }
        // No PATCH: PUT back what the platform holds, with active = false.
        let r = match inner.call(&self.ctx, Method::GET, url.clone(), None, true).await {
            Ok(r) => r,
            Err(CallError::Stop(e)) => return Err(e),
            Err(CallError::Failed { status, message, .. }) => return Self::fail(status, message),
        };
        if r.status != 200 {
            return Self::fail(Some(r.status), format!("GET {url}: {}", scim_error(r.status, &r.body)));
        }
        let mut body = r.body;
        if let Some(o) = body.as_object_mut() {
            o.remove("meta");
            o.insert("active".into(), json!(false));
        }
        self.write(Method::PUT, url, Some(&body)).await
    }

    async fn delete(&self, id: &str) -> Result<Result<(), OpFailure>, PlatformError> {
        let url = self.inner.url(&["Users", id]);
        match self.inner.call(&self.ctx, Method::DELETE, url.clone(), None, true).await {
            // Already gone (deleted by hand, or our earlier attempt went through): done.
            Ok(r) if (200..300).contains(&r.status) || r.status == 404 => Ok(Ok(())),
            Ok(r) => Self::fail(Some(r.status), format!("DELETE {url}: {}", scim_error(r.status, &r.body))),
            Err(CallError::Stop(e)) => Err(e),
            Err(CallError::Failed { status, message, .. }) => Self::fail(status, message),
        }
    }

    /// An idempotent write (PATCH/PUT): retried as needed.
    async fn write(&self, method: Method, url: url::Url, body: Option<&Value>) -> Result<Result<(), OpFailure>, PlatformError> {
        match self.inner.call(&self.ctx, method.clone(), url.clone(), body, true).await {
            Ok(r) if (200..300).contains(&r.status) => Ok(Ok(())),
            Ok(r) if r.status == 404 => Self::fail(
                Some(404),
                format!(
                    "{method} {url}: the user no longer exists on the platform (deleted there?); remove it from the state or let the next run create it"
                ),
            ),
            Ok(r) => Self::fail(Some(r.status), format!("{method} {url}: {}", scim_error(r.status, &r.body))),
            Err(CallError::Stop(e)) => Err(e),
            Err(CallError::Failed { status, message, .. }) => Self::fail(status, message),
        }
    }

    /// One /Bulk operation for `op`, or None when it needs no request (nothing changed) or
    /// cannot go in a bulk (deactivate without PATCH needs a GET first).
    fn bulk_op(&self, op: &Op, bulk_id: &str) -> Option<Value> {
        let inner = &self.inner;
        match op {
            Op::Create { user } => {
                let (manager, _) = self.manager(user);
                Some(json!({"method": "POST", "path": "/Users", "bulkId": bulk_id, "data": inner.enc.resource(user, manager.as_deref())}))
            }
            Op::Update { platform_id, user, adopt, previous } => {
                let (manager, _) = self.manager(user);
                let path = format!("/Users/{platform_id}");
                if inner.caps.patch {
                    let prev_m = previous.as_deref().and_then(|p| self.previous_manager(p));
                    let prev = if *adopt { None } else { previous.as_deref().map(|p| (p, prev_m.as_deref())) };
                    let p = inner.enc.patch(user, manager.as_deref(), prev)?;
                    Some(json!({"method": "PATCH", "path": path, "bulkId": bulk_id, "data": p}))
                } else {
                    Some(json!({"method": "PUT", "path": path, "bulkId": bulk_id, "data": inner.enc.resource(user, manager.as_deref())}))
                }
            }
            Op::Deactivate { platform_id, .. } if inner.caps.patch => {
                Some(json!({"method": "PATCH", "path": format!("/Users/{platform_id}"), "bulkId": bulk_id, "data": Encoder::deactivate()}))
            }
            Op::Deactivate { .. } => None,
            Op::Delete { platform_id, .. } => Some(json!({"method": "DELETE", "path": format!("/Users/{platform_id}"), "bulkId": bulk_id})),
        }
    }

    /// Sends one bulk request and reports each operation by its own status. Returns the
    /// operations to send alone (retriable failures, 409 adoptions, an unreadable answer).
    async fn bulk(&self, batch: Vec<(Op, Value)>) -> Result<Vec<Pending>, PlatformError> {
        let inner = &self.inner;
        let url = inner.url(&["Bulk"]);
        let body = json!({"schemas": [BULK_REQUEST], "Operations": batch.iter().map(|(_, v)| v).collect::<Vec<_>>()});
        let resp = match inner.call(&self.ctx, Method::POST, url.clone(), Some(&body), false).await {
            Ok(r) if r.status == 200 => r,
            Ok(r) => {
                // Refused as a whole (413, 400…): nothing applied; each goes alone.
                tracing::warn!(%url, "bulk request refused ({}); sending its {} operations one by one", scim_error(r.status, &r.body), batch.len());
                return Ok(batch.into_iter().map(|(op, _)| (op, Start::Fresh)).collect());
            }
            Err(CallError::Stop(e)) => return Err(e),
            Err(CallError::Failed { message, maybe_applied, .. }) => {
                tracing::warn!(%url, "bulk request failed ({message}); sending its {} operations one by one", batch.len());
                return Ok(batch.into_iter().map(|(op, _)| (op, Start::unknown_if(maybe_applied))).collect());
            }
        };
        let results = resp.body["Operations"].as_array().cloned().unwrap_or_default();
        let by_bulk_id: HashMap<&str, &Value> = results.iter().filter_map(|r| r["bulkId"].as_str().map(|b| (b, r))).collect();
        let mut left = Vec::new();
        let n_batch = batch.len();
        for (i, (op, v)) in batch.into_iter().enumerate() {
            // By bulkId; by position only when the server answered every operation.
            let r = v["bulkId"]
                .as_str()
                .and_then(|b| by_bulk_id.get(b).copied())
                .or_else(|| (results.len() == n_batch).then(|| results.get(i)).flatten());
            let Some(r) = r else {
                left.push((op, Start::Unknown));
                continue;
            };
            let Some(status) = status_of(&r["status"]) else {
                left.push((op, Start::Unknown));
                continue;
            };
            let external_id = op.external_id().to_string();
            let location = r["location"].as_str();
            let result = match (&op, status) {
                (Op::Create { .. }, 200..=299) => {
                    match r["response"]["id"].as_str().map(str::to_string).or_else(|| location.and_then(id_from_location)) {
                        Some(id) => Ok(Applied { platform_id: id, note: None }),
                        None => {
                            left.push((op, Start::Unknown));
                            continue;
                        }
                    }
                }
                (Op::Create { .. }, 409) => {
                    left.push((op, Start::Adopt));
                    continue;
                }
                (Op::Update { platform_id, .. } | Op::Deactivate { platform_id, .. } | Op::Delete { platform_id, .. }, 200..=299) => {
                    Ok(Applied { platform_id: platform_id.clone(), note: None })
                }
                (Op::Delete { platform_id, .. }, 404) => Ok(Applied { platform_id: platform_id.clone(), note: None }),
                (_, 401 | 403) => {
                    return Err(PlatformError::Unauthorized {
                        status,
                        url: url.to_string(),
                        detail: scim_error(status, &r["response"]),
                        env: inner.auth.source(),
                    });
                }
                (_, s) => match inner.policy.for_status(s, None) {
                    Verdict::Retry { maybe_applied, .. } => {
                        left.push((op, Start::unknown_if(maybe_applied)));
                        continue;
                    }
                    Verdict::Final => Err(OpFailure {
                        status: Some(s),
                        message: format!(
                            "user {external_id}: {} {} in bulk: {}",
                            v["method"].as_str().unwrap_or(""),
                            v["path"].as_str().unwrap_or(""),
                            scim_error(s, &r["response"])
                        ),
                    }),
                },
            };
            if let (Op::Create { user }, Ok(a)) = (&op, &result) {
                // Judge by what was sent: the manager may have been created by this very
                // bulk request since, so asking `self.manager` now would say "linked".
                let sent_manager = !v["data"][encode::ENTERPRISE]["manager"].is_null();
                let note =
                    user.attributes.get(MANAGER_ID).filter(|m| !m.is_empty() && !sent_manager).map(|m| {
                        format!("manager {m} was not on the platform yet when this user was created; {}", super::MANAGER_LEFT_UNSET)
                    });
                let a = Applied { platform_id: a.platform_id.clone(), note };
                self.report(Outcome { result: Ok(a), op }).await;
            } else {
                self.report(Outcome { result, op }).await;
            }
        }
        Ok(left)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create(id: &str, manager: Option<&str>) -> Op {
        let mut attributes = crate::model::Attributes::new();
        if let Some(m) = manager {
            attributes.insert(MANAGER_ID, m);
        }
        Op::Create {
            user: Box::new(User {
                external_id: id.into(),
                email: None,
                employee_id: Some(id.into()),
                first_name: "F".into(),
                last_name: "L".into(),
                language: "en".into(),
                active: true,
                attributes,
            }),
        }
    }

    fn ids(waves: &[Vec<Op>]) -> Vec<Vec<&str>> {
        waves.iter().map(|w| w.iter().map(|o| o.external_id()).collect()).collect()
    }

    #[test]
    fn managers_are_created_before_their_reports() {
        let waves = manager_waves(vec![
            create("c", Some("b")),
            create("b", Some("a")),
            create("a", None),
            create("x", Some("outside")),
            create("loop1", Some("loop2")),
            create("loop2", Some("loop1")),
        ]);
        assert_eq!(ids(&waves), vec![vec!["a", "x", "loop1", "loop2"], vec!["b"], vec!["c"]]);
    }

    #[test]
    fn manager_depths_match_walking_each_chain_and_stay_linear() {
        // Random managers, as in gen_hris.py: long chains into cycles. Compared with the
        // plain definition (walk up from each person) on 2,000 people, then run on 200,000,
        // which the quadratic walk took minutes for.
        let mut seed = 7u64;
        let mut rnd = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let people = |n: u64, rnd: &mut dyn FnMut(u64) -> u64| -> Vec<Op> {
            (0..n)
                .map(|i| {
                    let m = format!("E{}", rnd(n + n / 10)); // some managers are not created in this push
                    create(&format!("E{i}"), if i % 50 == 0 { None } else { Some(&m) })
                })
                .collect()
        };
        let small = people(2_000, &mut rnd);
        let manager_of: HashMap<&str, &str> = small
            .iter()
            .filter_map(|o| match o {
                Op::Create { user } => user.attributes.get(MANAGER_ID).map(|m| (o.external_id(), m)),
                _ => None,
            })
            .collect();
        let naive = |id: &str| {
            let (mut d, mut cur, mut seen) = (0, id, std::collections::HashSet::new());
            while let Some(m) = manager_of.get(cur).filter(|m| small.iter().any(|o| o.external_id() == **m)) {
                if !seen.insert(cur) {
                    return 0;
                }
                d += 1;
                cur = m;
            }
            d
        };
        let want: Vec<usize> = small.iter().map(|o| naive(o.external_id())).collect();
        assert_eq!(manager_depths(&small), want);
        assert!(want.iter().any(|&d| d > 0) && want.contains(&0));

        let large = people(200_000, &mut rnd);
        let t = std::time::Instant::now();
        assert_eq!(manager_depths(&large).len(), 200_000);
        assert!(t.elapsed() < std::time::Duration::from_secs(20), "linear, not a walk per person: {:?}", t.elapsed());
    }

    #[test]
    fn location_ids_and_filters() {
        assert_eq!(id_from_location("http://h/v2/Users/abc").as_deref(), Some("abc"));
        assert_eq!(id_from_location("http://h/v2/Users/abc/").as_deref(), Some("abc"));
        assert_eq!(filter_literal(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(status_of(&json!("201")), Some(201));
        assert_eq!(status_of(&json!(409)), Some(409));
    }
}
