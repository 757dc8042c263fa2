//! One operation sent on its own: create (POST, with the lookup that keeps a create whose
//! answer was lost from happening twice), adoption after a 409, update (PATCH of what
//! changed), deactivation (PATCH), deletion.
//!
//! Where the server has or refuses PATCH (501, 405, or 400 invalidPath/noTarget: a server
//! that patches only some attributes), an update or deactivation becomes read-merge-write:
//! GET the user, merge what we map into it, PUT it back. Everything we do not map (phone
//! numbers, groups, someone else's attributes) goes back as it was.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};

use reqwest::Method;
use serde_json::{Map, Value};

use super::encode::Encoder;
use super::error::ScimError;
use super::listing::{UserResource, id_from_location};
use super::{CallError, OpClass, Push, Resp, Shared, Start};
use crate::model::User;
use crate::plan::matching::{self, Verdict};
use crate::plan::settings::Rehire;
use crate::plan::{Existing, Op};
use crate::platform::{Applied, Healed, OpFailure, OpOutcome, PlatformError};
use crate::retry::{Decision, GiveUp};

/// The answer to one write that did not stop the push (a stop is the `PlatformError`
/// around it).
pub(super) enum Written {
    /// The platform holds it, under this id.
    Applied { platform_id: String, adopted: bool },
    /// The platform refused it, or its outcome could not be known: this user fails, the
    /// others go on, and the next run tries again.
    Refused(OpFailure),
}

impl Written {
    fn applied(platform_id: &str) -> Written {
        Written::Applied { platform_id: platform_id.to_string(), adopted: false }
    }

    fn refused(status: Option<u16>, message: String) -> Written {
        Written::Refused(OpFailure { status, message })
    }

    /// A request that failed after its retries is this user's failure; a stop stops.
    fn from_call(e: CallError) -> Result<Written, PlatformError> {
        match e {
            CallError::Stop(e) => Err(e),
            CallError::Failed { status, message, .. } => Ok(Written::refused(status, message)),
        }
    }
}

impl Push {
    pub(super) async fn exec(&self, op: Op, start: Start) -> Result<OpOutcome, PlatformError> {
        let sh = self.class_of(&op);
        // The class used its retries: its remaining operations fail unsent (the server kept
        // failing them), the other classes go on with theirs.
        if let Some(why) = sh.spent_by() {
            let message = format!("user {}: not sent: this push's {} retries are spent ({why})", op.external_id(), OpClass::of(&op));
            return Ok(OpOutcome { result: Err(OpFailure { status: None, message }), op });
        }
        let (written, manager) = match &op {
            Op::Create { user } => {
                let (m, link) = self.manager_of(user);
                let w = match start {
                    Start::Adopt => self.adopt(sh, user, m.as_deref()).await?,
                    _ => self.create(sh, user, m.as_deref(), start == Start::Unknown).await?,
                };
                (w, link)
            }
            Op::Update { platform_id, user, adopt, previous } => {
                let (m, link) = self.manager_of(user);
                // An adopted user's content is unknown: replace everything we map.
                let prev = if *adopt { None } else { previous.as_deref().map(|p| (p, self.previous_manager(p))) };
                let prev = prev.as_ref().map(|(u, m)| (*u, m.as_deref()));
                (self.write_content(sh, platform_id, user, m.as_deref(), prev).await?, link)
            }
            Op::Deactivate { platform_id, .. } => (self.deactivate(sh, platform_id).await?, crate::platform::ManagerLink::Absent),
            Op::Delete { platform_id, .. } => (self.delete(sh, platform_id).await?, crate::platform::ManagerLink::Absent),
        };
        let (written, healed) = match written {
            Written::Refused(OpFailure { status: Some(404), .. }) if matches!(op, Op::Update { .. } | Op::Deactivate { .. }) => {
                self.heal(sh, &op).await?
            }
            w => (w, None),
        };
        let result = match written {
            Written::Applied { platform_id, adopted } => Ok(Applied { platform_id, manager, adopted, healed }),
            Written::Refused(mut f) => {
                f.message = format!("user {}: {}", op.external_id(), f.message);
                Err(f)
            }
        };
        Ok(OpOutcome { result, op })
    }

