//! Rendering query results for people and machines: an aligned table, JSON
//! like `osqueryi --json`, or CSV. (Stub: filled in by the embedded-host work.)
use crate::hosts::sqlite::QueryResult;
use std::io::Write;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
    Csv,
}

pub fn write(out: &mut dyn Write, result: &QueryResult, format: Format) -> std::io::Result<()> {
    let _ = (result, format);
    writeln!(out, "TODO")
}
