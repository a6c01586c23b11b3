//! Results as JSON on stdout, and text from a server made safe to show in
//! a terminal.
//!
//! Whatever a server sends (a tool's result, an error message, a progress
//! message) may be hostile. Shown raw in a terminal, control characters could
//! move the cursor, rewrite what is on screen or set the window title, and
//! bidirectional overrides could make text read other than it is. serde_json
//! already escapes C0 controls (ESC among them); [`escape_unsafe`] escapes the
//! rest (DEL, the C1 controls, bidi overrides) as `\uXXXX`, which in JSON
//! means the same string, so `jq` sees exactly what the server sent.

use std::borrow::Cow;
use std::io::Write;

use serde::Serialize;

use crate::exit::Failure;

/// Writes `value` as pretty JSON and a newline on stdout, the one thing a
/// command writes there.
pub(crate) fn print_json(value: &impl Serialize) -> Result<(), Failure> {
    let text = serde_json::to_string_pretty(value).map_err(Failure::other)?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{}", escape_unsafe(&text))
        .and_then(|()| stdout.flush())
        .map_err(|error| Failure::other(anyhow::Error::new(error).context("writing to stdout")))
}

/// `value` as JSON on one line, made safe for a terminal.
pub(crate) fn json_line(value: &impl Serialize) -> String {
    match serde_json::to_string(value) {
        Ok(text) => escape_unsafe(&text).into_owned(),
        Err(error) => format!("(cannot be shown: {error})"),
    }
}

/// `text` with every character a terminal could act on (other than line
/// breaks and tabs) written as a `\u{..}` escape.
pub(crate) fn printable(text: &str) -> Cow<'_, str> {
    if !text
        .chars()
        .any(|c| unsafe_char(c) && c != '\n' && c != '\t')
    {
        return Cow::Borrowed(text);
    }
    Cow::Owned(
        text.chars()
            .map(|c| {
                if unsafe_char(c) && c != '\n' && c != '\t' {
                    c.escape_unicode().to_string()
                } else {
                    c.to_string()
                }
            })
            .collect(),
    )
}

/// JSON text `json` with the characters a terminal could act on that
/// serde_json leaves as they are (all but the C0 controls, which it escapes
/// in strings; outside them, line breaks and tabs are layout) escaped as
/// `\uXXXX`. Such characters can only stand inside JSON strings, where the
/// escape means the same.
fn escape_unsafe(json: &str) -> Cow<'_, str> {
    let unescaped = |c: char| c >= '\u{7f}' && unsafe_char(c);
    if !json.chars().any(unescaped) {
        return Cow::Borrowed(json);
    }
    let mut escaped = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        if unescaped(c) {
            // All of them are in the Basic Multilingual Plane: one escape each.
            escaped.push_str(&format!("\\u{:04x}", c as u32));
        } else {
            escaped.push(c);
        }
    }
    Cow::Owned(escaped)
}

/// Control characters (C0, DEL, C1) and the bidirectional overrides and
/// isolates, which reorder how text is displayed.
fn unsafe_char(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_escapes_what_a_terminal_would_act_on_and_means_the_same() {
        let hostile = "a\u{1b}]0;owned\u{7}b\u{9b}2Jc\u{202e}d\u{7f}";
        let value = serde_json::json!({ "text": hostile });
        let text = json_line(&value);
        assert!(
            text.chars().all(|c| !unsafe_char(c)),
            "nothing a terminal acts on: {text:?}"
        );
        let back: serde_json::Value = serde_json::from_str(&text).expect("still JSON");
        assert_eq!(back["text"], hostile, "the same string once parsed");
    }

    #[test]
    fn pretty_json_keeps_its_layout() {
        let value = serde_json::json!({ "a": ["x\ny", 1], "b": "\u{9b}" });
        let pretty = serde_json::to_string_pretty(&value).expect("json");
        let shown = escape_unsafe(&pretty);
        assert!(shown.contains("\n  \"a\""), "line breaks kept: {shown}");
        assert!(shown.contains("\\u009b"), "C1 escaped: {shown}");
        let back: serde_json::Value = serde_json::from_str(&shown).expect("still JSON");
        assert_eq!(back, value);
    }

    #[test]
    fn printable_escapes_controls_but_keeps_line_breaks() {
        assert_eq!(printable("plain text"), "plain text");
        assert_eq!(printable("two\nlines\tand tab"), "two\nlines\tand tab");
        assert_eq!(printable("a\u{1b}[2Jb"), "a\\u{1b}[2Jb");
        assert_eq!(printable("x\u{9b}y\u{202e}z"), "x\\u{9b}y\\u{202e}z");
    }
}