    /// An update or deactivation answered 404: the account was deleted on the platform. An
    /// active person gets a new one (a POST, whose 409 adopts under the binding rule like any
    /// create); a leaver has nothing left to deactivate and is forgotten.
    async fn heal(&self, sh: &Shared, op: &Op) -> Result<(Written, Option<Healed>), PlatformError> {
        match op {
            Op::Update { user, platform_id, .. } if user.active => {
                tracing::info!(external_id = %user.external_id, platform_id, "account deleted on the platform; creating it again");
                let (m, _) = self.manager_of(user);
                let w = self.create(sh, user, m.as_deref(), false).await?;
                let healed = matches!(w, Written::Applied { .. }).then_some(Healed::Recreated);
                Ok((w, healed))
            }
            Op::Update { platform_id, .. } | Op::Deactivate { platform_id, .. } => {
                Ok((Written::applied(platform_id), Some(Healed::Forgotten)))
            }
            // Not sent here (`exec` heals updates and deactivations only).
            Op::Create { .. } | Op::Delete { .. } => Ok((Written::refused(Some(404), "HTTP 404: not found on the platform".into()), None)),
        }
    }

    /// POST a user. An unknown outcome (the connection dropped after sending) is looked up
    /// by externalId before sending again, so a user is never created twice.
    async fn create(&self, sh: &Shared, user: &User, manager: Option<&str>, lookup_first: bool) -> Result<Written, PlatformError> {
        let inner = &self.inner;
        let mut body = Vec::with_capacity(512);
        inner.enc.write_resource(user, manager, &mut body);
        let body = bytes::Bytes::from(body);
        let url = inner.url(&["Users"]);
        let mut check = lookup_first;
        let mut sends = 0u32;
        loop {
            if check && let Some(found) = self.created_before(sh, user, manager).await? {
                return Ok(found);
            }
            sends += 1;
            let r = match inner.call_raw(sh, Method::POST, url.clone(), body.clone(), false).await {
                Ok(r) => r,
                Err(CallError::Failed { maybe_applied: true, message, status }) => match inner.policy.next(sends, None, &sh.budget) {
                    Decision::Retry(wait) => {
                        tracing::debug!(external_id = %user.external_id, "create outcome unknown ({message}); looking it up before sending again");
                        check = true;
                        tokio::time::sleep(wait).await;
                        continue;
                    }
                    Decision::GiveUp(why @ GiveUp::Budget(_)) => return Written::from_call(sh.exhausted(why, &message)),
                    Decision::GiveUp(why) => return Ok(Written::refused(status, format!("{message} ({why})"))),
                },
                Err(e) => return Written::from_call(e),
            };
            return Ok(match r.status {
                409 => self.adopt(sh, user, manager).await?,
                _ if r.success() => match r
                    .json::<UserResource>()
                    .ok()
                    .and_then(|u| u.platform_id())
                    .or_else(|| r.location.as_deref().and_then(id_from_location))
                {
                    Some(platform_id) => Written::Applied { platform_id, adopted: false },
                    None => Written::refused(Some(r.status), format!("POST {url}: HTTP {} without the new user's id", r.status)),
                },
                _ => Written::refused(Some(r.status), format!("POST {url}: {}", r.error_message())),
            });
        }
    }

    /// A create whose outcome is unknown: the user it made, if it did. Most likely our own
    /// write; but it may be someone else's user with our externalId, so its content is
    /// made ours either way.
    async fn created_before(&self, sh: &Shared, user: &User, manager: Option<&str>) -> Result<Option<Written>, PlatformError> {
        match self.inner.find(sh, "externalId", &user.external_id).await {
            Ok(Some(id)) => Ok(Some(self.write_content(sh, &id, user, manager, None).await?)),
            Ok(None) => Ok(None),
            Err(CallError::Stop(e)) => Err(e),
            Err(CallError::Failed { status, message, .. }) => Ok(Some(Written::refused(
                status,
                format!(
                    "the create's outcome is unknown and looking it up failed ({message}); the next run adopts it by externalId if it was created"
                ),
            ))),
        }
    }

