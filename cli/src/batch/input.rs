//! Reading `asyncmcp batch`'s input: one call per line,
//! `{"key": …, "tool": …, "arguments": {…}}`, checked whole before anything
//! is sent, so that a bad line stops the run with its line number.
//!
//! A key is a JSON string or integer, at most [`MAX_KEY`] bytes as JSON
//! text, unique in the file. Its JSON text (`"a"`, `7`) is its identity: the
//! string `"7"` and the number `7` are different keys, and each result line
//! names the key as the input wrote it.

use std::collections::HashMap;

use asyncmcp::client::batch::Call;
use serde_json::Value;

/// The longest key, as JSON text, in bytes.
pub(crate) const MAX_KEY: usize = 256;

/// One call of the input.
#[derive(Debug, Clone)]
pub(crate) struct Line {
    /// The key as the input wrote it.
    pub(crate) key: Value,
    /// The key's JSON text: its identity.
    pub(crate) id: String,
    /// What to call.
    pub(crate) call: Call,
}

/// Parses the whole input; the first bad line or duplicate key is the error,
/// naming its line.
pub(crate) fn parse(text: &str) -> Result<Vec<Line>, String> {
    let mut lines = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (index, raw) in text.lines().enumerate() {
        let number = index + 1;
        if raw.trim().is_empty() {
            continue;
        }
        let line = parse_line(raw).map_err(|reason| format!("line {number}: {reason}"))?;
        if let Some(first) = seen.insert(line.id.clone(), number) {
            return Err(format!(
                "line {number}: duplicate key {} (first on line {first}); every key must be unique",
                line.id
            ));
        }
        lines.push(line);
    }
    Ok(lines)
}

fn parse_line(raw: &str) -> Result<Line, String> {
    let value: Value =
        serde_json::from_str(raw).map_err(|error| format!("not valid JSON: {error}"))?;
    let Value::Object(mut object) = value else {
        return Err(
            r#"expected an object like {"key": 1, "tool": "add", "arguments": {"a": 1}}"#.into(),
        );
    };
    let key = object
        .remove("key")
        .ok_or_else(|| "no \"key\"".to_owned())?;
    match &key {
        Value::String(_) => {}
        Value::Number(n) if n.is_i64() || n.is_u64() => {}
        _ => return Err("\"key\" must be a string or an integer".into()),
    }
    let id = key.to_string();
    if id.len() > MAX_KEY {
        return Err(format!("\"key\" is longer than {MAX_KEY} bytes"));
    }
    let tool = match object.remove("tool") {
        Some(Value::String(tool)) if !tool.is_empty() => tool,
        Some(_) => return Err("\"tool\" must be a non-empty string".into()),
        None => return Err("no \"tool\"".into()),
    };
    let arguments = match object.remove("arguments") {
        None | Some(Value::Null) => None,
        Some(Value::Object(arguments)) => Some(arguments),
        Some(_) => return Err("\"arguments\" must be a JSON object".into()),
    };
    if let Some(other) = object.keys().next() {
        return Err(format!(
            "unknown member {:?} (a line has \"key\", \"tool\" and \"arguments\")",
            other.chars().take(40).collect::<String>()
        ));
    }
    Ok(Line {
        key,
        id,
        call: Call::new(tool, arguments),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_lines_keep_their_key_as_written() {
        let lines = parse(
            "{\"key\": \"a\", \"tool\": \"add\", \"arguments\": {\"a\": 1, \"b\": 2}}\n\n{\"key\": 7, \"tool\": \"echo\"}\n",
        )
        .expect("valid");
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].id, "\"a\"");
        assert_eq!(lines[1].id, "7");
        assert_eq!(lines[1].call.arguments, None);
    }

    #[test]
    fn bad_lines_are_named_by_number() {
        let ok = r#"{"key": 1, "tool": "add"}"#;
        for (bad, says) in [
            ("{\"key\": 2, \"tool\": \"add\"", "not valid JSON"),
            ("[1]", "expected an object"),
            (r#"{"tool": "add"}"#, "no \"key\""),
            (r#"{"key": 1.5, "tool": "add"}"#, "string or an integer"),
            (r#"{"key": 2}"#, "no \"tool\""),
            (
                r#"{"key": 2, "tool": "add", "arguments": [1]}"#,
                "JSON object",
            ),
            (
                r#"{"key": 2, "tool": "add", "argument": {}}"#,
                "unknown member",
            ),
            (
                r#"{"key": 1, "tool": "echo"}"#,
                "duplicate key 1 (first on line 1)",
            ),
        ] {
            let error = parse(&format!("{ok}\n{bad}\n")).expect_err(bad);
            assert!(error.starts_with("line 2: "), "{bad}: {error}");
            assert!(error.contains(says), "{bad}: {error}");
        }
        let long = format!(r#"{{"key": "{}", "tool": "add"}}"#, "k".repeat(300));
        assert!(parse(&long).expect_err("long").contains("longer than"));
    }

    #[test]
    fn a_string_and_a_number_are_different_keys() {
        let lines = parse("{\"key\": \"7\", \"tool\": \"a\"}\n{\"key\": 7, \"tool\": \"a\"}")
            .expect("valid");
        assert_ne!(lines[0].id, lines[1].id);
    }
}
