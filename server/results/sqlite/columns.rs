//! Typed columns: each event is a row with a column per catalog field. The fields every
//! event has since the first schema keep their names; every other one is `f_<name>`,
//! added at open from the tracker catalog. Groupings, filters and percentiles over a
//! million events read these, and an event's JSON is written from them when it is asked
//! for: a third of the bytes of rows that held the JSON, and no JSON parse per row.
//!
//! The `f_` columns carry no declared type: a field holds what its events say (an
//! integer, a real for a u64 past i64::MAX, text, or null where it does not apply).

use std::borrow::Cow;

use sqlx::sqlite::{SqliteArguments, SqliteRow};
use sqlx::{Arguments, Row, SqlitePool, TypeInfo, ValueRef};

use crate::handler::{push_json_record, KeyValue, OwnedRecord};
use crate::model::{FieldInfo, FieldType, TrackerInfo};
use crate::results::query::StoredEvent;
use crate::results::writer::{int_value, Cell, COLUMNS};
use crate::results::StoreError;
use crate::trackers::TRACKERS;

/// The column that holds `field`. Names come from the catalog (identifiers), never from
/// the user, so they can be part of SQL text.
pub(super) fn column(field: &FieldInfo) -> Cow<'static, str> {
    if COLUMNS.contains(&field.name) {
        Cow::Borrowed(field.name)
    } else {
        Cow::Owned(format!("f_{}", field.name))
    }
}

/// The fields of `info` kept in `f_` columns, in catalog order.
pub(super) fn typed_fields(info: &TrackerInfo) -> impl Iterator<Item = &'static FieldInfo> {
    info.all_fields().filter(|f| !COLUMNS.contains(&f.name))
}

/// Adds the column of every catalog field the table lacks. A database from before typed
/// columns has each event's fields in a JSON column, `data`: they are copied into the
/// columns and the JSON dropped, in the same transaction, so a server stopped half way
/// finds the database as it was.
pub(super) async fn ensure(pool: &SqlitePool) -> Result<(), StoreError> {
    let mut tx = pool.begin().await?;
    let mut present: Vec<String> = sqlx::query("SELECT name FROM pragma_table_info('events')")
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|row| row.try_get("name"))
        .collect::<Result<_, _>>()?;
    let json = present.iter().any(|c| c == "data");
    for tracker in TRACKERS {
        let info = tracker.info();
        let mut fill = Vec::new();
        for field in typed_fields(info) {
            let name = column(field);
            if !present.iter().any(|p| *p == name) {
                sqlx::query(&format!("ALTER TABLE events ADD COLUMN {name}"))
                    .execute(&mut *tx)
                    .await?;
                present.push(name.to_string());
            }
            fill.push(format!("{name} = data ->> '$.{}'", field.name));
        }
        if json && !fill.is_empty() {
            let filled = sqlx::query(&format!(
                "UPDATE events SET {} WHERE tracker = ?",
                fill.join(", ")
            ))
            .bind(info.name)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            tracing::info!(
                tracker = info.name,
                rows = filled,
                "moved stored events from JSON to typed columns"
            );
        }
    }
    if json {
        sqlx::query("ALTER TABLE events DROP COLUMN data")
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// The SELECT list that reads a session's events back: id, the table's own columns,
/// `info`'s typed ones, then seq, as [`stored_event`] reads them.
pub(super) fn select_list(info: &TrackerInfo) -> String {
    std::iter::once(Cow::Borrowed("id"))
        .chain(COLUMNS.map(Cow::Borrowed))
        .chain(typed_fields(info).map(column))
        .chain(std::iter::once(Cow::Borrowed("seq")))
        .collect::<Vec<_>>()
        .join(", ")
}

/// An event of tracker `info` read from a row laid out as [`select_list`] says, with the
/// JSON the sink was given.
pub(super) fn stored_event(
    info: &'static TrackerInfo,
    row: &SqliteRow,
) -> Result<StoredEvent, StoreError> {
    let mut fields = Vec::new();
    let mut typed = 1 + COLUMNS.len();
    for field in info.all_fields() {
        let at = match COLUMNS.iter().position(|c| *c == field.name) {
            Some(own) => 1 + own,
            None => {
                typed += 1;
                typed - 1
            }
        };
        fields.push((field.name, read_value(row, at, field.ty)?));
    }
    let mut json = Vec::with_capacity(512);
    push_json_record(
        &mut json,
        &OwnedRecord {
            catalog: Some(info),
            fields,
        },
    );
    Ok(StoredEvent {
        id: row.try_get("id")?,
        seq: row.try_get("seq")?,
        ts_ns: row.try_get::<i64, _>("ts")? as u64,
        tracker: row.try_get("tracker")?,
        kind: row.try_get("kind")?,
        pid: row.try_get::<i64, _>("pid")? as u32,
        ppid: row.try_get::<i64, _>("ppid")? as u32,
        comm: row.try_get("comm")?,
        cgroup_id: row.try_get::<i64, _>("cgroup_id")? as u64,
        data: serde_json::from_slice(&json).map_err(|e| StoreError::Corrupt(e.to_string()))?,
    })
}

/// A field's value as read from the database: by what is stored, read as the catalog
/// types it (a u64 past i64::MAX was stored as a real, see `Cell`).
fn read_value(row: &SqliteRow, i: usize, ty: FieldType) -> Result<KeyValue, StoreError> {
    let raw = row.try_get_raw(i)?;
    if raw.is_null() {
        return Ok(KeyValue::Null);
    }
    let stored = raw.type_info().name().to_string();
    Ok(match (stored.as_str(), ty) {
        ("TEXT", _) => KeyValue::Str(row.try_get::<String, _>(i)?.into()),
        ("REAL", FieldType::I64) => KeyValue::I64(row.try_get::<f64, _>(i)? as i64),
        ("REAL", _) => KeyValue::U64(row.try_get::<f64, _>(i)? as u64),
        ("INTEGER", ty) => int_value(row.try_get(i)?, ty),
        (other, _) => return Err(StoreError::Corrupt(format!("a field stored as {other}"))),
    })
}

/// Binds a typed value; `text` is the chunk's text the ranges point into.
pub(super) fn bind_cell<'q>(
    cell: Cell,
    args: &mut SqliteArguments<'q>,
    text: &'q str,
) -> Result<(), sqlx::Error> {
    match cell {
        Cell::Null => args.add(None::<i64>),
        Cell::Int(v) => args.add(v),
        Cell::Real(v) => args.add(v),
        Cell::Text { start, end } => args.add(&text[start as usize..end as usize]),
    }
    .map_err(sqlx::Error::Encode)
}