    /// After a 409: the user exists. Its candidates are looked up by externalId, userName
    /// and email (and, when the server's filters find none the rules accept, in a listing of
    /// the platform, read once per push); `plan::matching` judges them, not the filter. An
    /// exact match is made ours; a partial one (the id alone) only in an approved run; any
    /// other is someone else's, a conflict, left as it is. (Accounts of other connectors'
    /// people were kept from the create by `plan::settle`.)
    async fn adopt(&self, sh: &Shared, user: &User, manager: Option<&str>) -> Result<Written, PlatformError> {
        let rule = self.inner.id_rule;
        let candidates = match self.candidates(sh, user).await? {
            Ok(c) => c,
            Err(refused) => return Ok(refused),
        };
        let mut found = matching::best(user, &candidates, rule).map(|(a, v)| (a.clone(), v));
        if found.as_ref().is_none_or(|(_, v)| *v != Verdict::Exact) {
            // The filters may miss an account (a server comparing with case, one lacking a
            // filter): the listing decides, once per push.
            match self.listed(sh).await {
                Ok(all) => found = matching::best(user, all.iter(), rule).map(|(a, v)| (a.clone(), v)),
                Err(CallError::Stop(e)) => return Err(e),
                Err(CallError::Failed { status, message, .. }) => {
                    if found.is_none() {
                        let why = format!("the platform answered 409 (user exists) but listing its users to find it failed: {message}");
                        return Ok(Written::refused(status, why));
                    }
                }
            }
        }
        let Some((account, verdict)) = found else {
            return Ok(Written::refused(
                Some(409),
                format!(
                    "the platform answered 409 (already exists) but no user has externalId {:?}, or userName or email {:?}; another attribute must be unique on the platform — find the conflicting user there",
                    user.external_id,
                    user.user_name()
                ),
            ));
        };
        if let Some(refused) = self.refused_adoption(user, &account, verdict) {
            return Ok(refused);
        }
        if verdict == Verdict::Dormant {
            tracing::info!(
                external_id = %user.external_id,
                platform_id = %account.platform_id,
                previous = account.external_id.as_deref().unwrap_or_default(),
                "reusing an inactive account the platform kept with this person's login (a re-hire after a soft delete)"
            );
        }
        let id = account.platform_id;
        Ok(match self.write_content(sh, &id, user, manager, None).await? {
            Written::Applied { platform_id, .. } => Written::Applied { platform_id, adopted: true },
            refused => refused,
        })
    }

    /// The accounts a 409's lookups by filter hand back (externalId, userName, email), each
    /// once. A filter the server refuses (400: one it lacks) is skipped; any other failure
    /// is this person's (the inner Err).
    async fn candidates(&self, sh: &Shared, user: &User) -> Result<Result<Vec<Existing>, Written>, PlatformError> {
        let mut lookups = vec![("externalId", user.external_id.as_str()), ("userName", user.user_name())];
        if let Some(e) = user.email() {
            lookups.push(("emails.value", e));
        }
        let mut out: Vec<Existing> = Vec::new();
        for (attr, value) in lookups {
            match self.inner.find_accounts(sh, attr, value).await {
                Ok(found) => {
                    for a in found {
                        if !out.iter().any(|o| o.platform_id == a.platform_id) {
                            out.push(a);
                        }
                    }
                }
                Err(CallError::Stop(e)) => return Err(e),
                Err(CallError::Failed { status: Some(400 | 501), message, .. }) => {
                    tracing::debug!("the platform cannot filter on {attr} ({message}); a listing decides instead");
                }
                Err(CallError::Failed { status, message, .. }) => {
                    return Ok(Err(Written::refused(
                        status,
                        format!("the platform answered 409 (user exists) but looking the user up failed: {message}"),
                    )));
                }
            }
        }
        Ok(Ok(out))
    }

    /// Every account of the platform with what matching reads, listed once per push (a
    /// 409 the filters could not place is rare; a listing per 409 would not be).
    async fn listed(&self, sh: &Shared) -> Result<&[Existing], CallError> {
        let all = self
            .listed
            .get_or_try_init(|| async {
                self.inner.list_users(sh).await.map_err(|e| match e {
                    PlatformError::Unreachable { detail, .. } | PlatformError::Protocol { detail, .. } => {
                        CallError::Failed { status: None, message: detail, maybe_applied: false }
                    }
                    e => CallError::Stop(e),
                })
            })
            .await?;
        Ok(all)
    }

    /// Why a 409's account may not be adopted, if it may not: someone else's (another
    /// externalId, or another connector's person), or a partial match in a run nobody
    /// approved.
    fn refused_adoption(&self, user: &User, account: &Existing, verdict: Verdict) -> Option<Written> {
        let pid = &account.platform_id;
        let login = account.user_name.as_deref().unwrap_or_default();
        let theirs = account.external_id.as_deref().unwrap_or_default();
        let conflict = |message: String| Some(Written::refused(Some(409), message));
        match verdict {
            Verdict::Foreign => conflict(format!(
                "conflict: the platform answered 409 (already exists) and account {pid} (userName {login:?}) has externalId {theirs:?}, not {:?}: it is someone else's and was left as it is. If it is this person, correct its externalId on the platform; otherwise give this person another email",
                user.external_id
            )),
            Verdict::Dormant if self.inner.rehire == Rehire::Conflict => conflict(format!(
                "conflict: the platform answered 409 (already exists) and account {pid} (userName {login:?}) is an inactive account of externalId {theirs:?} (a leaver's, kept by the platform): with rehire = \"conflict\" it is not reused; left as it is. Set rehire = \"rekey\" to reuse it, or remove it on the platform"
            )),
            Verdict::Dormant if self.bound_to_another(pid, user) => conflict(format!(
                "conflict: the platform answered 409 (already exists) and account {pid} (userName {login:?}) is inactive but still this connector's person {theirs:?}: left as it is. Give this person another email, or let the leaver go first"
            )),
            Verdict::Partial if !self.inner.adopt_partial => conflict(format!(
                "conflict: the platform answered 409 (already exists) and account {pid} (userName {login:?}) has externalId {theirs:?} but neither this person's email nor their userName: a partial match, possibly someone else's person with the same id; left as it is. Check the account; `rostersync sync CONNECTOR --reconcile` lists it in a plan to approve, or correct the account on the platform"
            )),
            _ => self.inner.claimed.get(pid).and_then(|(connector, theirs)| {
                // Advice by whether it is the same person (their login), never adopt_from
                // for someone else's (`plan::across_connectors_advice`).
                let same = account.user_name.as_deref().is_some_and(|n| n.eq_ignore_ascii_case(user.user_name()));
                conflict(format!(
                    "conflict: the platform answered 409 (already exists) and account {pid} is connector {connector:?}'s person {theirs:?}: left as it is. {}",
                    crate::plan::across_connectors_advice(&self.inner.connector, connector, same)
                ))
            }),
        }
    }

