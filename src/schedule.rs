//! When runs start: the schedule syntax of `connectors.toml` ("daily 02:00",
//! "weekly mon 02:00", or cron with 5 or 6 fields) evaluated in the connector's IANA
//! timezone. croner does the DST-correct arithmetic; this module only translates.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds};

/// Why a schedule does not parse: the timezone or the spec, so the config can point at the
/// right key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("expected an IANA timezone such as \"Europe/Paris\" or \"America/New_York\"; got \"{0}\"")]
    Timezone(String),
    #[error("{0}")]
    Spec(String),
}

/// A parsed schedule in its timezone.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub spec: String,
    pub cron: Cron,
    pub tz: Tz,
}

impl Schedule {
    /// Parses a schedule and a timezone name ("Europe/Paris"; empty for UTC).
    pub fn parse(spec: &str, tz: Option<&str>) -> Result<Schedule, ScheduleError> {
        let tz: Tz = match tz {
            None => Tz::UTC,
            Some(name) => name.parse().map_err(|_| ScheduleError::Timezone(name.to_string()))?,
        };
        let pattern = to_cron(spec).map_err(ScheduleError::Spec)?;
        let cron = CronParser::builder().seconds(Seconds::Optional).build().parse(&pattern).map_err(|e| {
            ScheduleError::Spec(format!(
                "expected \"daily HH:MM\", \"weekly DAY HH:MM\" or a cron expression (5 fields, or 6 with seconds); got \"{spec}\" ({e})"
            ))
        })?;
        Ok(Schedule { spec: spec.to_string(), cron, tz })
    }

    /// The first start strictly after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = after.with_timezone(&self.tz);
        self.cron.find_next_occurrence(&local, false).ok().map(|t| t.with_timezone(&Utc))
    }

    /// The last start at or before `at` (for catch-up after downtime).
    pub fn previous_at_or_before(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = at.with_timezone(&self.tz);
        self.cron.find_previous_occurrence(&local, true).ok().map(|t| t.with_timezone(&Utc))
    }
}

