//! Text shown to people: a value from an export cut to an excerpt for a message, outside text
//! escaped for a terminal, numbers grouped for a reader. Every stage that words a message
//! uses it (format and mapping quote cells, preflight counts bytes, the CLI prints), so it
//! belongs to none of them.
//!
//! Text from outside — file names a server lists, values and messages quoting an export — is
//! printed with control characters and bidirectional overrides escaped (`\u{1b}`), so a name
//! cannot move the cursor, recolour the terminal, retitle the window or reorder what is shown
//! around it. `--json` output needs none of this: JSON escapes control characters itself.

use std::borrow::Cow;

/// One line of outside text, escaped for a terminal; borrowed when nothing needs escaping
/// (nearly always).
pub fn shown(s: &str) -> Cow<'_, str> {
    if !s.chars().any(needs_escape) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if needs_escape(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Text of several lines (an error with its causes): each line as `shown`, the line breaks
/// kept.
pub fn shown_lines(s: &str) -> String {
    s.split('\n').map(shown).collect::<Vec<_>>().join("\n")
}

/// How numbers are printed: grouped and with units for a person at a terminal (`1,000,000`,
/// `4m 15s`), plain when stdout is a pipe or a file, where a script may read them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Numbers {
    pub human: bool,
}

impl Numbers {
    /// Human when stdout is a terminal.
    pub fn for_stdout() -> Numbers {
        Numbers { human: std::io::IsTerminal::is_terminal(&std::io::stdout()) }
    }

    /// `1,000,000`, or `1000000`.
    pub fn count(self, n: u64) -> String {
        if !self.human {
            return n.to_string();
        }
        let digits = n.to_string();
        let mut out = String::with_capacity(digits.len() + digits.len() / 3);
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                out.push(',');
            }
            out.push(c);
        }
        out
    }

    /// A duration given in milliseconds: `4m 15s`, `1.2s`, `850ms`; or `255000 ms`.
    pub fn millis(self, ms: u64) -> String {
        if !self.human {
            return format!("{ms} ms");
        }
        match ms {
            0..1_000 => format!("{ms}ms"),
            1_000..10_000 => format!("{:.1}s", ms as f64 / 1000.0),
            // Whole seconds from here: "1h 2m 3s", not "1h 2m 3s 417ms".
            _ => humantime::format_duration(std::time::Duration::from_secs(ms / 1000)).to_string(),
        }
    }
}

/// A value of the file as a message shows it: at most `EXCERPT_CHARS` characters, control
/// characters escaped, so no message ever carries more than a bounded piece of a file.
pub fn excerpt(v: &str) -> String {
    const EXCERPT_CHARS: usize = 80;
    let mut out = String::new();
    for (n, c) in v.chars().enumerate() {
        if n == EXCERPT_CHARS {
            out.push_str(&format!("… ({} characters)", v.chars().count()));
            break;
        }
        if c.is_control() { out.extend(c.escape_default()) } else { out.push(c) }
    }
    out
}

fn needs_escape(c: char) -> bool {
    // Cc (C0, DEL, C1), and the marks that reorder text (Unicode's "Trojan Source" set).
    c.is_control() || matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// A duration as a person reads it: a retention of 180 days is "180 days" (humantime would
/// say "5months 27days 19h 12m", counting months of 30.44 days), a sub-second run "420 ms"
/// (not "0s"), anything else in humantime's words, whole seconds.
pub fn duration_words(d: std::time::Duration) -> String {
    const DAY: u64 = 86_400;
    let secs = d.as_secs();
    if secs == 0 {
        return format!("{} ms", d.as_millis());
    }
    if secs.is_multiple_of(DAY) {
        let days = secs / DAY;
        return if days == 1 { "1 day".into() } else { format!("{days} days") };
    }
    humantime::format_duration(std::time::Duration::from_secs(secs)).to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn durations_read_as_people_say_them() {
        use super::duration_words;
        use std::time::Duration;
        assert_eq!(duration_words(Duration::from_secs(180 * 86_400)), "180 days");
        assert_eq!(duration_words(Duration::from_secs(86_400)), "1 day");
        assert_eq!(duration_words(Duration::from_millis(420)), "420 ms");
        assert_eq!(duration_words(Duration::from_millis(1_518)), "1s");
        assert_eq!(duration_words(Duration::from_secs(3_725)), "1h 2m 5s");
    }

    use super::*;

    #[test]
    fn escapes_what_a_terminal_would_obey() {
        assert!(matches!(shown("employees_2026-01-01.csv"), Cow::Borrowed(_)));
        assert_eq!(shown("Zoë 名前.csv"), "Zoë 名前.csv");
        assert_eq!(shown("a\u{1b}[2J\u{1b}]0;owned\u{7}.csv"), "a\\u{1b}[2J\\u{1b}]0;owned\\u{7}.csv");
        assert_eq!(shown("x\ny\rz\tw\0"), "x\\ny\\rz\\tw\\u{0}");
        assert_eq!(shown("invoice\u{202e}vsc.exe"), "invoice\\u{202e}vsc.exe");
        assert_eq!(shown("\u{9b}31m"), "\\u{9b}31m", "the one-byte CSI of C1");
        assert_eq!(shown_lines("error: a\u{1b}b\n  caused by: c"), "error: a\\u{1b}b\n  caused by: c");
    }

    #[test]
    fn numbers_are_human_on_a_terminal_and_plain_otherwise() {
        let h = Numbers { human: true };
        assert_eq!(
            [h.count(0), h.count(999), h.count(1000), h.count(1_000_000), h.count(12_345_678)],
            ["0", "999", "1,000", "1,000,000", "12,345,678"]
        );
        assert_eq!([h.millis(850), h.millis(1234), h.millis(255_000), h.millis(3_723_417)], ["850ms", "1.2s", "4m 15s", "1h 2m 3s"]);
        let plain = Numbers { human: false };
        assert_eq!((plain.count(1_000_000), plain.millis(255_000)), ("1000000".to_string(), "255000 ms".to_string()));
    }

    #[test]
    fn excerpts_are_bounded_and_escaped() {
        assert_eq!(excerpt("plain"), "plain");
        assert_eq!(excerpt("a\u{0}b\x1b[31m"), "a\\u{0}b\\u{1b}[31m");
        let long = "x".repeat(100_000);
        let e = excerpt(&long);
        assert!(e.len() < 120 && e.ends_with("… (100000 characters)"), "{e}");
    }
}
