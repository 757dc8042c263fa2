//! Text from outside — file names a server lists, values and messages quoting an export — as
//! it is printed for a human. Control characters and bidirectional overrides are escaped
//! (`\u{1b}`), so a name cannot move the cursor, recolour the terminal, retitle the window
//! or reorder what is shown around it. `--json` output needs none of this: JSON escapes
//! control characters itself.

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

fn needs_escape(c: char) -> bool {
    // Cc (C0, DEL, C1), and the marks that reorder text (Unicode's "Trojan Source" set).
    c.is_control() || matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
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
}
