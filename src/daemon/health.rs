//! What `/healthz` says: which connectors cannot run and why (the preflight's findings and
//! the configuration's refusals), set at start and on each reload.
//!
//! The status is 200 while at least one connector can run, so a liveness probe does not
//! restart a daemon that is doing useful work for the others; 503 when none can (a missing
//! platform token stops every connector). The body names each blocked connector.
//!
//! The daemon's own problems (`note`: its clock far from the state store's, a state store
//! that fails) make it degraded, 200 all the same: connectors may still run, and a restart
//! would not help. Each is cleared when it no longer holds.

use std::collections::BTreeMap;
use std::sync::RwLock;

#[derive(Default)]
pub struct Health {
    inner: RwLock<State>,
    notes: RwLock<BTreeMap<Concern, String>>,
}

#[derive(Default)]
struct State {
    /// Connectors the daemon knows (scheduled or refused).
    known: usize,
    /// Blocked connector → its problems.
    blocked: BTreeMap<String, Vec<String>>,
}

/// A problem of the daemon itself, by what it is about (one each).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Concern {
    /// This machine's clock is far from the state store's.
    Clock,
    /// The state store fails.
    Store,
}

impl Concern {
    fn label(self) -> &'static str {
        match self {
            Concern::Clock => "clock",
            Concern::Store => "state store",
        }
    }
}

impl Health {
    /// Replaces what is known: `known` connectors in all, `blocked` those that cannot run.
    pub fn set(&self, known: usize, blocked: BTreeMap<String, Vec<String>>) {
        if let Ok(mut s) = self.inner.write() {
            *s = State { known, blocked };
        }
    }

    /// Sets (Some) or clears (None) the daemon's problem about `concern`; true when that
    /// changed what is said (so the caller logs the change once, not every check).
    pub fn note(&self, concern: Concern, problem: Option<String>) -> bool {
        let Ok(mut n) = self.notes.write() else { return false };
        match problem {
            Some(p) => n.insert(concern, p.clone()).as_ref() != Some(&p),
            None => n.remove(&concern).is_some(),
        }
    }

    /// The daemon's problems now, as `/healthz` names them ("clock: …").
    pub fn notes(&self) -> Vec<String> {
        self.notes.read().map(|n| n.iter().map(|(c, p)| format!("{}: {p}", c.label())).collect()).unwrap_or_default()
    }

    /// The connectors that cannot run, by name.
    pub fn blocked(&self) -> Vec<String> {
        self.inner.read().map(|s| s.blocked.keys().cloned().collect()).unwrap_or_default()
    }

    /// The HTTP status and body of `/healthz`, with the connectors whose stopped plan waits
    /// for approval (`awaiting`: connector → the command that applies it): degraded, naming
    /// them, though they can run (a person has to act; 200 all the same, the daemon works).
    pub fn render(&self, awaiting: &BTreeMap<String, String>) -> (u16, String) {
        let notes = self.notes();
        let (status, mut body) = self.render_connectors(awaiting);
        if notes.is_empty() {
            return (status, body);
        }
        if body == "ok\n" {
            body = format!("degraded: {} problem(s) of the daemon\n", notes.len());
        }
        for n in notes {
            body.push_str(&format!("daemon: {n}\n"));
        }
        (status, body)
    }

    fn render_connectors(&self, awaiting: &BTreeMap<String, String>) -> (u16, String) {
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

    #[test]
    fn the_daemons_own_problems_degrade_it_until_cleared() {
        let h = Health::default();
        h.set(1, BTreeMap::new());
        let none = BTreeMap::new();
        assert!(h.note(Concern::Store, Some("cannot reach it".into())), "a new problem is news");
        assert!(!h.note(Concern::Store, Some("cannot reach it".into())), "the same again is not");
        let (status, body) = h.render(&none);
        assert_eq!(status, 200, "connectors may still run");
        assert_eq!(body, "degraded: 1 problem(s) of the daemon\ndaemon: state store: cannot reach it\n");
        h.note(Concern::Clock, Some("20 s ahead".into()));
        h.set(2, BTreeMap::from([("acme".to_string(), vec!["platform.token_env: not set".to_string()])]));
        let (_, body) = h.render(&none);
        assert!(body.starts_with("degraded: 1 of 2 connector(s) cannot run"), "{body}");
        assert!(body.ends_with("daemon: clock: 20 s ahead\ndaemon: state store: cannot reach it\n"), "{body}");
        assert!(h.note(Concern::Store, None) && h.note(Concern::Clock, None), "cleared");
        h.set(1, BTreeMap::new());
        assert_eq!(h.render(&none), (200, "ok\n".into()));
    }
}
