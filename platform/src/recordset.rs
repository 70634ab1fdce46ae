//! A batch's rows as one statement parameter: one `jsonb` array, read in the statement with
//! `jsonb_to_recordset`. The statement's text is then the same whatever the batch's size, so
//! each connection prepares it once and Postgres keeps its plan (a custom plan for the first
//! five runs, then the generic one). A `VALUES` list with a placeholder per cell was a new
//! statement for every size: parsed, described (a round trip more) and planned again nearly
//! every time it ran.
//!
//! For statements that insert a batch, not for those that join one to a table: Postgres takes
//! the recordset for 100 rows, and a generic plan made while the table was small scans it
//! whole as it grows (docs/BENCHMARKS.md, fifteenth reading).
//!
//! A row is a JSON object whose keys are the record's columns; `null` is SQL `NULL`, in a
//! `jsonb` column too (a statement that stores a JSON `null` there writes
//! `COALESCE(column, 'null'::jsonb)`). Each column's text goes through its type's input
//! function, so a `bytea` cell is written with [`bytea`] and a `timestamptz` one with
//! [`timestamp`]; a `jsonb` column takes the value as it is.

use std::fmt::Write as _;

use chrono::{DateTime, SecondsFormat, Utc};
use sea_orm::Value;
use serde_json::{Map, Value as Json};

/// The rows of one batch, for one parameter of a statement.
#[derive(Debug, Default)]
pub struct Rows(Vec<Json>);

impl Rows {
    pub fn with_capacity(rows: usize) -> Self {
        Self(Vec::with_capacity(rows))
    }

    /// Appends a row of `(column, cell)` pairs.
    pub fn push<const N: usize>(&mut self, cells: [(&str, Json); N]) {
        let row: Map<String, Json> = cells
            .into_iter()
            .map(|(column, cell)| (column.to_owned(), cell))
            .collect();
        self.0.push(Json::Object(row));
    }

    /// The parameter to bind.
    pub fn into_value(self) -> Value {
        Value::Json(Some(Box::new(Json::Array(self.0))))
    }
}

/// `jsonb_to_recordset($param::jsonb) AS alias (column type, ...)`: the rows of parameter
/// number `param` as a relation named `alias`.
pub fn from(param: usize, alias: &str, columns: &[(&str, &str)]) -> String {
    let columns: Vec<String> = columns
        .iter()
        .map(|(column, ty)| format!("{column} {ty}"))
        .collect();
    format!(
        "jsonb_to_recordset(${param}::jsonb) AS {alias} ({})",
        columns.join(", ")
    )
}

/// A `bytea` cell: `\x` and the bytes in hex.
pub fn bytea(bytes: &[u8]) -> Json {
    let mut text = String::with_capacity(2 + bytes.len() * 2);
    text.push_str("\\x");
    for byte in bytes {
        let _ = write!(text, "{byte:02x}");
    }
    Json::String(text)
}

/// A `timestamptz` cell, to the microsecond Postgres keeps.
pub fn timestamp(at: DateTime<Utc>) -> Json {
    Json::String(at.to_rfc3339_opts(SecondsFormat::Micros, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_relation_names_its_parameter_and_columns() {
        assert_eq!(
            from(3, "v", &[("id", "text"), ("n", "int4")]),
            "jsonb_to_recordset($3::jsonb) AS v (id text, n int4)"
        );
    }

    #[test]
    fn cells_are_written_as_their_types_read_them() {
        assert_eq!(bytea(&[0, 0xab, 7]), Json::String("\\x00ab07".into()));
        let at = DateTime::parse_from_rfc3339("2026-11-28T10:00:00.123456789Z")
            .expect("a time")
            .with_timezone(&Utc);
        assert_eq!(
            timestamp(at),
            Json::String("2026-11-28T10:00:00.123456Z".into())
        );
    }

    #[test]
    fn rows_become_one_array() {
        let mut rows = Rows::default();
        rows.push([("id", "a".into()), ("n", 1.into())]);
        rows.push([("id", Json::Null), ("n", 2.into())]);
        let Value::Json(Some(json)) = rows.into_value() else {
            panic!("not a json value");
        };
        assert_eq!(
            *json,
            serde_json::json!([{"id": "a", "n": 1}, {"id": null, "n": 2}])
        );
    }
}
