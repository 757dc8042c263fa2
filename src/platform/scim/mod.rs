//! SCIM 2.0 client (RFC 7643/7644): users, the enterprise extension, /Bulk when offered,
//! bounded concurrency otherwise, retries for 429/5xx/timeouts, adoption on 409.
//!
//! Layout, one job per file: `discovery` (what the server offers, read at connect),
//! `listing` (existing users, lookups by filter), `groups` (SCIM Groups for `[groups]`), `writes` (one operation: POST, PATCH,
//! PUT, DELETE, adoption), `bulk` (/Bulk batches), `waves` (managers created before their
//! reports), `error` (SCIM error bodies → messages), `encode` (User → JSON), `retry` (which
//! failures may pass), `auth` (credentials). This file holds the client, one request with
//! its retries (`Inner::call`), and the orchestration of one push (`Push`).

mod auth;
mod bulk;
mod discovery;
mod encode;
pub use encode::{is_custom, is_enterprise};
mod error;
mod groups;
mod ids;
mod lenient;
mod listing;
pub mod retry;
mod waves;
mod wire;
mod writes;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;

use self::auth::Auth;
pub use self::discovery::{BulkLimits, Capabilities};
use self::encode::Encoder;
use self::error::ScimError;
pub(crate) use self::error::transport_detail;
pub use self::groups::{FoundGroup, GroupWrite};
pub use self::listing::Account;
use self::retry::{Transient, transient_error, transient_status};
use super::{ManagerLink, OpOutcome, Platform, PlatformError};
use crate::config;
use crate::model::{Str, User};
use crate::plan::{Existing, Op, OpKind};
use crate::retry::{Budget, Decision, GiveUp, Policy};

pub struct ScimClient {
    inner: Arc<Inner>,
    /// `[groups]`: the server refused a member removal by filter this run (`groups`).
    groups_remove_by_value: std::sync::atomic::AtomicBool,
}

struct Inner {
    http: reqwest::Client,
    base: url::Url,
    auth: Auth,
    policy: Policy,
    caps: Capabilities,
    enc: Encoder,
    max_concurrency: usize,
    /// Accounts of other connectors' people a create may meet on a 409: platform id →
    /// (connector, external id). Never adopted (`writes::adopt`); `sync` sets them.
    claimed: HashMap<String, (String, String)>,
    /// How the connector compares ids: a 409's account with the same externalId spelt
    /// otherwise is this person's only under it (`writes::adopt`).
    id_rule: crate::model::IdRule,
    /// The connector this client pushes for, named in what a 409 conflict advises.
    connector: String,
    /// What every run sending to this target shares (`platform::targets`).
    limiter: Arc<crate::platform::targets::Limiter>,
    /// Whether a 409's partial match (`plan::matching::Verdict::Partial`) may be adopted:
    /// only in a run a person let past the safeguards (`approve`, `--allow-mass-change`).
    adopt_partial: bool,
    /// `sync.rehire`: whether a 409's dormant account (`Verdict::Dormant`: inactive, kept by
    /// the platform after a delete) is reused or reported.
    rehire: crate::plan::settings::Rehire,
}

/// A final HTTP answer (2xx, or a 4xx the caller reads).
struct Resp {
    status: u16,
    body: Vec<u8>,
    location: Option<String>,
    /// The `ETag` header: the version of the resource answered (RFC 7644 §3.14).
    etag: Option<String>,
}

impl Resp {
    fn success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    fn json<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }

    /// "HTTP 400 invalidValue: detail", from the SCIM error in the body if there is one.
    fn error_message(&self) -> String {
        ScimError::read(&self.body).message(self.status)
    }
}

enum CallError {
    /// Stops the push: credentials refused, or the run's retry budget spent.
    Stop(PlatformError),
    /// This request failed; `maybe_applied` when the server may have done it anyway.
    Failed { status: Option<u16>, message: String, maybe_applied: bool },
}

impl From<PlatformError> for CallError {
    fn from(e: PlatformError) -> Self {
        CallError::Stop(e)
    }
}

