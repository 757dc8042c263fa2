//! What `/healthz` says: which connectors cannot run and why (the preflight's findings and
//! the configuration's refusals), set at start and on each reload.
//!
//! The status is 200 while at least one connector can run, so a liveness probe does not
//! restart a daemon that is doing useful work for the others; 503 when none can (a missing
//! platform token stops every connector). The body names each blocked connector.

use std::collections::BTreeMap;
use std::sync::RwLock;

#[derive(Default)]
pub struct Health {
    inner: RwLock<State>,
}

#[derive(Default)]
struct State {
    /// Connectors the daemon knows (scheduled or refused).
    known: usize,
    /// Blocked connector → its problems.
    blocked: BTreeMap<String, Vec<String>>,
}

impl Health {
    /// Replaces what is known: `known` connectors in all, `blocked` those that cannot run.
    pub fn set(&self, known: usize, blocked: BTreeMap<String, Vec<String>>) {
        if let Ok(mut s) = self.inner.write() {
            *s = State { known, blocked };
        }
    }

    /// The connectors that cannot run, by name.
    pub fn blocked(&self) -> Vec<String> {
        self.inner.read().map(|s| s.blocked.keys().cloned().collect()).unwrap_or_default()
    }

    /// The HTTP status and body of `/healthz`, with the connectors whose stopped plan waits
    /// for approval (`awaiting`: connector → the command that applies it): degraded, naming
    /// them, though they can run (a person has to act; 200 all the same, the daemon works).
    pub fn render(&self, awaiting: &BTreeMap<String, String>) -> (u16, String) {
        let Ok(s) = self.inner.read() else { return (200, "ok\n".into()) };
        if s.blocked.is_empty() && awaiting.is_empty() {
            return (200, "ok\n".into());
        }
        if s.blocked.is_empty() {
            let mut out = format!(
                "degraded: {} connector(s) awaiting approval: {}\n",
                awaiting.len(),
                awaiting.keys().cloned().collect::<Vec<_>>().join(", ")
            );
            for (name, cmd) in awaiting {
                out.push_str(&format!("{name}: a safeguard stopped its plan; nothing is pushed until `{cmd}` or a new file\n"));
            }
            return (200, out);
        }
        let none_can_run = s.blocked.len() >= s.known;
        let mut out = format!(
            "{}: {} of {} connector(s) cannot run: {}\n",
            if none_can_run { "unhealthy" } else { "degraded" },
            s.blocked.len(),
            s.known.max(s.blocked.len()),
            s.blocked.keys().cloned().collect::<Vec<_>>().join(", ")
        );
        for (name, problems) in &s.blocked {
            for p in problems {
                out.push_str(&format!("{name}: {p}\n"));
            }
        }
        for (name, cmd) in awaiting {
            out.push_str(&format!("{name}: awaiting approval: `{cmd}`\n"));
        }
        (if none_can_run { 503 } else { 200 }, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_blocked_connectors_and_fails_only_when_none_can_run() {
        let h = Health::default();
        let none = BTreeMap::new();
        assert_eq!(h.render(&none), (200, "ok\n".into()));
        h.set(2, BTreeMap::from([("acme".to_string(), vec!["connectors.acme.sftp.private_key: missing".to_string()])]));
        let (status, body) = h.render(&none);
        assert_eq!(status, 200);
        assert_eq!(body, "degraded: 1 of 2 connector(s) cannot run: acme\nacme: connectors.acme.sftp.private_key: missing\n");
        h.set(1, BTreeMap::from([("acme".to_string(), vec!["platform.token_env: not set".to_string()])]));
        assert_eq!(h.render(&none).0, 503);
        assert_eq!(h.blocked(), vec!["acme".to_string()]);
    }

    #[test]
    fn a_plan_awaiting_approval_is_degraded_naming_the_connector_and_the_command() {
        let h = Health::default();
        h.set(2, BTreeMap::new());
        let awaiting = BTreeMap::from([("acme".to_string(), "rostersync approve run-1 --reason \"…\"".to_string())]);
        let (status, body) = h.render(&awaiting);
        assert_eq!(status, 200, "the daemon works; a person has to act");
        assert!(body.starts_with("degraded: 1 connector(s) awaiting approval: acme\n"), "{body}");
        assert!(body.contains("rostersync approve run-1"), "{body}");
        h.set(2, BTreeMap::from([("bamboo".to_string(), vec!["platform.token_env: not set".to_string()])]));
        let (_, body) = h.render(&awaiting);
        assert!(body.contains("bamboo: platform.token_env") && body.contains("acme: awaiting approval"), "{body}");
    }
}
