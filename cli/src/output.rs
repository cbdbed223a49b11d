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

/// A table with a header row, columns padded to their widest cell.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<String>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  ", w = widths[i]));
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(headers.iter().map(|h| h.to_string()).collect());
    for r in rows {
        out.push_str(&line(r.clone()));
    }
    out
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
        s.push_str(&format!("{k:<w$}  {}\n", cell(v)));
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
