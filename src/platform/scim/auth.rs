//! Credentials for the SCIM API: a bearer token from the environment, or OAuth2 client
//! credentials (RFC 6749 §4.4) refreshed before they expire. Secrets never reach logs,
//! errors or Debug output.

use std::time::{Duration, Instant};

use base64::prelude::{BASE64_STANDARD, Engine as _};
use tokio::sync::Mutex;

use crate::config::{PlatformAuth, SecretRef};
use crate::platform::PlatformError;

/// A secret string: Debug shows nothing of it.
#[derive(Clone)]
pub struct Secret(String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// A token endpoint's answer (RFC 6749 §5.1 and §5.2): a token, or an error. No Debug:
/// it holds the token.
#[derive(Default, serde::Deserialize)]
struct TokenResponse {
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default, deserialize_with = "super::lenient::number")]
    expires_in: Option<u64>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    error_description: Option<String>,
}

const MAX_LIFETIME_SECS: u64 = 24 * 3600;

/// Refresh a token this long before the server says it expires (at most a fifth of its
/// lifetime), so a request never leaves with a token that dies in flight.
const REFRESH_MARGIN: Duration = Duration::from_secs(60);

#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // one per client: boxing would buy nothing
pub enum Auth {
    Bearer {
        token: Secret,
        env: String,
    },
    OAuth2 {
        token_url: url::Url,
        client_id: String,
        secret: Secret,
        env: String,
        scope: Option<String>,
        /// The token and when to refresh it.
        cached: Mutex<Option<(Secret, Instant)>>,
    },
}

/// The secret from its variable or file (registered with the redactor there), trimmed:
/// a token never has surrounding blanks, and a pasted one often does.
fn read_secret(from: &SecretRef, what: &str) -> Result<Secret, PlatformError> {
    let v = from.read(what).map_err(|e| PlatformError::Config(e.to_string()))?;
    let v = v.trim();
    if v.is_empty() {
        return Err(PlatformError::Config(format!(
            "{} ({what}) holds only blanks; set it to the value the platform gave you",
            from.describe()
        )));
    }
    Ok(Secret(v.to_string()))
}

impl Auth {
    pub fn from_config(auth: &PlatformAuth) -> Result<Auth, PlatformError> {
        Ok(match auth {
            PlatformAuth::Bearer { token } => {
                Auth::Bearer { token: read_secret(token, "the platform's SCIM bearer token")?, env: token.describe() }
            }
            PlatformAuth::OAuth2 { token_url, client_id, client_secret, scope } => {
                let secret = read_secret(client_secret, "the platform's OAuth2 client secret")?;
                // A token endpoint may echo the Authorization header it was sent.
                crate::redact::register(&BASE64_STANDARD.encode(format!("{client_id}:{}", secret.0)));
                Auth::OAuth2 {
                    token_url: token_url.clone(),
                    client_id: client_id.clone(),
                    secret,
                    env: client_secret.describe(),
                    scope: scope.clone(),
                    cached: Mutex::new(None),
                }
            }
        })
    }

    /// Where the credentials come from, for error messages ("$VAR", or the OAuth2 client).
    pub fn source(&self) -> String {
        match self {
            Auth::Bearer { env, .. } => env.clone(),
            Auth::OAuth2 { env, client_id, .. } => format!("{env} (OAuth2 client {client_id})"),
        }
    }

    /// The Authorization header value, fetching or refreshing an OAuth2 token as needed.
    pub async fn header(&self, http: &reqwest::Client) -> Result<String, PlatformError> {
        match self {
            Auth::Bearer { token, .. } => Ok(format!("Bearer {}", token.0)),
            Auth::OAuth2 { cached, .. } => {
                let mut c = cached.lock().await;
                if let Some((tok, refresh_at)) = &*c
                    && Instant::now() < *refresh_at
                {
                    return Ok(format!("Bearer {}", tok.0));
                }
                let (tok, refresh_at) = self.fetch(http).await?;
                let h = format!("Bearer {}", tok.0);
                *c = Some((tok, refresh_at));
                Ok(h)
            }
        }
    }

    /// Forgets a token the API refused (revoked early); the next request fetches another.
    /// Returns whether there was anything to forget (a bearer token cannot be renewed).
    pub async fn invalidate(&self) -> bool {
        match self {
            Auth::Bearer { .. } => false,
            Auth::OAuth2 { cached, .. } => cached.lock().await.take().is_some(),
        }
    }

    async fn fetch(&self, http: &reqwest::Client) -> Result<(Secret, Instant), PlatformError> {
        let Auth::OAuth2 { token_url, client_id, secret, scope, .. } = self else { unreachable!("fetch is only called for OAuth2") };
        // Built in a block: the serializer is not Send and must not live across an await.
        let form = {
            let mut f = url::form_urlencoded::Serializer::new(String::new());
            f.append_pair("grant_type", "client_credentials");
            if let Some(s) = scope {
                f.append_pair("scope", s);
            }
            f.finish()
        };
        let started = Instant::now();
        // client_secret_basic: the method every authorization server must support.
        let resp = http
            .post(token_url.clone())
            .basic_auth(client_id, Some(&secret.0))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .header("Accept", "application/json")
            .body(form)
            .send()
            .await
            .map_err(|e| PlatformError::Unreachable {
                url: token_url.to_string(),
                detail: format!("OAuth2 token request failed: {}", super::transport_detail(&e)),
            })?;
        let status = resp.status().as_u16();
        // Anything unreadable is an answer without a token (or without an error's words).
        let body: TokenResponse = resp.json().await.unwrap_or_default();
        if status == 400 || status == 401 || status == 403 {
            // The endpoint's words may echo the client secret: redacted before they go anywhere.
            let detail = crate::redact::redacted(
                [body.error.as_deref(), body.error_description.as_deref()].into_iter().flatten().collect::<Vec<_>>().join(": "),
            );
            return Err(PlatformError::Unauthorized {
                status,
                url: token_url.to_string(),
                detail: format!("token endpoint refused client credentials ({detail})"),
                env: self.source(),
            });
        }
        if status >= 500 || status == 429 {
            // Transient: the caller's retry policy tries again.
            return Err(PlatformError::Unreachable {
                url: token_url.to_string(),
                detail: format!("the OAuth2 token endpoint answered HTTP {status}"),
            });
        }
        let Some(token) = body.access_token.filter(|_| (200..300).contains(&status)) else {
            return Err(PlatformError::Protocol {
                url: token_url.to_string(),
                detail: format!("HTTP {status} without an access_token from the OAuth2 token endpoint"),
            });
        };
        crate::redact::register(&token);
        // At most a day: a huge `expires_in` must not overflow the clock, and a daily
        // refresh costs nothing.
        let lifetime = Duration::from_secs(body.expires_in.unwrap_or(3600).min(MAX_LIFETIME_SECS));
        Ok((Secret(token), started + lifetime - REFRESH_MARGIN.min(lifetime / 5)))
    }
}
