//! When runs start: the schedule syntax of `connectors.toml` ("daily 02:00",
//! "weekly mon 02:00", or cron with 5 or 6 fields) evaluated in the connector's IANA
//! timezone. croner does the DST-correct arithmetic; this module only translates.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds};

/// A parsed schedule in its timezone.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub spec: String,
    pub cron: Cron,
    pub tz: Tz,
}

impl Schedule {
    /// Parses a schedule and a timezone name ("Europe/Paris"; empty for UTC).
    pub fn parse(spec: &str, tz: Option<&str>) -> Result<Schedule, String> {
        let tz: Tz = match tz {
            None => Tz::UTC,
            Some(name) => name.parse().map_err(|_| {
                format!("expected an IANA timezone such as \"Europe/Paris\" or \"America/New_York\"; got \"{name}\"")
            })?,
        };
        let pattern = to_cron(spec)?;
        let cron = CronParser::builder()
            .seconds(Seconds::Optional)
            .build()
            .parse(&pattern)
            .map_err(|e| {
                format!(
                    "expected \"daily HH:MM\", \"weekly DAY HH:MM\" or a cron expression (5 fields, or 6 with seconds); got \"{spec}\" ({e})"
                )
            })?;
        Ok(Schedule { spec: spec.to_string(), cron, tz })
    }

    /// The first start strictly after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = after.with_timezone(&self.tz);
        self.cron
            .find_next_occurrence(&local, false)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }

    /// The last start at or before `at` (for catch-up after downtime).
    pub fn previous_at_or_before(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = at.with_timezone(&self.tz);
        self.cron
            .find_previous_occurrence(&local, true)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }
}

/// "daily 02:00" → "0 2 * * *"; "weekly mon 02:00" → "0 2 * * MON"; anything else is cron.
fn to_cron(spec: &str) -> Result<String, String> {
    let words: Vec<&str> = spec.split_whitespace().collect();
    let hm = |s: &str| -> Result<(u32, u32), String> {
        let (h, m) = s
            .split_once(':')
            .ok_or_else(|| format!("expected a time HH:MM in \"{spec}\"; got \"{s}\""))?;
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
        ["daily" | "weekly", ..] => Err(format!(
            "expected \"daily HH:MM\" or \"weekly DAY HH:MM\"; got \"{spec}\""
        )),
        _ => Ok(spec.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