/// One attempt of a request, before retrying is decided.
enum Answer {
    Final(Resp),
    /// 401 or 403: stops the push, unless a fresh OAuth2 token helps.
    Unauthorized(Resp),
    Failed(FailedAttempt),
    Stop(PlatformError),
}

/// An attempt that failed: what the server or the transport said, and whether it may pass.
struct FailedAttempt {
    status: Option<u16>,
    message: String,
    transient: Option<Transient>,
}

/// What every request of one piece of work (a push, a listing, connecting) shares: the
/// run's retry budget, how many operations were applied, and the error that stops it. A
/// push's classes of operation (`OpClass`) each have a view of their own (`class`): the
/// same count and stop, a budget of their own, and their own "spent" mark.
struct Shared {
    budget: Budget,
    applied: Arc<AtomicU64>,
    stop: Arc<Mutex<Option<PlatformError>>>,
    /// For a class's view: set (with the last failure) once its retries are spent; the
    /// class's remaining operations fail unsent, the others go on.
    spent: Option<Mutex<Option<String>>>,
}

impl Shared {
    fn new(budget: &Budget) -> Shared {
        Shared { budget: budget.clone(), applied: Arc::default(), stop: Arc::default(), spent: None }
    }

    /// A view for one class of operations: its own budget (`Budget::class`).
    fn class(&self) -> Shared {
        Shared { budget: self.budget.class(), applied: self.applied.clone(), stop: self.stop.clone(), spent: Some(Mutex::new(None)) }
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

    fn take_stop(&self) -> Option<PlatformError> {
        self.stop.lock().ok().and_then(|mut s| s.take())
    }

    /// The budget is spent. A class's: this operation fails and the class's others fail
    /// unsent (`spent_by`), while the other classes go on. The run's (a listing, a lookup
    /// outside a push): the work stops with what was applied recorded.
    fn exhausted(&self, why: GiveUp, last: &str) -> CallError {
        let detail = format!("{why}; last: {last}");
        match &self.spent {
            Some(spent) => {
                if let Ok(mut s) = spent.lock() {
                    s.get_or_insert_with(|| detail.clone());
                }
                CallError::Failed { status: None, message: detail, maybe_applied: false }
            }
            None => CallError::Stop(PlatformError::RetriesExhausted { detail, done: self.applied.load(Ordering::Acquire) }),
        }
    }

    /// Why this class's retries are spent, once they are.
    fn spent_by(&self) -> Option<String> {
        self.spent.as_ref().and_then(|s| s.lock().ok().and_then(|s| s.clone()))
    }
}

impl Inner {
    fn url(&self, segments: &[&str]) -> url::Url {
        let mut u = self.base.clone();
        if let Ok(mut p) = u.path_segments_mut() {
            p.pop_if_empty().extend(segments);
        }
        u
    }

    /// Sends one request, retrying what `retry` says may pass. With `blind_retry` false (a
    /// create, a bulk), a failure that may have been applied is returned to the caller
    /// instead, who must check before sending again.
    async fn call(&self, sh: &Shared, method: Method, url: url::Url, body: Option<&Value>, blind_retry: bool) -> Result<Resp, CallError> {
        self.call_if(sh, method, url, body, blind_retry, None).await
    }

    /// `call` with a body already written as JSON (`wire`, the bulk batches): sent as it is,
    /// and shared, not copied, by the retries.
    async fn call_raw(&self, sh: &Shared, method: Method, url: url::Url, body: Bytes, blind_retry: bool) -> Result<Resp, CallError> {
        self.send(sh, method, url, Some(body), blind_retry, None).await
    }

    /// `call`, made conditional on the resource's version (`If-Match`) when one is given: a
    /// write based on a read of that version (`writes::read_merge_write`).
    async fn call_if(
        &self,
        sh: &Shared,
        method: Method,
        url: url::Url,
        body: Option<&Value>,
        blind_retry: bool,
        if_match: Option<&str>,
    ) -> Result<Resp, CallError> {
        let bytes = body.map(|b| Bytes::from(b.to_string().into_bytes()));
        self.send(sh, method, url, bytes, blind_retry, if_match).await
    }