    /// Whether account `pid` is another person's of this push (known to the state, or made
    /// theirs earlier in the run). Rare (a 409 on a dormant account), so a scan.
    fn bound_to_another(&self, pid: &str, user: &User) -> bool {
        let key = self.inner.id_rule.key(&user.external_id);
        self.ids().iter().any(|(x, p)| p.as_str() == pid && self.inner.id_rule.key(x) != key)
    }

    /// PATCH (only what changed, when the previous content is known), or read-merge-write
    /// when the server has no PATCH or refuses this one.
    async fn write_content(
        &self,
        sh: &Shared,
        id: &str,
        user: &User,
        manager: Option<&str>,
        previous: Option<(&User, Option<&str>)>,
    ) -> Result<Written, PlatformError> {
        let inner = &self.inner;
        let url = inner.url(&["Users", id]);
        let Some(patch) = inner.enc.patch(user, manager, previous) else {
            return Ok(Written::applied(id));
        };
        if self.patch_usable() {
            match inner.call(sh, Method::PATCH, url.clone(), Some(&patch), true).await {
                // This account lacks the value a filter addresses (no work email: a hand-made
                // account): this write alone becomes a read-merge-write.
                Ok(r) if r.status == 400 && no_target(&r) && filters_values(&patch) => {
                    tracing::debug!(%url, "no value matches the PATCH's filter ({}); reading the user to merge instead", r.error_message());
                }
                Ok(r) if refuses_patch(&r) => self.patch_refused(&url, &r),
                Ok(r) => return Ok(outcome(&Method::PATCH, &url, id, &r)),
                Err(e) => return Written::from_call(e),
            }
        }
        // The whole PatchOp of what we map (not the diff): the platform may have drifted.
        let Some(full) = inner.enc.patch(user, manager, None) else { return Ok(Written::applied(id)) };
        let schemas = inner.enc.resource(user, manager).get("schemas").cloned().unwrap_or(Value::Null);
        self.read_merge_write(sh, url, id, |held| merge_patch(held, &full, &schemas)).await
    }

    async fn deactivate(&self, sh: &Shared, id: &str) -> Result<Written, PlatformError> {
        let inner = &self.inner;
        let url = inner.url(&["Users", id]);
        if self.patch_usable() {
            match inner.call(sh, Method::PATCH, url.clone(), Some(&Encoder::deactivate()), true).await {
                Ok(r) if refuses_patch(&r) => self.patch_refused(&url, &r),
                Ok(r) => return Ok(outcome(&Method::PATCH, &url, id, &r)),
                Err(e) => return Written::from_call(e),
            }
        }
        self.read_merge_write(sh, url, id, |held| {
            held.insert("active".into(), Value::Bool(false));
        })
        .await
    }

    /// Whether to try PATCH: the server offers it and has not refused it this run.
    fn patch_usable(&self) -> bool {
        self.inner.caps.patch && !self.fallback.patch_refused.load(Ordering::Acquire)
    }

    /// Remembers for the rest of the run that PATCH is refused, and says so once.
    fn patch_refused(&self, url: &url::Url, r: &Resp) {
        if !self.fallback.patch_refused.swap(true, Ordering::AcqRel) {
            tracing::warn!(
                %url,
                status = r.status,
                "the platform refuses PATCH ({}); updates for the rest of the run read each user, merge what rostersync maps and PUT it back",
                r.error_message()
            );
        }
    }

