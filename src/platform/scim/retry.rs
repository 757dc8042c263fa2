//! What is SCIM-specific about retrying: which answers and transport errors may pass, and
//! whether a failed write may still have been applied. *Whether and when* another attempt
//! is made is `crate::retry`'s (the policy, the run's one budget, `Retry-After`).

use std::time::Duration;

/// A failure that may pass: worth another attempt, as far as SCIM can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transient {
    /// The server's own wait (`Retry-After`).
    pub hint: Option<Duration>,
    /// The server may have done the write although the answer says otherwise (a gateway
    /// timing out on a slow backend): a create must be looked up before it is sent again.
    pub maybe_applied: bool,
}

/// Whether an HTTP status may pass (None: a final answer the caller reads). 429 and 503
/// mean the server did not process the request; 500, 502 and 504 may come after the write
/// was applied.
pub fn transient_status(status: u16, retry_after: Option<&str>) -> Option<Transient> {
    let hint = retry_after.and_then(|v| crate::retry::parse_retry_after(v, chrono::Utc::now()));
    match status {
        429 | 503 => Some(Transient { hint, maybe_applied: false }),
        500 | 502 | 504 => Some(Transient { hint, maybe_applied: true }),
        _ => None,
    }
}

/// Whether a transport error may pass. A refused connection never reached the server; a
/// timeout or a reset after the request went out may have been applied. Builder and
/// redirect errors are ours and will not change on a retry.
pub fn transient_error(err: &reqwest::Error) -> Option<Transient> {
    if err.is_connect() {
        return Some(Transient { hint: None, maybe_applied: false });
    }
    if err.is_timeout() || err.is_request() || err.is_body() || err.is_decode() {
        return Some(Transient { hint: None, maybe_applied: true });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        assert_eq!(transient_status(429, Some("3")), Some(Transient { hint: Some(Duration::from_secs(3)), maybe_applied: false }));
        assert_eq!(transient_status(503, None), Some(Transient { hint: None, maybe_applied: false }));
        assert_eq!(transient_status(504, None), Some(Transient { hint: None, maybe_applied: true }));
        assert_eq!(transient_status(502, Some("soon")), Some(Transient { hint: None, maybe_applied: true }));
        for s in [200, 201, 204, 400, 401, 403, 404, 409, 413, 501] {
            assert_eq!(transient_status(s, None), None, "status {s}");
        }
    }
}