    /// The attempts of one request, as `call_if` says.
    async fn send(
        &self,
        sh: &Shared,
        method: Method,
        url: url::Url,
        bytes: Option<Bytes>,
        blind_retry: bool,
        if_match: Option<&str>,
    ) -> Result<Resp, CallError> {
        let mut attempt = 0u32;
        let mut reauthed = false;
        loop {
            attempt += 1;
            let failed = match self.attempt(&method, &url, bytes.as_ref(), if_match).await {
                Answer::Final(r) => return Ok(r),
                Answer::Stop(e) => return Err(CallError::Stop(e)),
                Answer::Unauthorized(r) => {
                    // An OAuth2 token may have been revoked early: one fresh token.
                    if r.status == 401 && !reauthed && self.auth.invalidate().await {
                        reauthed = true;
                        continue;
                    }
                    return Err(CallError::Stop(PlatformError::Unauthorized {
                        status: r.status,
                        url: url.to_string(),
                        detail: r.error_message(),
                        env: self.auth.source(),
                    }));
                }
                Answer::Failed(f) => f,
            };
            self.retry_wait(sh, attempt, failed, blind_retry).await?;
        }
    }

    /// One attempt: a token, the request, the whole answer.
    async fn attempt(&self, method: &Method, url: &url::Url, body: Option<&Bytes>, if_match: Option<&str>) -> Answer {
        let authorization = match self.auth.header(&self.http).await {
            Ok(a) => a,
            // The token endpoint is down: nothing was sent, so the same rules apply.
            Err(PlatformError::Unreachable { url: token_url, detail }) => {
                return Answer::Failed(FailedAttempt {
                    status: None,
                    message: format!("{method} {url}: no token from {token_url}: {detail}"),
                    transient: Some(Transient { hint: None, maybe_applied: false }),
                });
            }
            Err(e) => return Answer::Stop(e),
        };
        let mut rb = self
            .http
            .request(method.clone(), url.clone())
            .header(reqwest::header::AUTHORIZATION, authorization)
            .header(reqwest::header::ACCEPT, "application/scim+json, application/json");
        if let Some(b) = body {
            rb = rb.header(reqwest::header::CONTENT_TYPE, "application/scim+json").body(b.clone());
        }
        if let Some(version) = if_match {
            rb = rb.header(reqwest::header::IF_MATCH, version);
        }
        // The target's shared limits: a Retry-After pause, and its requests in flight.
        let _in_flight = self.limiter.request().await;
        let resp = match rb.send().await {
            Ok(r) => r,
            Err(e) => {
                let message = format!("{method} {url}: {}", transport_detail(&e));
                return Answer::Failed(FailedAttempt { status: None, message, transient: transient_error(&e) });
            }
        };
        let status = resp.status().as_u16();
        let header = |n: reqwest::header::HeaderName| resp.headers().get(n).and_then(|v| v.to_str().ok()).map(str::to_string);
        let (retry_after, location, etag) =
            (header(reqwest::header::RETRY_AFTER), header(reqwest::header::LOCATION), header(reqwest::header::ETAG));
        let body = match resp.bytes().await {
            Ok(b) => Vec::from(b),
            Err(e) => {
                let message = format!("{method} {url}: reading the answer failed: {}", transport_detail(&e));
                return Answer::Failed(FailedAttempt { status: Some(status), message, transient: transient_error(&e) });
            }
        };
        let r = Resp { status, body, location, etag };
        if status == 401 || status == 403 {
            return Answer::Unauthorized(r);
        }
        match transient_status(status, retry_after.as_deref()) {
            None => Answer::Final(r),
            Some(t) => Answer::Failed(FailedAttempt {
                status: Some(status),
                message: format!("{method} {url}: {}", r.error_message()),
                transient: Some(t),
            }),
        }
    }