    /// GET user `id`, change it with `merge`, PUT it back. Read as a plain JSON object,
    /// not a typed user: every attribute we do not map must go back as it was. Where the
    /// server versions its users (`version_of`), the PUT carries `If-Match` with the version
    /// read; a 412 says the account changed in between (an admin's edit), so it is read and
    /// merged again, at most `VERSION_ATTEMPTS` times, and never written over.
    async fn read_merge_write(
        &self,
        sh: &Shared,
        url: url::Url,
        id: &str,
        merge: impl Fn(&mut Map<String, Value>),
    ) -> Result<Written, PlatformError> {
        for attempt in 1..=VERSION_ATTEMPTS {
            let (mut held, version) = match self.read_user(sh, &url, id).await? {
                Ok(read) => read,
                Err(refused) => return Ok(refused),
            };
            // Server-owned: a PUT must not try to set them.
            held.remove("meta");
            merge(&mut held);
            let sent = Value::Object(held);
            let r = match self.inner.call_if(sh, Method::PUT, url.clone(), Some(&sent), true, version.as_deref()).await {
                Ok(r) => r,
                Err(e) => return Written::from_call(e),
            };
            if r.status == 412 && version.is_some() {
                tracing::debug!(%url, attempt, "the account changed on the platform since it was read (412); reading it again");
                continue;
            }
            if r.success()
                && let Ok(back) = r.json::<Value>()
            {
                self.warn_dropped(&url, &dropped(&sent, &back));
            }
            return Ok(outcome(&Method::PUT, &url, id, &r));
        }
        Ok(Written::refused(
            Some(412),
            format!(
                "PUT {url}: HTTP 412: the account changed on the platform between each read and write ({VERSION_ATTEMPTS} attempts: something keeps editing it); nothing was written over, and the next run tries again"
            ),
        ))
    }

    /// GET user `id`: the resource as a JSON object and its version (`version_of`), or the
    /// failure that is this user's (the inner Err).
    async fn read_user(&self, sh: &Shared, url: &url::Url, id: &str) -> Result<Result<Held, Written>, PlatformError> {
        let r = match self.inner.call(sh, Method::GET, url.clone(), None, true).await {
            Ok(r) => r,
            Err(e) => return Written::from_call(e).map(Err),
        };
        if r.status != 200 {
            return Ok(Err(outcome(&Method::GET, url, id, &r)));
        }
        Ok(match r.json::<Map<String, Value>>() {
            Ok(held) => {
                let version = version_of(r.etag.as_deref(), &held, self.inner.caps.etag);
                Ok((held, version))
            }
            Err(e) => Err(Written::refused(Some(r.status), format!("GET {url}: not a SCIM user ({e}), so it cannot be written back"))),
        })
    }

    /// Once per run: the attributes a PUT sent that the server did not keep.
    fn warn_dropped(&self, url: &url::Url, dropped: &BTreeSet<String>) {
        if !dropped.is_empty() && !self.fallback.warned_dropped.swap(true, Ordering::AcqRel) {
            let names = dropped.iter().map(String::as_str).collect::<Vec<_>>().join(", ");
            tracing::warn!(
                %url,
                "the platform does not keep these attributes rostersync sends: {names}; they are lost there on every write (extend the platform's user schema, or stop mapping them)"
            );
        }
    }

    async fn delete(&self, sh: &Shared, id: &str) -> Result<Written, PlatformError> {
        let url = self.inner.url(&["Users", id]);
        match self.inner.call(sh, Method::DELETE, url.clone(), None, true).await {
            // Already gone (deleted by hand, or our earlier attempt went through): done.
            Ok(r) if r.success() || r.status == 404 => Ok(Written::applied(id)),
            Ok(r) => Ok(Written::refused(Some(r.status), format!("DELETE {url}: {}", r.error_message()))),
            Err(e) => Written::from_call(e),
        }
    }
}

/// A user as read for a read-merge-write: the resource, and its version if it has one.
type Held = (Map<String, Value>, Option<String>);

/// How many times one read-merge-write reads, merges and writes while the account keeps
/// changing under it (412): an admin's edit in between costs one more round, a script
/// rewriting the account in a loop fails this person (the run goes on).
const VERSION_ATTEMPTS: u32 = 3;

/// The version a write based on this read must name in `If-Match`: the `ETag` header (an
/// HTTP server that sends one evaluates it), else `meta.version` when the server announces
/// ETags (`etag.supported`; some servers fill `meta.version` without checking it). None:
/// the write is unconditional, as on a server without ETags.
fn version_of(etag: Option<&str>, held: &Map<String, Value>, announced: bool) -> Option<String> {
    let meta = || held.get("meta")?.get("version")?.as_str().filter(|v| !v.is_empty()).map(str::to_string);
    etag.filter(|v| !v.is_empty()).map(str::to_string).or_else(|| announced.then(meta).flatten())
}