/// The delay added to a connector's start for one slot: spread over `[0, jitter)` but the
/// same for the same connector and slot, so a restart or a reload does not move a start
/// that was already announced (`status`, logs). FNV-1a: stable across Rust releases.
pub fn jitter_for(connector: &str, slot: DateTime<Utc>, jitter: std::time::Duration) -> std::time::Duration {
    let ms = jitter.as_millis() as u64;
    if ms == 0 {
        return std::time::Duration::ZERO;
    }
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in connector.bytes().chain(slot.timestamp().to_le_bytes()) {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    std::time::Duration::from_millis(h % ms)
}

/// "daily 02:00" → "0 2 * * *"; "weekly mon 02:00" → "0 2 * * MON"; anything else is cron.
fn to_cron(spec: &str) -> Result<String, String> {
    let words: Vec<&str> = spec.split_whitespace().collect();
    let hm = |s: &str| -> Result<(u32, u32), String> {
        let (h, m) = s.split_once(':').ok_or_else(|| format!("expected a time HH:MM in \"{spec}\"; got \"{s}\""))?;
        let h: u32 = h.parse().map_err(|_| format!("bad hour \"{h}\" in \"{spec}\""))?;
        let m: u32 = m.parse().map_err(|_| format!("bad minute \"{m}\" in \"{spec}\""))?;
        if h > 23 || m > 59 {
            return Err(format!("time out of range in \"{spec}\": hours 00-23, minutes 00-59"));
        }
        Ok((h, m))
    };
    match words.as_slice() {
        ["daily", t] => {
            let (h, m) = hm(t)?;
            Ok(format!("0 {m} {h} * * *"))
        }
        ["weekly", day, t] => {
            let (h, m) = hm(t)?;
            let d = day.to_ascii_lowercase();
            const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
            let d3 = d.get(..3).unwrap_or("");
            if !DAYS.contains(&d3) {
                return Err(format!("expected a weekday (mon … sun) in \"{spec}\"; got \"{day}\""));
            }
            Ok(format!("0 {m} {h} * * {}", d3.to_ascii_uppercase()))
        }
        ["daily" | "weekly", ..] => Err(format!("expected \"daily HH:MM\" or \"weekly DAY HH:MM\"; got \"{spec}\"")),
        // croner also takes a 7th (year) field and says so ("between 5 and 7"): the count is
        // checked here so the message says what this tool accepts, nothing else.
        _ if !(5..=6).contains(&words.len()) => Err(format!(
            "expected \"daily HH:MM\", \"weekly DAY HH:MM\" or a cron expression of 5 fields (minute hour day-of-month month day-of-week), or 6 with seconds first; got {} field(s) in \"{spec}\"",
            words.len()
        )),
        _ => Ok(spec.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cron_of_the_wrong_length_says_what_is_accepted_and_nothing_else() {
        for spec in ["* * * *", "0 0 2 * * * 2027"] {
            let e = Schedule::parse(spec, None).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(e.contains("5 fields") && e.contains("6 with seconds"), "{e}");
            assert!(!e.contains("between"), "no contradicting count: {e}");
        }
    }

    #[test]
    fn parses_the_three_forms() {
        assert!(Schedule::parse("daily 02:00", Some("Europe/Paris")).is_ok());
        assert!(Schedule::parse("weekly mon 02:00", None).is_ok());
        assert!(Schedule::parse("*/5 * * * *", None).is_ok());
        assert!(Schedule::parse("*/10 * * * * *", None).is_ok());
        assert!(Schedule::parse("daily 25:00", None).is_err());
        assert!(Schedule::parse("weekly someday 02:00", None).is_err());
        assert!(Schedule::parse("daily 02:00", Some("Mars/Olympus")).is_err());
        assert!(Schedule::parse("every tuesday", None).is_err());
    }

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    /// Every start of `sched` from `from` (exclusive) up to `to` (inclusive).
    fn starts(sched: &Schedule, from: &str, to: &str) -> Vec<DateTime<Utc>> {
        let (mut t, end) = (utc(from), utc(to));
        let mut out = Vec::new();
        while let Some(n) = sched.next_after(t) {
            if n > end {
                break;
            }
            out.push(n);
            t = n;
        }
        out
    }

    fn local(t: DateTime<Utc>, tz: Tz) -> String {
        t.with_timezone(&tz).format("%Y-%m-%d %H:%M %Z").to_string()
    }

    #[test]
    fn paris_spring_forward_runs_a_0230_job_once_at_0300() {
        // 2026-03-29: Paris clocks jump from 02:00 CET to 03:00 CEST; 02:30 does not exist.
        let s = Schedule::parse("daily 02:30", Some("Europe/Paris")).unwrap();
        let runs = starts(&s, "2026-03-28T00:00:00Z", "2026-03-30T23:59:59Z");
        let shown: Vec<String> = runs.iter().map(|t| local(*t, chrono_tz::Europe::Paris)).collect();
        assert_eq!(shown, ["2026-03-28 02:30 CET", "2026-03-29 03:00 CEST", "2026-03-30 02:30 CEST"]);
        assert_eq!(runs[1], utc("2026-03-29T01:00:00Z"));
    }

    #[test]
    fn paris_fall_back_runs_a_0230_job_once() {
        // 2026-10-25: Paris clocks go back from 03:00 CEST to 02:00 CET; 02:30 happens twice.
        let s = Schedule::parse("daily 02:30", Some("Europe/Paris")).unwrap();
        let runs = starts(&s, "2026-10-24T00:00:00Z", "2026-10-26T23:59:59Z");
        let shown: Vec<String> = runs.iter().map(|t| local(*t, chrono_tz::Europe::Paris)).collect();
        assert_eq!(shown.len(), 3, "{shown:?}");
        assert_eq!(shown[0], "2026-10-24 02:30 CEST");
        assert!(shown[1].starts_with("2026-10-25 02:30"), "{shown:?}");
        assert_eq!(shown[2], "2026-10-26 02:30 CET");
        // The daemon asks for the next start after a run *ended*, inside the repeated hour:
        // the second 02:30 (CET) of that night must not come back.
        let after_run = utc("2026-10-25T00:35:00Z"); // 02:35 CEST, the first pass
        assert_eq!(local(s.next_after(after_run).unwrap(), chrono_tz::Europe::Paris), "2026-10-26 02:30 CET");
    }

    #[test]
    fn new_york_spring_forward_runs_a_0230_job_once_at_0300() {
        // 2026-03-08: New York jumps from 02:00 EST to 03:00 EDT.
        let s = Schedule::parse("daily 02:30", Some("America/New_York")).unwrap();
        let runs = starts(&s, "2026-03-07T00:00:00Z", "2026-03-09T23:59:59Z");
        let shown: Vec<String> = runs.iter().map(|t| local(*t, chrono_tz::America::New_York)).collect();
        assert_eq!(shown, ["2026-03-07 02:30 EST", "2026-03-08 03:00 EDT", "2026-03-09 02:30 EDT"]);
    }

    #[test]
    fn new_york_fall_back_runs_a_0130_job_once() {
        // 2026-11-01: New York goes back from 02:00 EDT to 01:00 EST; 01:30 happens twice.
        // (02:30 is not ambiguous there, so the repeated hour is 01:00–02:00.)
        let s = Schedule::parse("daily 01:30", Some("America/New_York")).unwrap();
        let runs = starts(&s, "2026-10-31T00:00:00Z", "2026-11-02T23:59:59Z");
        let shown: Vec<String> = runs.iter().map(|t| local(*t, chrono_tz::America::New_York)).collect();
        assert_eq!(shown.len(), 3, "{shown:?}");
        assert!(shown[1].starts_with("2026-11-01 01:30"), "{shown:?}");
        let s = Schedule::parse("daily 02:30", Some("America/New_York")).unwrap();
        let runs = starts(&s, "2026-10-31T00:00:00Z", "2026-11-02T23:59:59Z");
        assert_eq!(runs.len(), 3, "02:30 exists once on fall-back night in New York");
    }

    #[test]
    fn weekly_keeps_its_local_time_across_a_dst_change() {
        let s = Schedule::parse("weekly mon 09:00", Some("Europe/Paris")).unwrap();
        let runs = starts(&s, "2026-03-20T00:00:00Z", "2026-04-01T00:00:00Z");
        let shown: Vec<String> = runs.iter().map(|t| local(*t, chrono_tz::Europe::Paris)).collect();
        assert_eq!(shown, ["2026-03-23 09:00 CET", "2026-03-30 09:00 CEST"]);
    }

    #[test]
    fn previous_start_is_the_slot_a_catch_up_belongs_to() {
        let s = Schedule::parse("daily 02:00", Some("Europe/Paris")).unwrap();
        let prev = s.previous_at_or_before(utc("2026-11-22T10:00:00Z")).unwrap();
        assert_eq!(prev, utc("2026-11-22T01:00:00Z"));
        assert_eq!(s.previous_at_or_before(prev), Some(prev), "at-or-before includes the instant itself");
    }

    #[test]
    fn jitter_is_bounded_stable_and_spread() {
        let slot = utc("2026-11-22T01:00:00Z");
        let j = std::time::Duration::from_secs(600);
        assert_eq!(jitter_for("acme", slot, std::time::Duration::ZERO), std::time::Duration::ZERO);
        assert_eq!(jitter_for("acme", slot, j), jitter_for("acme", slot, j), "same connector and slot, same delay");
        let delays: std::collections::BTreeSet<u64> = (0..100).map(|i| jitter_for(&format!("c{i}"), slot, j).as_millis() as u64).collect();
        assert!(delays.iter().all(|d| *d < 600_000));
        assert!(delays.len() > 90, "100 connectors should get distinct delays; got {}", delays.len());
        let spread = delays.last().unwrap() - delays.first().unwrap();
        assert!(spread > 400_000, "delays should cover most of the window; spread {spread} ms");
    }
}
