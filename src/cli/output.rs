//! Human output: aligned tables that read at a glance.

use jiff::Timestamp;

use crate::model::duration::format_ms;

/// Prints rows under a header with columns padded to their widest cell; the last column is not
/// padded so long details do not push trailing spaces.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let cols = header.len();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate().take(cols) {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(cell);
            } else {
                s.push_str(&format!("{cell:<w$}  ", w = widths[i]));
            }
        }
        out.push_str(s.trim_end());
        out.push('\n');
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
    out
}

/// `3h12m ago`, `in 5m`, or `-`.
pub fn relative(now: Timestamp, t: Option<Timestamp>) -> String {
    match t {
        None => "-".into(),
        Some(t) => {
            let ms = t.as_millisecond() - now.as_millisecond();
            if ms <= 0 {
                format!("{} ago", format_ms(-ms))
            } else {
                format!("in {}", format_ms(ms))
            }
        }
    }
}

/// `-` for absent strings.
pub fn or_dash(s: Option<&str>) -> String {
    s.filter(|s| !s.is_empty()).unwrap_or("-").to_string()
}

/// `s` fit for a terminal: control characters (escape sequences, carriage returns, line breaks,
/// C1 codes) shown escaped, `\n` or `\u{1b}`, so text from plugins, files and the store can
/// neither drive the terminal nor forge lines of output.
pub fn clean(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", u32::from(c))),
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Each line of `text` [`clean`]ed: for multi-line text whose line breaks are its own, such as
/// a list of problems.
pub fn clean_lines(text: &str) -> String {
    text.lines().map(|l| format!("{}\n", clean(l))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_the_rest_kept() {
        assert_eq!(clean("plain → text"), "plain → text");
        assert_eq!(
            clean("\u{1b}[31mred\nline\r\u{7}\u{9b}\t"),
            "\\u{1b}[31mred\\nline\\r\\u{7}\\u{9b}\\t"
        );
        assert_eq!(clean_lines("a\u{1b}\nb\n"), "a\\u{1b}\nb\n");
    }
}