    /// Whether attempt `attempt` gets a successor (`crate::retry` decides, from the run's
    /// budget), and waits for it; Err is the failure to return instead.
    async fn retry_wait(&self, sh: &Shared, attempt: u32, failed: FailedAttempt, blind_retry: bool) -> Result<(), CallError> {
        let FailedAttempt { status, message, transient } = failed;
        let Some(t) = transient else {
            return Err(CallError::Failed { status, message, maybe_applied: false });
        };
        if t.maybe_applied && !blind_retry {
            return Err(CallError::Failed { status, message, maybe_applied: true });
        }
        if let Some(hint) = t.hint {
            // Said to this client, meant for every client: the whole target waits.
            self.limiter.pause(hint.min(self.policy.max_hint));
        }
        match self.policy.next(attempt, t.hint, &sh.budget) {
            Decision::Retry(_) if !self.limiter.take_retry() => {
                Err(sh.exhausted(GiveUp::TargetBudget(self.limiter.retries_per_minute()), &message))
            }
            Decision::Retry(wait) => {
                tracing::debug!(attempt, ?wait, "retrying: {message}");
                tokio::time::sleep(wait).await;
                Ok(())
            }
            Decision::GiveUp(why @ GiveUp::Budget(_)) => Err(sh.exhausted(why, &message)),
            Decision::GiveUp(why) => {
                Err(CallError::Failed { status, message: format!("{message} ({why})"), maybe_applied: t.maybe_applied })
            }
        }
    }
}

impl ScimClient {
    /// Builds a client: reads the credentials from the environment (never logged) and the
    /// server's capabilities, so a wrong URL or token fails here, before any write.
    /// Connecting comes before the run knows its work, so its retries have a budget of
    /// their own (`Budget::default()`, the run's base).
    pub async fn connect(cfg: &config::Platform) -> Result<ScimClient, PlatformError> {
        let limiter = Arc::new(crate::platform::targets::Limiter::new("platform", cfg.max_concurrency));
        ScimClient::build(cfg, limiter, true).await
    }

    /// A client of a connector's target, sharing its limits and what discovery found with
    /// every other run of the process that sends to it (`platform::targets`). Discovery is
    /// read by the first run only (until `Targets::refresh`); the credentials are then
    /// checked by the first request.
    pub async fn connect_to(target: &config::Target, targets: &crate::platform::targets::Targets) -> Result<ScimClient, PlatformError> {
        ScimClient::build(&target.platform, targets.limiter(target), false).await
    }

    async fn build(
        cfg: &config::Platform,
        limiter: Arc<crate::platform::targets::Limiter>,
        fresh: bool,
    ) -> Result<ScimClient, PlatformError> {
        let auth = Auth::from_config(&cfg.auth)?;
        let http = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .connect_timeout(cfg.timeout.min(Duration::from_secs(10)))
            .pool_max_idle_per_host(cfg.max_concurrency.max(1))
            .user_agent(concat!("rostersync/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| PlatformError::Config(format!("cannot build the HTTP client: {}", transport_detail(&e))))?;
        let cached = if fresh { None } else { limiter.discovered() };
        let mut inner = Inner {
            http,
            base: cfg.base_url.clone(),
            auth,
            policy: Policy::SCIM,
            caps: Capabilities::default(),
            enc: Encoder { custom_schema: cfg.custom_schema.clone(), custom_offered: true, enterprise_offered: true, defined: None },
            max_concurrency: cfg.max_concurrency.max(1),
            claimed: HashMap::new(),
            id_rule: crate::model::IdRule::default(),
            connector: "NAME".into(),
            limiter,
            adopt_partial: false,
            rehire: crate::plan::settings::Rehire::default(),
        };
        inner.caps = match cached {
            Some(caps) => caps,
            None => {
                let caps = inner.discover(&Shared::new(&Budget::default()), cfg.bulk).await?;
                tracing::debug!(caps = ?caps, "SCIM platform capabilities");
                inner.limiter.set_discovered(caps.clone());
                caps
            }
        };
        inner.enc.custom_offered = inner.caps.custom_schema;
        inner.enc.enterprise_offered = inner.caps.enterprise;
        inner.enc.defined = inner.caps.schemas.clone();
        Ok(ScimClient { inner: Arc::new(inner), groups_remove_by_value: Default::default() })
    }

    /// What the server offers, as read at connect.
    pub fn capabilities(&self) -> &Capabilities {
        &self.inner.caps
    }

    /// Accounts bound to other connectors' people (platform id → (connector, external
    /// id)): a 409 that finds one is a conflict, never an adoption. Set before `apply`.
    pub fn set_claimed(&mut self, claimed: HashMap<String, (String, String)>) {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.claimed = claimed;
        }
    }

    /// The connector this client pushes for (named in a 409 conflict's advice).
    pub fn set_connector(&mut self, name: &str) {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.connector = name.to_string();
        }
    }