/// What this run learnt about the server's PATCH.
#[derive(Debug, Default)]
pub(super) struct Fallback {
    /// PATCH was refused: updates go straight to read-merge-write.
    patch_refused: AtomicBool,
    /// The dropped-attributes warning was given.
    warned_dropped: AtomicBool,
}

/// The answer to a write to user `id`.
fn outcome(method: &Method, url: &url::Url, id: &str, r: &Resp) -> Written {
    match r.status {
        _ if r.success() => Written::applied(id),
        404 => Written::refused(
            Some(404),
            format!(
                "{method} {url}: the user no longer exists on the platform (deleted there?); remove it from the state or let the next run create it"
            ),
        ),
        _ => Written::refused(Some(r.status), format!("{method} {url}: {}", r.error_message())),
    }
}

/// Whether an answer to PATCH says "not this way" rather than "not this user": no PATCH at
/// all (501, 405), or not for this attribute path (RFC 7644 §3.12 invalidPath, noTarget, or
/// invalidFilter for a value filter in a path it cannot read).
fn refuses_patch(r: &Resp) -> bool {
    match r.status {
        501 | 405 => true,
        400 => matches!(ScimError::read(&r.body).scim_type(), Some("invalidPath" | "noTarget" | "invalidFilter")),
        _ => false,
    }
}

/// A 400 noTarget: no value matched a path (RFC 7644 §3.5.2).
fn no_target(r: &Resp) -> bool {
    ScimError::read(&r.body).scim_type() == Some("noTarget")
}

/// Whether a PatchOp addresses values of a multi-valued attribute by filter (`WORK_EMAILS`):
/// its noTarget is this account's (it has no such value), not the server's way of PATCH.
fn filters_values(patch: &Value) -> bool {
    patch["Operations"].as_array().into_iter().flatten().any(|o| o["path"].as_str().is_some_and(|p| p.contains('[')))
}

/// Applies our PatchOp (`Encoder::patch` without a previous: one replace without a path,
/// then removes of the attributes we own) to the resource the server holds, as RFC 7644
/// §3.5.2 says a server would: a replace's complex values merge sub-attribute by
/// sub-attribute, multi-valued and simple ones are replaced. `schemas` is our resource's
/// list, added to the server's.
fn merge_patch(held: &mut Map<String, Value>, patch: &Value, schemas: &Value) {
    for op in patch.get("Operations").and_then(Value::as_array).into_iter().flatten() {
        match (op.get("op").and_then(Value::as_str), op.get("path").and_then(Value::as_str), op.get("value")) {
            (Some("replace" | "add"), None, Some(Value::Object(v))) => merge_object(held, v),
            (Some("add"), Some(attr), Some(Value::Array(ours))) if !attr.contains(['.', '[', ':']) => add_values(held, attr, ours),
            (Some("remove"), Some(path), _) => match value_filter(path) {
                Some((attr, any_of)) => remove_values(held, attr, &any_of),
                None => remove_path(held, path),
            },
            _ => {}
        }
    }
    let mut all: Vec<Value> = held.get("schemas").and_then(Value::as_array).cloned().unwrap_or_default();
    for s in schemas.as_array().into_iter().flatten() {
        if !all.contains(s) {
            all.push(s.clone());
        }
    }
    held.insert("schemas".into(), Value::Array(all));
}

fn merge_object(into: &mut Map<String, Value>, from: &Map<String, Value>) {
    for (k, v) in from {
        match (into.get_mut(k), v) {
            (Some(Value::Object(held)), Value::Object(ours)) => merge_object(held, ours),
            _ => {
                into.insert(k.clone(), v.clone());
            }
        }
    }
}

/// `attr[sub eq "v" or sub2 eq "w"]` (the only value filters our PatchOps use:
/// `encode::WORK_EMAILS`, and the adoption's, which adds our value): (attr, [(sub, v)]).
fn value_filter(path: &str) -> Option<(&str, Vec<(&str, String)>)> {
    let (attr, filter) = path.strip_suffix(']')?.split_once('[')?;
    let any_of = filter
        .split(" or ")
        .map(|c| {
            let (sub, literal) = c.split_once(" eq ")?;
            Some((sub.trim(), serde_json::from_str::<String>(literal.trim()).ok()?))
        })
        .collect::<Option<Vec<_>>>()?;
    Some((attr, any_of))
}

