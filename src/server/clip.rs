//! Text taken from a message, made safe to log.
//!
//! Request ids, client and session ids, method names and reply addresses
//! are whatever the sender wrote: a forged message could make each one a
//! megabyte long, or break a log line in two. [`clip`] shows at most
//! [`MAX_LOGGED_CHARS`] characters of such a text, then an ellipsis, with
//! control characters escaped.

use std::fmt;

/// The most characters of a message's text that a log line shows.
pub(super) const MAX_LOGGED_CHARS: usize = 64;

/// `text` as a log line shows it: see the [module docs](self).
pub(super) fn clip(text: &str) -> Clipped<'_> {
    Clipped(text)
}

/// Displays its text cut to [`MAX_LOGGED_CHARS`] characters.
pub(super) struct Clipped<'a>(&'a str);

impl fmt::Display for Clipped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Cut at a character, never inside one.
        let (shown, cut) = match self.0.char_indices().nth(MAX_LOGGED_CHARS) {
            Some((at, _)) => (&self.0[..at], true),
            None => (self.0, false),
        };
        for c in shown.chars() {
            if c.is_control() {
                write!(f, "{}", c.escape_default())?;
            } else {
                f.write_fmt(format_args!("{c}"))?;
            }
        }
        if cut {
            f.write_str("…")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_shown_whole() {
        assert_eq!(clip("req-1").to_string(), "req-1");
        assert_eq!(clip("").to_string(), "");
        let exact = "a".repeat(MAX_LOGGED_CHARS);
        assert_eq!(clip(&exact).to_string(), exact);
    }

    #[test]
    fn long_text_is_cut_with_an_ellipsis() {
        let long = "b".repeat(10_000);
        let shown = clip(&long).to_string();
        assert_eq!(shown, format!("{}…", "b".repeat(MAX_LOGGED_CHARS)));
    }

    #[test]
    fn cuts_at_a_character_boundary() {
        // Multi-byte characters: a byte-based cut at 64 would fall inside
        // one and panic.
        let long = "é".repeat(100) + &"😀".repeat(100);
        let shown = clip(&long).to_string();
        assert_eq!(shown.chars().count(), MAX_LOGGED_CHARS + 1);
        assert_eq!(shown, format!("{}…", "é".repeat(MAX_LOGGED_CHARS)));
        let emoji = "😀".repeat(65);
        assert_eq!(
            clip(&emoji).to_string(),
            format!("{}…", "😀".repeat(MAX_LOGGED_CHARS))
        );
    }

    #[test]
    fn control_characters_cannot_break_a_line() {
        let shown = clip("id\nforged log line\r\u{1b}[31m").to_string();
        assert!(!shown.contains('\n') && !shown.contains('\r') && !shown.contains('\u{1b}'));
        assert!(shown.starts_with("id\\nforged log line\\r"), "{shown}");
    }
}
