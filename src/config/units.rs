//! Human units in config values: durations ("30s", "2m", "8d"), sizes ("2GiB"), and
//! limits that are a count or a percent ("10%", "25").

use std::time::Duration;

/// Parses "30s", "2m", "1h30m", "8d" (humantime syntax).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim()).map_err(|e| format!("expected a duration such as \"30s\", \"2m\" or \"8d\"; got \"{s}\" ({e})"))
}

/// Parses "2GiB", "500MB", "1048576" into bytes.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().map_err(|_| format!("expected a size such as \"2GiB\" or \"500MB\"; got \"{s}\""))?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "kib" | "k" => 1024.0,
        "mib" | "m" => 1024.0 * 1024.0,
        "gib" | "g" => 1024.0 * 1024.0 * 1024.0,
        _ => return Err(format!("unknown size unit \"{unit}\" in \"{s}\"; use B, KiB, MiB, GiB, KB, MB or GB")),
    };
    Ok((n * mult) as u64)
}

/// A threshold given as a count of people or a percent of a base number.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Limit {
    Count(u64),
    Percent(f64),
}

impl Limit {
    pub fn parse(s: &str) -> Result<Limit, String> {
        let t = s.trim();
        if let Some(p) = t.strip_suffix('%') {
            let v: f64 =
                p.trim().parse().map_err(|_| format!("expected a count such as \"50\" or a percent such as \"10%\"; got \"{s}\""))?;
            if !(0.0..=100.0).contains(&v) {
                return Err(format!("a percent must be between 0% and 100%; got \"{s}\""));
            }
            Ok(Limit::Percent(v))
        } else {
            t.parse::<u64>()
                .map(Limit::Count)
                .map_err(|_| format!("expected a count such as \"50\" or a percent such as \"10%\"; got \"{s}\""))
        }
    }

    /// The largest number allowed, given the base the percent applies to.
    pub fn allowed(self, base: u64) -> u64 {
        match self {
            Limit::Count(n) => n,
            Limit::Percent(p) => ((base as f64) * p / 100.0).floor() as u64,
        }
    }
}

impl std::fmt::Display for Limit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Limit::Count(n) => write!(f, "{n}"),
            Limit::Percent(p) => write!(f, "{p}%"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_sizes_limits() {
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("8d").unwrap(), Duration::from_secs(8 * 86400));
        assert!(parse_duration("soon").is_err());
        assert_eq!(parse_size("2GiB").unwrap(), 2 * 1024 * 1024 * 1024);
        assert_eq!(parse_size("500MB").unwrap(), 500_000_000);
        assert!(parse_size("5 parsecs").is_err());
        assert_eq!(Limit::parse("10%").unwrap().allowed(1000), 100);
        assert_eq!(Limit::parse("25").unwrap().allowed(1000), 25);
        assert!(Limit::parse("150%").is_err());
        assert!(Limit::parse("lots").is_err());
    }
}
