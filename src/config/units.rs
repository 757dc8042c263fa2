//! Human units in config values: durations ("30s", "2m", "8d"), sizes ("2GiB"), and
//! limits that are a count or a percent ("10%", "25"). Each is a serde type read from text,
//! so the raw config shapes hold them typed (`word::Parsed<Size>` …).

use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// Parses "30s", "2m", "1h30m", "8d" (humantime syntax).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim()).map_err(|e| format!("expected a duration such as \"30s\", \"2m\" or \"8d\"; got \"{s}\" ({e})"))
}

/// A duration written as "30s", "2m", "8d".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl FromStr for HumanDuration {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        parse_duration(s).map(HumanDuration)
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        super::word::from_str(d)
    }
}

/// Parses "2GiB", "500MB", "2 GB", "1048576" into bytes: KB/MB/GB are powers of 1000,
/// KiB/MiB/GiB (and the bare K, M, G this config has always read that way) powers of 1024;
/// units are case-insensitive and the B is optional.
pub fn parse_size(s: &str) -> Result<u64, String> {
    // parse-size reads a bare "K" as 1000; here it has always meant KiB, so say so.
    let t = s.trim();
    let binary_shorthand =
        t.ends_with(['k', 'K', 'm', 'M', 'g', 'G', 't', 'T']) && t[..t.len() - 1].ends_with(|c: char| c.is_ascii_digit() || c == ' ');
    let text = if binary_shorthand { format!("{t}i") } else { t.to_string() };
    parse_size::parse_size(&text)
        .map_err(|e| format!("expected a size such as \"2GiB\" or \"500MB\" (units B, KB, MB, GB, KiB, MiB, GiB); got \"{s}\" ({e})"))
}

/// A size in bytes, written as "2GiB" or "500MB".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size(pub u64);

impl FromStr for Size {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        parse_size(s).map(Size)
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        super::word::from_str(d)
    }
}

// `Limit` is the plan's (`plan::settings`); how it is written in the config is read here.
pub use crate::plan::settings::Limit;

impl<'de> Deserialize<'de> for Limit {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        super::word::from_str(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KIB: u64 = 1024;
    const MIB: u64 = 1024 * KIB;
    const GIB: u64 = 1024 * MIB;

    #[test]
    fn durations() {
        for (text, secs) in [("2m", 120), ("30s", 30), ("8d", 8 * 86400), ("1h30m", 5400), (" 0s ", 0), ("10m", 600)] {
            assert_eq!(parse_duration(text), Ok(Duration::from_secs(secs)), "{text}");
        }
        for bad in ["soon", "", "5", "-5m", "2 fortnights"] {
            let e = parse_duration(bad).unwrap_err();
            assert!(e.starts_with("expected a duration such as \"30s\", \"2m\" or \"8d\"; got"), "{bad}: {e}");
        }
    }

    #[test]
    fn sizes_mean_what_they_always_meant() {
        for (text, bytes) in [
            ("2GiB", 2 * GIB),
            ("500MB", 500_000_000),
            ("100MiB", 100 * MIB),
            ("2 GB", 2_000_000_000),
            ("1048576", 1_048_576),
            ("12b", 12),
            ("1kb", 1000),
            ("1KiB", KIB),
            ("1.5GiB", 3 * GIB / 2),
            // The bare letters have always been binary here.
            ("1k", KIB),
            ("3M", 3 * MIB),
            ("2 G", 2 * GIB),
            ("10 k", 10 * KIB),
            ("  64 mib ", 64 * MIB),
        ] {
            assert_eq!(parse_size(text), Ok(bytes), "{text}");
        }
        // Refused since parse-size: a leading dot (write "0.5GiB").
        for bad in ["5 parsecs", "", "GiB", "-5MB", "lots", "99999999999999999999GB", "5bytes", ".5GiB"] {
            let e = parse_size(bad).unwrap_err();
            assert!(e.starts_with("expected a size such as \"2GiB\" or \"500MB\""), "{bad}: {e}");
            assert!(e.contains(&format!("got \"{bad}\"")), "{bad}: {e}");
        }
    }

    #[test]
    fn limits_are_a_count_or_a_percent() {
        for (text, limit) in [
            ("10%", Limit::Percent(10.0)),
            ("0%", Limit::Percent(0.0)),
            ("100%", Limit::Percent(100.0)),
            ("2.5 %", Limit::Percent(2.5)),
            ("25", Limit::Count(25)),
            ("0", Limit::Count(0)),
        ] {
            assert_eq!(Limit::parse(text), Ok(limit), "{text}");
        }
        assert_eq!(Limit::parse("10%").unwrap().allowed(1000), 100);
        assert_eq!(Limit::parse("10%").unwrap().allowed(19), 1, "a percent rounds down");
        assert_eq!(Limit::parse("5%").unwrap().allowed(5), 1, "but never below one: one bad row of a small file is no mass fault");
        assert_eq!(Limit::parse("0%").unwrap().allowed(5), 0, "0% forbids all");
        assert_eq!(Limit::parse("5%").unwrap().allowed(0), 0);
        assert_eq!(Limit::parse("25").unwrap().allowed(1000), 25);
        assert_eq!(Limit::parse("150%"), Err("a percent must be between 0% and 100%; got \"150%\"".into()));
        assert_eq!(Limit::parse("-1%"), Err("a percent must be between 0% and 100%; got \"-1%\"".into()));
        for bad in ["lots", "-3", "1.5", "%", ""] {
            assert_eq!(Limit::parse(bad), Err(format!("expected a count such as \"50\" or a percent such as \"10%\"; got \"{bad}\"")));
        }
        assert_eq!(Limit::Percent(10.0).to_string(), "10%");
        assert_eq!(Limit::Count(7).to_string(), "7");
    }

    #[test]
    fn units_deserialize_through_their_parsers() {
        use crate::config::word::{Parsed, WordError, parse};
        assert_eq!(parse::<Size>("2GiB"), Ok(Size(2 * GIB)));
        assert_eq!(parse::<HumanDuration>("2m"), Ok(HumanDuration(Duration::from_secs(120))));
        assert_eq!(parse::<Limit>("5%"), Ok(Limit::Percent(5.0)));
        assert_eq!(parse::<Limit>("many"), Err(WordError::Invalid(Limit::parse("many").unwrap_err())));
        #[derive(serde::Deserialize)]
        struct T {
            size: Parsed<Size>,
        }
        let t: T = toml::from_str("size = \"5 parsecs\"").unwrap();
        assert_eq!(t.size.0, Err(WordError::Invalid(parse_size("5 parsecs").unwrap_err())));
    }
}