    /// The connector's id rule (`Mapping::id_rule`), for the binding rule of a 409.
    pub fn set_id_rule(&mut self, rule: crate::model::IdRule) {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.id_rule = rule;
        }
    }

    /// Every account on the platform with the attributes it holds (a reconcile run reads
    /// them to see accounts deleted or edited by hand). Its retries take from `budget`.
    pub async fn accounts(&self, budget: &Budget) -> Result<Vec<Account>, PlatformError> {
        self.inner.list_accounts(&Shared::new(budget)).await
    }

    /// The attribute paths some of these accounts hold: what this server keeps.
    pub fn kept_paths(&self, accounts: &[Account]) -> std::collections::HashSet<String> {
        let mut kept = std::collections::HashSet::new();
        for a in accounts {
            self.inner.enc.held_paths(&a.resource, &mut kept);
        }
        kept
    }

    /// Whether `account` differs from what we map for `user` (edited by hand), in the
    /// attributes this server keeps (`kept_paths`). `manager` is the manager's platform id.
    pub fn drifted(&self, user: &User, manager: Option<&str>, account: &Account, kept: &std::collections::HashSet<String>) -> bool {
        self.inner.enc.drifted(user, manager, &account.resource, kept)
    }

    /// Whether the server offers the enterprise extension on its users (it is sent only then).
    pub fn enterprise_offered(&self) -> bool {
        self.inner.enc.enterprise_offered
    }

    /// Of the mapped attributes `names` (of `[attributes]`, and `employee_id`), those not
    /// sent because the server's `/Schemas` does not define them.
    pub fn undefined_attributes<'a>(&self, names: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
        names.into_iter().filter(|n| self.inner.enc.undefined(n)).collect()
    }

    /// Whether a 409's partial match may be adopted: a run a person approved.
    pub fn set_adopt_partial(&mut self, approved: bool) {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.adopt_partial = approved;
        }
    }

    /// The connector's `sync.rehire`, for a 409's dormant account (`writes::adopt`).
    pub fn set_rehire(&mut self, rehire: crate::plan::settings::Rehire) {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.rehire = rehire;
        }
    }

    /// Overrides how one request is retried (tests, benchmarks); `Policy::SCIM` otherwise.
    pub fn set_retry_policy(&mut self, policy: Policy) {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.policy = policy;
        }
    }
}

impl Platform for ScimClient {
    async fn existing_users(&self, budget: &Budget) -> Result<Vec<Existing>, PlatformError> {
        self.inner.list_users(&Shared::new(budget)).await
    }

    async fn apply(
        &self,
        ops: Vec<Op>,
        known: HashMap<String, String>,
        budget: &Budget,
        outcomes: mpsc::Sender<OpOutcome>,
    ) -> Result<(), PlatformError> {
        let shared = Shared::new(budget);
        let classes = [shared.class(), shared.class(), shared.class()];
        let push = Arc::new(Push {
            inner: self.inner.clone(),
            shared,
            classes,
            // Inline strings, a fast hash: a million of them in a first sync (a String
            // pair per person was two heap blocks each and SipHash).
            ids: Mutex::new(known.into_iter().map(|(k, v)| (Str::from(k), Str::from(v))).collect()),
            outcomes,
            fallback: writes::Fallback::default(),
            listed: tokio::sync::OnceCell::new(),
        });
        {
            let mut ids = push.ids();
            for op in &ops {
                if let Op::Update { platform_id, .. } | Op::Deactivate { platform_id, .. } | Op::Delete { platform_id, .. } = op {
                    ids.insert(op.external_id().into(), platform_id.as_str().into());
                }
            }
        }
        let (creates, rest) = creates_apart(ops);
        // Managers before the people they manage, so every create can name its manager.
        for wave in waves::manager_waves(creates) {
            push.phase(wave).await;
            if push.shared.stopped() {
                break;
            }
        }
        if !push.shared.stopped() {
            push.phase(deactivations_first(rest)).await;
        }
        match push.shared.take_stop() {
            Some(e) => Err(e),
            None => push.spent(),
        }
    }
}

