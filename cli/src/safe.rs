//! Text from queues, made safe to print.
//!
//! Whatever a queued message carries was written by whoever could send to
//! the queue. Printed raw, a carriage return rewrites the line a reader
//! trusts, a newline forges a record, C1 controls (U+009B is CSI in some
//! terminals) and ANSI sequences drive the terminal, and bidirectional
//! overrides (U+202E) show text in another order than it is. So:
//!
//! * [`shown`] is a value for people: control and invisible formatting
//!   characters escaped (`\u{1b}`, `\r`), cut to a length with `…`;
//! * [`escaped`] is the same without the cut (error messages);
//! * [`json`] is JSON for machines: complete, and ASCII-safe where it
//!   matters (serde_json escapes U+0000–U+001F; this also escapes DEL, the
//!   C1 controls and the formatting characters as `\uXXXX`), so that even
//!   `--json` printed to a terminal cannot drive it.

use std::fmt::Write;

/// Whether printing `c` raw could move the cursor, drive the terminal or
/// reorder what is shown: control characters (C0, DEL, C1), and the
/// invisible formatting ones (bidirectional marks, embeddings, overrides and
/// isolates, zero-width characters, line and paragraph separators).
fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}'
                | '\u{200b}'..='\u{200f}'
                | '\u{2028}'..='\u{202e}'
                | '\u{2060}'..='\u{2069}'
                | '\u{feff}'
        )
}

/// `text` with every [unsafe](is_unsafe) character escaped, cut after
/// `max_chars` characters with an ellipsis.
pub(crate) fn shown(text: &str, max_chars: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max_chars.saturating_mul(4)));
    for (count, c) in text.chars().enumerate() {
        if count == max_chars {
            out.push('…');
            break;
        }
        if is_unsafe(c) {
            // Writing to a String cannot fail.
            let _ = write!(out, "{}", c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// `text` with every [unsafe](is_unsafe) character escaped, whole.
pub(crate) fn escaped(text: &str) -> String {
    shown(text, usize::MAX)
}

/// `value` as pretty-printed JSON, with the characters serde_json leaves raw
/// but a terminal would act on escaped as `\uXXXX`: still the same JSON.
pub(crate) fn json(value: &impl serde::Serialize) -> anyhow::Result<String> {
    let text = serde_json::to_string_pretty(value)?;
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        // serde_json escapes U+0000 to U+001F inside strings, so any left
        // below U+0080 is the layout's own whitespace: kept.
        if u32::from(c) >= 0x7f && is_unsafe(c) {
            // All of them are in the Basic Multilingual Plane: one \u each.
            let _ = write!(out, "\\u{:04x}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_and_overrides_are_escaped() {
        let hostile = "a\u{1b}[2J\r\nb\u{9b}31m\u{202e}c\u{7f}\t";
        let out = shown(hostile, 100);
        assert!(!out.chars().any(is_unsafe), "{out:?}");
        assert_eq!(out, r"a\u{1b}[2J\r\nb\u{9b}31m\u{202e}c\u{7f}\t");
        assert_eq!(shown("plain text, ünïcode ✓", 100), "plain text, ünïcode ✓");
    }

    #[test]
    fn long_text_is_cut_at_a_character() {
        assert_eq!(shown("ééééé", 3), "ééé…");
        assert_eq!(shown("abc", 3), "abc");
        assert_eq!(shown("", 3), "");
        assert_eq!(escaped(&"x".repeat(1000)).len(), 1000);
    }

    #[test]
    fn json_stays_valid_and_terminal_safe() {
        let value = serde_json::json!({ "k": "a\u{1b}b\u{9b}c\u{202e}d\u{7f}é\n" });
        let out = json(&value).expect("serializable");
        assert!(!out.chars().any(|c| u32::from(c) >= 0x7f && is_unsafe(c)));
        assert!(!out.contains('\u{1b}'));
        let back: serde_json::Value = serde_json::from_str(&out).expect("still JSON");
        assert_eq!(back, value, "the same values");
    }
}