/// Removes the values of multi-valued `attr` that match any (sub, value) of `any_of`,
/// without case (SCIM's `type` and email `value` are `caseExact: false`); the others stay.
fn remove_values(held: &mut Map<String, Value>, attr: &str, any_of: &[(&str, String)]) {
    if let Some(Value::Array(values)) = held.get_mut(attr) {
        values.retain(|v| !any_of.iter().any(|(sub, w)| v.get(*sub).and_then(Value::as_str).is_some_and(|t| t.eq_ignore_ascii_case(w))));
    }
}

/// Adds our values to multi-valued `attr` as RFC 7644 §3.5.2.1 says a server would: a value
/// the account already holds (same `value`, without case) is ours now, not a second one;
/// another one stays, and is no longer primary when one of ours is (one primary at most).
fn add_values(held: &mut Map<String, Value>, attr: &str, ours: &[Value]) {
    let value = |v: &Value| v.get("value").and_then(Value::as_str).map(str::to_lowercase);
    let ours_primary = ours.iter().any(|v| v.get("primary") == Some(&Value::Bool(true)));
    let mut kept: Vec<Value> = match held.remove(attr) {
        Some(Value::Array(values)) => values.into_iter().filter(|h| !ours.iter().any(|o| value(o) == value(h))).collect(),
        _ => Vec::new(),
    };
    if ours_primary {
        for v in kept.iter_mut().filter_map(Value::as_object_mut) {
            v.remove("primary");
        }
    }
    kept.extend(ours.iter().cloned());
    held.insert(attr.to_string(), Value::Array(kept));
}

/// Removes "attr", "parent.sub" or "urn:…:User:attr" from a resource.
fn remove_path(held: &mut Map<String, Value>, path: &str) {
    let (container, attr) = match path.strip_prefix("urn:").and_then(|_| path.rsplit_once(':')) {
        Some((urn, attr)) => (held.get_mut(urn).and_then(Value::as_object_mut), attr),
        None => (Some(held), path),
    };
    let Some(c) = container else { return };
    match attr.split_once('.') {
        Some((parent, sub)) => {
            if let Some(p) = c.get_mut(parent).and_then(Value::as_object_mut) {
                p.remove(sub);
            }
        }
        None => {
            c.remove(attr);
        }
    }
}