/// Deactivations and deletions before updates: a leaver's access goes first, and however
/// the updates fare, they never keep a leaver active (each class has its own retries too).
/// One account gets one operation per run, so the order changes nothing else.
fn deactivations_first(mut ops: Vec<Op>) -> Vec<Op> {
    ops.sort_by_key(|o| OpClass::of(o) != OpClass::Deactivate);
    ops
}

/// A class of operation, with retries of its own in a push (`Shared::class`): one request
/// that keeps failing spends its class's retries, never its neighbours'. The managers'
/// second pass is a push of its own, with its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OpClass {
    Create,
    Update,
    Deactivate,
}

impl OpClass {
    fn of(op: &Op) -> OpClass {
        match op {
            Op::Create { .. } => OpClass::Create,
            Op::Update { .. } => OpClass::Update,
            Op::Deactivate { .. } | Op::Delete { .. } => OpClass::Deactivate,
        }
    }
}

impl std::fmt::Display for OpClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            OpClass::Create => "create",
            OpClass::Update => "update",
            OpClass::Deactivate => "deactivation",
        })
    }
}

/// external id → platform id.
use ids::Ids;

/// One `apply`: a plan's operations on their way to the platform.
struct Push {
    inner: Arc<Inner>,
    shared: Shared,
    /// Each class's view of `shared`, with its own retries (`OpClass` order).
    classes: [Shared; 3],
    /// external id → platform id: known users, plus those created or adopted so far.
    ids: Mutex<Ids>,
    outcomes: mpsc::Sender<OpOutcome>,
    /// Whether this run found PATCH refused, and has warned of dropped attributes.
    fallback: writes::Fallback,
    /// The platform's accounts, listed once by the first 409 the filters could not place.
    listed: tokio::sync::OnceCell<Vec<Existing>>,
}

/// Where an operation starts when it is sent alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Start {
    /// Never sent.
    Fresh,
    /// Sent, outcome unknown: a create is looked up by externalId before it is sent again.
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

impl Push {
    /// Runs a set of independent operations: in bulk batches when offered, else one
    /// request each; at most `max_concurrency` requests in flight.
    async fn phase(self: &Arc<Push>, ops: Vec<Op>) {
        if ops.is_empty() {
            return;
        }
        let sem = Arc::new(Semaphore::new(self.inner.max_concurrency));
        let single = match self.inner.caps.bulk {
            Some(limits) if ops.len() > 1 => self.send_bulks(ops, limits, &sem).await,
            _ => ops.into_iter().map(|o| (o, Start::Fresh)).collect(),
        };
        self.send_singles(single, &sem).await;
    }

    /// One request per operation, concurrently within the semaphore's permits.
    async fn send_singles(self: &Arc<Push>, single: Vec<Pending>, sem: &Arc<Semaphore>) {
        let mut set = JoinSet::new();
        for (op, start) in single {
            if self.shared.stopped() {
                break;
            }
            let permit = sem.clone().acquire_owned().await.expect("semaphore open");
            let push = self.clone();
            set.spawn(async move {
                let r = push.exec(op, start).await;
                drop(permit);
                match r {
                    Ok(o) => push.report(o).await,
                    Err(e) => push.shared.set_stop(e),
                }
            });
        }
        while let Some(r) = set.join_next().await {
            if let Err(e) = r {
                self.task_failed(e);
            }
        }
    }

    /// A task panicked or was cancelled: a bug, not the platform. Stop rather than lose an
    /// outcome silently.
    fn task_failed(&self, e: tokio::task::JoinError) {
        self.shared
            .set_stop(PlatformError::Protocol { url: self.inner.base.to_string(), detail: format!("an operation task failed: {e}") });
    }

