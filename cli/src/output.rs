//! Human tables by default, JSON for scripts, with the same fields. A closed stdout pipe
//! is not an error (main treats BrokenPipe as success).

use std::io::{IsTerminal, Write};

use anyhow::Result;
use serde_json::{Map, Value};

use crate::opt::Output;

pub fn print(s: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(s.as_bytes())?;
    out.flush()?;
    Ok(())
}

pub fn json(v: &impl serde::Serialize) -> Result<()> {
    print(&format!("{}\n", serde_json::to_string_pretty(v)?))
}

/// One JSON object on one line (streams, such as import progress records).
pub fn json_line(v: &impl serde::Serialize) -> Result<()> {
    print(&format!("{}\n", serde_json::to_string(v)?))
}

pub fn stdout_is_terminal() -> bool {
    std::io::stdout().is_terminal()
}

fn cell(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Widest a padded (not last) table column gets; longer cells are cut with "…" (the JSON
/// output has them whole).
const MAX_COLUMN: usize = 60;

/// A cell as a table shows it: control characters escaped, so that no value can break a
/// row or forge one.
fn shown(c: &str) -> String {
    escape_unsafe(c)
}

/// `s` with each control, line-separator or text-direction character written as an escape
/// (`\u{202e}`): what dirctl prints of names it did not choose (cells, error messages).
pub fn escape_unsafe(s: &str) -> String {
    if !s.chars().any(engine::directory::is_unsafe_char) {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if engine::directory::is_unsafe_char(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

fn cut(c: String) -> String {
    if c.chars().count() <= MAX_COLUMN {
        return c;
    }
    let mut s: String = c.chars().take(MAX_COLUMN - 1).collect();
    s.push('…');
    s
}

/// A table with a header row, columns padded to their widest cell.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let n = headers.len();
    let fit = |cells: &[String]| -> Vec<String> {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| if i + 1 < n { cut(shown(c)) } else { shown(c) })
            .collect()
    };
    let rows: Vec<Vec<String>> = rows.iter().map(|r| fit(r)).collect();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
    }
    let line = |cells: &[String]| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            s.push_str(c);
            if i + 1 < cells.len() {
                let w = widths.get(i).copied().unwrap_or(0);
                s.extend(std::iter::repeat_n(
                    ' ',
                    w.saturating_sub(c.chars().count()) + 2,
                ));
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(&headers.iter().map(|h| h.to_string()).collect::<Vec<_>>());
    for r in &rows {
        out.push_str(&line(r));
    }
    out
}

/// A table of `items`, each row made by `row`.
pub fn table_by<T>(
    headers: &[&str],
    items: impl IntoIterator<Item = T>,
    row: impl FnMut(T) -> Vec<String>,
) -> String {
    let rows: Vec<_> = items.into_iter().map(row).collect();
    table(headers, &rows)
}

/// A table row of values as they display.
pub fn row(values: &[&dyn std::fmt::Display]) -> Vec<String> {
    values.iter().map(|v| v.to_string()).collect()
}

/// A table of objects, each row the values of their `fields` (the headers).
pub fn objects_table(fields: &[&str], objs: &[Map<String, Value>]) -> String {
    table_by(fields, objs, |o| cells(o, fields))
}

/// An object as FIELD VALUE lines, plus trailing extra lines (token, served by).
pub fn object(obj: &Map<String, Value>, extra: &[(&str, String)]) -> String {
    let w = obj
        .keys()
        .map(|k| k.len())
        .chain(extra.iter().map(|(k, _)| k.len()))
        .max()
        .unwrap_or(0);
    let mut s = String::new();
    for (k, v) in obj {
        s.push_str(&format!("{k:<w$}  {}\n", shown(&cell(v))));
    }
    for (k, v) in extra {
        s.push_str(&format!("{k:<w$}  {v}\n"));
    }
    s
}

pub fn emit(output: Output, json_value: &Value, human: impl FnOnce() -> String) -> Result<()> {
    match output {
        Output::Json => json(json_value),
        Output::Table => print(&human()),
    }
}

pub fn cells(obj: &Map<String, Value>, fields: &[&str]) -> Vec<String> {
    fields
        .iter()
        .map(|f| obj.get(*f).map(cell).unwrap_or_default())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_cuts_long_cells_and_escapes_control_characters() {
        let long = "W".repeat(70_000);
        let t = table(
            &["id", "name", "note"],
            &[vec![long.clone(), "Eve\n0000  forged".into(), long]],
        );
        let lines: Vec<_> = t.lines().collect();
        assert_eq!(lines.len(), 2, "{t}");
        assert!(lines[1].starts_with(&format!("{}…", "W".repeat(MAX_COLUMN - 1))));
        assert!(lines[1].contains("Eve\\n0000  forged"));
        // The last column is not padded and not cut.
        assert!(lines[1].ends_with(&"W".repeat(70_000)));
    }
}