/// The attributes of `sent` (as paths, "name.givenName", "urn:…:User:department") that
/// `back` lacks: what the server did not keep. Values may come back normalised, so only
/// presence counts.
fn dropped(sent: &Value, back: &Value) -> BTreeSet<String> {
    fn walk(sent: &Map<String, Value>, back: &Map<String, Value>, prefix: &str, depth: usize, out: &mut BTreeSet<String>) {
        for (k, v) in sent {
            if prefix.is_empty() && (k == "schemas" || k == "meta" || k == "id") {
                continue;
            }
            // An extension's attributes are "urn:…:User:attr"; sub-attributes "a.b".
            let path = match (prefix, depth) {
                ("", _) => k.clone(),
                (p, 1) if p.starts_with("urn:") => format!("{p}:{k}"),
                (p, _) => format!("{p}.{k}"),
            };
            let theirs = back.get(k).filter(|t| !t.is_null());
            match (v, theirs) {
                (Value::Null, _) => {}
                (Value::Object(s), Some(Value::Object(b))) => walk(s, b, &path, depth + 1, out),
                (_, None) => {
                    out.insert(path);
                }
                _ => {}
            }
        }
    }
    let mut out = BTreeSet::new();
    if let (Some(s), Some(b)) = (sent.as_object(), back.as_object()) {
        walk(s, b, "", 0, &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ENT: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

    #[test]
    fn merge_keeps_what_we_do_not_map_and_clears_what_we_own() {
        let mut held = json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", ENT],
            "id": "7", "userName": "ada@example.com", "title": "Old title",
            "name": {"givenName": "Ada", "familyName": "Byron", "middleName": "A."},
            "phoneNumbers": [{"value": "+44 20 1234", "type": "work"}],
            ENT: {"department": "R&D", "manager": {"value": "9"}, "building": "B2"}
        })
        .as_object()
        .cloned()
        .unwrap();
        let patch = json!({"schemas": [super::super::encode::PATCH_OP], "Operations": [
            {"op": "replace", "value": {"name": {"familyName": "Lovelace"}, ENT: {"department": "Maths"}}},
            {"op": "remove", "path": "title"},
            {"op": "remove", "path": format!("{ENT}:manager")},
        ]});
        merge_patch(&mut held, &patch, &json!(["urn:ietf:params:scim:schemas:core:2.0:User", ENT, "urn:x:custom"]));
        assert_eq!(
            Value::Object(held),
            json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", ENT, "urn:x:custom"],
                "id": "7", "userName": "ada@example.com",
                "name": {"givenName": "Ada", "familyName": "Lovelace", "middleName": "A."},
                "phoneNumbers": [{"value": "+44 20 1234", "type": "work"}],
                ENT: {"department": "Maths", "building": "B2"}
            })
        );
    }

    #[test]
    fn merge_replaces_our_email_and_keeps_the_others() {
        let mut held = json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "id": "7", "userName": "ada@example.com",
            "emails": [{"value": "ada@example.com", "type": "work", "primary": true}, {"value": "ada@home.example", "type": "home", "primary": true},
                       {"value": "ADA.KING@example.com"}],
            "phoneNumbers": [{"value": "+44 20 1234", "type": "work"}]
        })
        .as_object()
        .cloned()
        .unwrap();
        let ours = json!([{"value": "ada.king@example.com", "type": "work", "primary": true}]);
        let patch = json!({"schemas": [super::super::encode::PATCH_OP], "Operations": [
            {"op": "replace", "value": {"userName": "ada.king@example.com"}},
            {"op": "remove", "path": super::super::encode::WORK_EMAILS},
            {"op": "add", "path": "emails", "value": ours},
        ]});
        merge_patch(&mut held, &patch, &json!(["urn:ietf:params:scim:schemas:core:2.0:User"]));
        assert_eq!(
            held["emails"],
            json!([{"value": "ada@home.example", "type": "home"}, {"value": "ada.king@example.com", "type": "work", "primary": true}]),
            "the old work email goes, the home one stays (no longer primary), the untyped copy of ours is ours"
        );
        assert_eq!(held["phoneNumbers"], json!([{"value": "+44 20 1234", "type": "work"}]));
        assert_eq!(value_filter(r#"emails[type eq "work"]"#), Some(("emails", vec![("type", "work".to_string())])));
        assert_eq!(
            value_filter(r#"emails[type eq "work" or value eq "a\"b@x.org"]"#),
            Some(("emails", vec![("type", "work".to_string()), ("value", "a\"b@x.org".to_string())]))
        );
        assert_eq!(value_filter("emails"), None);
    }

    #[test]
    fn the_version_a_write_names() {
        let held = json!({"id": "1", "meta": {"version": "W/\"7\""}}).as_object().cloned().unwrap();
        assert_eq!(version_of(Some("W/\"8\""), &held, true).as_deref(), Some("W/\"8\""), "the header first");
        assert_eq!(version_of(None, &held, true).as_deref(), Some("W/\"7\""));
        assert_eq!(version_of(None, &held, false), None, "meta.version alone, on a server announcing no ETags");
        assert_eq!(version_of(Some("\"x\""), &held, false).as_deref(), Some("\"x\""));
        let bare = json!({"id": "1", "meta": {"version": ""}}).as_object().cloned().unwrap();
        assert_eq!(version_of(None, &bare, true), None);
    }

    #[test]
    fn which_answers_refuse_patch() {
        let r = |status: u16, body: &str| Resp { status, body: body.as_bytes().to_vec(), location: None, etag: None };
        assert!(refuses_patch(&r(501, "")));
        assert!(refuses_patch(&r(405, "<html>Method Not Allowed</html>")));
        assert!(refuses_patch(&r(400, r#"{"status": "400", "scimType": "invalidPath", "detail": "title"}"#)));
        assert!(refuses_patch(&r(400, r#"{"status": "400", "scimType": "noTarget"}"#)));
        // This user's data is wrong, not the way it was sent: no fallback.
        assert!(!refuses_patch(&r(400, r#"{"status": "400", "scimType": "invalidValue", "detail": "bad email"}"#)));
        assert!(!refuses_patch(&r(400, "")));
        assert!(!refuses_patch(&r(404, "")));
        assert!(!refuses_patch(&r(200, "{}")));
    }

    #[test]
    fn dropped_attributes_are_named_by_path() {
        let sent = json!({"schemas": [], "userName": "a", "title": "T", "name": {"givenName": "A", "middleName": "M"},
            ENT: {"department": "D", "manager": {"value": "1"}}, "nickName": null});
        let back = json!({"id": "1", "userName": "A", "name": {"givenName": "A"}, "meta": {}});
        let names: Vec<String> = dropped(&sent, &back).into_iter().collect();
        assert_eq!(names, vec!["name.middleName".to_string(), "title".into(), ENT.to_string()]);
        let back = json!({"userName": "a", "title": "T", "name": {"givenName": "A", "middleName": "M"}, ENT: {"manager": {"value": "1"}}});
        assert_eq!(dropped(&sent, &back).into_iter().collect::<Vec<_>>(), vec![format!("{ENT}:department")]);
    }
}
