//! The rule of when a run lists the platform's accounts before it pushes (and adopts what it
//! finds rather than create it twice): when writes of an earlier run may be there unrecorded.
//! One pure function, so the run that decides it (`sync::reconcile`) and the status that
//! foretells it (`rostersync status`) cannot disagree.

use crate::state::ReconcileMark;

/// Why the run lists the platform first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// A reconcile marker left by an earlier run (a crash, a failed or stopped push, a state
    /// error mid-push).
    Marked(ReconcileMark),
    /// The previous run started and never finished (the process died).
    AfterUnfinished,
}

/// Pure: from the connector's reconcile marker, whether an earlier run never finished, and
/// the run in progress now, if any. A run in progress sets the marker itself while it
/// pushes, so its own marker says nothing about the run after it.
pub fn before_push(mark: Option<ReconcileMark>, unfinished_before: bool, in_progress: Option<&str>) -> Option<Lookup> {
    match mark {
        Some(m) if in_progress != Some(m.run_id.as_str()) => Some(Lookup::Marked(m)),
        _ if unfinished_before => Some(Lookup::AfterUnfinished),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mark(run: &str) -> ReconcileMark {
        ReconcileMark { run_id: run.into(), reason: "push started".into(), set_at: chrono::Utc::now() }
    }

    #[test]
    fn a_marker_or_an_unfinished_run_makes_the_next_run_look() {
        assert!(matches!(before_push(Some(mark("r1")), false, None), Some(Lookup::Marked(m)) if m.run_id == "r1"));
        assert!(matches!(before_push(Some(mark("r1")), true, Some("r2")), Some(Lookup::Marked(m)) if m.run_id == "r1"));
        assert_eq!(before_push(None, true, None), Some(Lookup::AfterUnfinished));
        assert_eq!(before_push(None, false, None), None);
    }

    #[test]
    fn the_marker_of_the_run_in_progress_says_nothing_about_the_next() {
        assert_eq!(before_push(Some(mark("r5")), false, Some("r5")), None);
        assert_eq!(before_push(Some(mark("r5")), true, Some("r5")), Some(Lookup::AfterUnfinished));
    }
}