    /// Sends an outcome as soon as it is known, and remembers created ids for managers.
    async fn report(&self, o: OpOutcome) {
        if let Ok(a) = &o.result {
            self.shared.applied.fetch_add(1, Ordering::AcqRel);
            if o.kind() != OpKind::Delete {
                self.ids().insert(o.external_id().into(), a.platform_id.as_str().into());
            }
        }
        // A closed receiver means the caller stopped listening; the writes stand.
        let _ = self.outcomes.send(o).await;
    }

    /// The view of the push an operation's requests use: its class's retries.
    fn class_of(&self, op: &Op) -> &Shared {
        &self.classes[OpClass::of(op) as usize]
    }

    /// After the push: the classes whose retries ran out, as the push's failure (every
    /// outcome is reported by then; the run fails, retriable, naming them).
    fn spent(&self) -> Result<(), PlatformError> {
        let spent: Vec<String> = [OpClass::Create, OpClass::Update, OpClass::Deactivate]
            .into_iter()
            .filter_map(|c| self.classes[c as usize].spent_by().map(|why| format!("{c}s: {why}")))
            .collect();
        if spent.is_empty() {
            return Ok(());
        }
        Err(PlatformError::RetriesExhausted { detail: spent.join("; "), done: self.shared.applied.load(Ordering::Acquire) })
    }

    /// The id map. A task that panicked while holding it (its panic is reported by
    /// `task_failed`) was inside one `insert` or `get`: the map is whole and every id in it
    /// is a real account, so the other tasks go on with it instead of panicking in turn.
    fn ids(&self) -> MutexGuard<'_, Ids> {
        self.ids.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The manager's platform id to send for `user`, and what the outcome says of it.
    fn manager_of(&self, user: &User) -> (Option<String>, ManagerLink) {
        let Some(m) = user.manager() else {
            return (None, ManagerLink::Absent);
        };
        match self.ids().get(m) {
            Some(id) => (Some(id.to_string()), ManagerLink::Linked),
            None => (None, ManagerLink::LeftUnset),
        }
    }

    /// The manager's platform id as the previous content had it (for a PATCH diff).
    fn previous_manager(&self, prev: &User) -> Option<String> {
        let m = prev.manager()?;
        self.ids().get(m).map(Str::to_string)
    }
}
/// The creates and the other operations, each in their order. A plan lists its creates
/// first: the rest is then cut off the end, and the million creates of a first sync are not
/// copied into a second list beside the first.
fn creates_apart(mut ops: Vec<Op>) -> (Vec<Op>, Vec<Op>) {
    let is_create = |o: &Op| matches!(o, Op::Create { .. });
    let n = ops.iter().take_while(|o| is_create(o)).count();
    if ops[n..].iter().any(is_create) {
        return ops.into_iter().partition(is_create);
    }
    let rest = ops.split_off(n);
    (ops, rest)
}

#[cfg(test)]
mod tests {
    use super::*;
    fn create(id: &str) -> Op {
        waves::tests::create(id, None)
    }

    fn deactivate(id: &str) -> Op {
        Op::Deactivate { platform_id: format!("p-{id}"), external_id: id.into() }
    }

    #[test]
    fn creates_are_taken_apart_from_the_rest_in_order_either_way() {
        let ids = |ops: &[Op]| ops.iter().map(|o| o.external_id().to_string()).collect::<Vec<_>>();
        let (c, r) = creates_apart(vec![create("a"), create("b"), deactivate("x"), deactivate("y")]);
        assert_eq!((ids(&c), ids(&r)), (vec!["a".to_string(), "b".into()], vec!["x".to_string(), "y".into()]));
        let (c, r) = creates_apart(vec![deactivate("x"), create("a"), deactivate("y"), create("b")]);
        assert_eq!((ids(&c), ids(&r)), (vec!["a".to_string(), "b".into()], vec!["x".to_string(), "y".into()]));
        let (c, r) = creates_apart(Vec::new());
        assert!(c.is_empty() && r.is_empty());
    }
}
