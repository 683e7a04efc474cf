//! Human output: aligned tables that read at a glance.

use jiff::Timestamp;

use crate::config::duration::format_ms;

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
