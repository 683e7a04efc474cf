//! YAML parsing with every error turned into a `path:line:col` diagnostic.

use std::path::Path;

use serde::de::DeserializeOwned;

use super::diagnostic::{Diagnostic, Diagnostics};

/// Parses `text`; on failure records one diagnostic at the error's position and returns `None`.
pub fn parse<T: DeserializeOwned>(path: &Path, text: &str, diags: &mut Diagnostics) -> Option<T> {
    let options = serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_depth: 64,
            max_aliases: 64,
            max_documents: 1,
        },
    };
    match serde_saphyr::from_str_with_options::<T>(text, options) {
        Ok(v) => Some(v),
        Err(e) => {
            let (line, col) = e
                .location()
                .map(|l| (l.line(), l.column()))
                .unwrap_or((1, 1));
            diags.push(Diagnostic::at(
                path,
                line,
                col,
                explain(message(&e), text, line),
            ));
            None
        }
    }
}

/// Makes serde's terse type errors readable and names the key they concern.
fn explain(message: String, text: &str, line: u64) -> String {
    let plain = match message.as_str() {
        "invalid i64" | "invalid u64" | "invalid i32" | "invalid u32" | "invalid usize" => {
            "expected an integer".to_string()
        }
        "invalid f64" | "invalid f32" => "expected a number".to_string(),
        "invalid bool" => "expected true or false".to_string(),
        _ => message,
    };
    let key = usize::try_from(line)
        .ok()
        .and_then(|l| text.lines().nth(l.checked_sub(1)?))
        .and_then(|l| l.trim_start().trim_start_matches("- ").split_once(':'))
        .map(|(k, _)| k.trim())
        .filter(|k| {
            !k.is_empty()
                && k.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        });
    match key {
        Some(k) if !plain.contains(k) => format!("`{k}`: {plain}"),
        _ => plain,
    }
}

/// The error's message without the source snippet or the trailing position (we print our own).
fn message(e: &serde_saphyr::Error) -> String {
    let text = e.without_snippet().to_string();
    let first = text.lines().next().unwrap_or("invalid YAML").trim();
    let trimmed = match first.rfind(" at line ") {
        Some(i) => &first[..i],
        None => first,
    };
    let trimmed = trimmed.trim_start_matches("error: ").trim();
    if trimmed.is_empty() {
        "invalid YAML".to_string()
    } else {
        trimmed.to_string()
    }
}
