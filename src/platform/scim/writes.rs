//! One operation sent on its own: create (POST, with the lookup that keeps a create whose
//! answer was lost from happening twice), adoption after a 409, update (PATCH of what
//! changed, or PUT), deactivation (PATCH, or a read-merge-write PUT), deletion.

use reqwest::Method;
use serde_json::{Map, Value};

use super::encode::Encoder;
use super::listing::{UserResource, id_from_location};
use super::{CallError, Push, Start};
use crate::model::User;
use crate::plan::Op;
use crate::platform::{Applied, OpFailure, OpOutcome, PlatformError};
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
        let (written, manager) = match &op {
            Op::Create { user } => {
                let (m, link) = self.manager_of(user);
                let w = match start {
                    Start::Adopt => self.adopt(user, m.as_deref()).await?,
                    _ => self.create(user, m.as_deref(), start == Start::Unknown).await?,
                };
                (w, link)
            }
            Op::Update { platform_id, user, adopt, previous } => {
                let (m, link) = self.manager_of(user);
                // An adopted user's content is unknown: replace everything we map.
                let prev = if *adopt { None } else { previous.as_deref().map(|p| (p, self.previous_manager(p))) };
                let prev = prev.as_ref().map(|(u, m)| (*u, m.as_deref()));
                (self.write_content(platform_id, user, m.as_deref(), prev).await?, link)
            }
            Op::Deactivate { platform_id, .. } => (self.deactivate(platform_id).await?, crate::platform::ManagerLink::Absent),
            Op::Delete { platform_id, .. } => (self.delete(platform_id).await?, crate::platform::ManagerLink::Absent),
        };
        let result = match written {
            Written::Applied { platform_id, adopted } => Ok(Applied { platform_id, manager, adopted }),
            Written::Refused(mut f) => {
                f.message = format!("user {}: {}", op.external_id(), f.message);
                Err(f)
            }
        };
        Ok(OpOutcome { result, op })
    }

    /// POST a user. An unknown outcome (the connection dropped after sending) is looked up
    /// by externalId before sending again, so a user is never created twice.
    async fn create(&self, user: &User, manager: Option<&str>, lookup_first: bool) -> Result<Written, PlatformError> {
        let inner = &self.inner;
        let body = inner.enc.resource(user, manager);
        let url = inner.url(&["Users"]);
        let mut check = lookup_first;
        let mut sends = 0u32;
        loop {
            if check && let Some(found) = self.created_before(user, manager).await? {
                return Ok(found);
            }
            sends += 1;
            let r = match inner.call(&self.shared, Method::POST, url.clone(), Some(&body), false).await {
                Ok(r) => r,
                Err(CallError::Failed { maybe_applied: true, message, status }) => {
                    match inner.policy.next(sends, None, &self.shared.budget) {
                        Decision::Retry(wait) => {
                            tracing::debug!(external_id = %user.external_id, "create outcome unknown ({message}); looking it up before sending again");
                            check = true;
                            tokio::time::sleep(wait).await;
                            continue;
                        }
                        Decision::GiveUp(why @ GiveUp::Budget(_)) => return Written::from_call(self.shared.exhausted(why, &message)),
                        Decision::GiveUp(why) => return Ok(Written::refused(status, format!("{message} ({why})"))),
                    }
                }
                Err(e) => return Written::from_call(e),
            };
            return Ok(match r.status {
                409 => self.adopt(user, manager).await?,
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
    async fn created_before(&self, user: &User, manager: Option<&str>) -> Result<Option<Written>, PlatformError> {
        match self.inner.find(&self.shared, "externalId", &user.external_id).await {
            Ok(Some(id)) => Ok(Some(self.write_content(&id, user, manager, None).await?)),
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

    /// After a 409: the user exists. Find them by externalId, then userName, and make
    /// their content ours — only if the account has no externalId or the same one
    /// (`plan::same_person`): any other is someone else's, a conflict, and left as it is.
    /// (Accounts of other connectors' people were kept from the create by `plan::settle`.)
    async fn adopt(&self, user: &User, manager: Option<&str>) -> Result<Written, PlatformError> {
        let mut found = None;
        for (attr, value) in [("externalId", user.external_id.as_str()), ("userName", user.user_name())] {
            match self.inner.find_account(&self.shared, attr, value).await {
                Ok(Some(account)) => {
                    found = Some(account);
                    break;
                }
                Ok(None) => {}
                Err(CallError::Stop(e)) => return Err(e),
                Err(CallError::Failed { status, message, .. }) => {
                    return Ok(Written::refused(
                        status,
                        format!("the platform answered 409 (user exists) but looking the user up failed: {message}"),
                    ));
                }
            }
        }
        let Some(account) = found else {
            return Ok(Written::refused(
                Some(409),
                format!(
                    "the platform answered 409 (already exists) but no user has externalId {:?} or userName {:?}; another attribute must be unique on the platform (email?) — find the conflicting user there",
                    user.external_id,
                    user.user_name()
                ),
            ));
        };
        if let Some(theirs) = account.external_id.as_deref().filter(|x| !x.trim().is_empty())
            && !crate::plan::same_person(theirs, &user.external_id)
        {
            return Ok(Written::refused(
                Some(409),
                format!(
                    "conflict: the platform answered 409 (already exists) and account {} (userName {:?}) has externalId {theirs:?}, not {:?}: it is someone else's and was left as it is. If it is this person, correct its externalId on the platform; otherwise give this person another email",
                    account.platform_id,
                    account.user_name.as_deref().unwrap_or_default(),
                    user.external_id
                ),
            ));
        }
        if let Some((connector, theirs)) = self.inner.claimed.get(&account.platform_id) {
            return Ok(Written::refused(
                Some(409),
                format!(
                    "conflict: the platform answered 409 (already exists) and account {} is connector {connector:?}'s person {theirs:?}: left as it is. For a migration from {connector}, add adopt_from = [{connector:?}] to this connector's [sync]",
                    account.platform_id
                ),
            ));
        }
        let id = account.platform_id;
        Ok(match self.write_content(&id, user, manager, None).await? {
            Written::Applied { platform_id, .. } => Written::Applied { platform_id, adopted: true },
            refused => refused,
        })
    }

    /// PATCH (only what changed, when the previous content is known) or PUT.
    async fn write_content(
        &self,
        id: &str,
        user: &User,
        manager: Option<&str>,
        previous: Option<(&User, Option<&str>)>,
    ) -> Result<Written, PlatformError> {
        let inner = &self.inner;
        let url = inner.url(&["Users", id]);
        let (method, body) = if inner.caps.patch {
            match inner.enc.patch(user, manager, previous) {
                Some(p) => (Method::PATCH, p),
                None => return Ok(Written::applied(id)),
            }
        } else {
            (Method::PUT, inner.enc.resource(user, manager))
        };
        self.write(method, url, id, Some(&body)).await
    }

    async fn deactivate(&self, id: &str) -> Result<Written, PlatformError> {
        let inner = &self.inner;
        let url = inner.url(&["Users", id]);
        if inner.caps.patch {
            return self.write(Method::PATCH, url, id, Some(&Encoder::deactivate())).await;
        }
        // No PATCH: PUT back what the platform holds, with active = false. Read as a plain
        // JSON object, not a typed user: every attribute we do not map must go back as it was.
        let r = match inner.call(&self.shared, Method::GET, url.clone(), None, true).await {
            Ok(r) => r,
            Err(e) => return Written::from_call(e),
        };
        if r.status != 200 {
            return Ok(Written::refused(Some(r.status), format!("GET {url}: {}", r.error_message())));
        }
        let mut held = match r.json::<Map<String, Value>>() {
            Ok(m) => m,
            Err(e) => {
                return Ok(Written::refused(Some(r.status), format!("GET {url}: not a SCIM user ({e}), so it cannot be written back")));
            }
        };
        held.remove("meta");
        held.insert("active".into(), Value::Bool(false));
        self.write(Method::PUT, url, id, Some(&Value::Object(held))).await
    }

    async fn delete(&self, id: &str) -> Result<Written, PlatformError> {
        let url = self.inner.url(&["Users", id]);
        match self.inner.call(&self.shared, Method::DELETE, url.clone(), None, true).await {
            // Already gone (deleted by hand, or our earlier attempt went through): done.
            Ok(r) if r.success() || r.status == 404 => Ok(Written::applied(id)),
            Ok(r) => Ok(Written::refused(Some(r.status), format!("DELETE {url}: {}", r.error_message()))),
            Err(e) => Written::from_call(e),
        }
    }

    /// An idempotent write (PATCH/PUT) to user `id`: retried as needed.
    async fn write(&self, method: Method, url: url::Url, id: &str, body: Option<&Value>) -> Result<Written, PlatformError> {
        match self.inner.call(&self.shared, method.clone(), url.clone(), body, true).await {
            Ok(r) if r.success() => Ok(Written::applied(id)),
            Ok(r) if r.status == 404 => Ok(Written::refused(
                Some(404),
                format!(
                    "{method} {url}: the user no longer exists on the platform (deleted there?); remove it from the state or let the next run create it"
                ),
            )),
            Ok(r) => Ok(Written::refused(Some(r.status), format!("{method} {url}: {}", r.error_message()))),
            Err(e) => Written::from_call(e),
        }
    }
}
