//! Building and reading SQL: statements with bound values, the expression of a catalog
//! field, and the group keys of aggregate queries.

use sqlx::sqlite::{SqliteArguments, SqliteRow};
use sqlx::{Arguments, Encode, Row, Sqlite, Type, TypeInfo, ValueRef};

use super::columns::column;
use super::StoreError;
use crate::handler::Op;
use crate::model::{rfc3339_nanos, FieldInfo, FieldType, TrackerInfo};
use crate::results::query::{catalog_field, Condition, QueryError};

/// SQL text with its bound values, in order. Values are always bound, never spliced in.
pub(super) struct Statement {
    pub(super) text: String,
    pub(super) args: SqliteArguments<'static>,
}

impl Statement {
    pub(super) fn new(text: &str) -> Self {
        Self {
            text: text.to_string(),
            args: SqliteArguments::default(),
        }
    }

    pub(super) fn push(&mut self, text: &str) {
        self.text.push_str(text);
    }

    /// Appends a placeholder bound to `value`.
    pub(super) fn bind<T>(&mut self, value: T) -> Result<(), StoreError>
    where
        T: Encode<'static, Sqlite> + Type<Sqlite> + 'static,
    {
        self.text.push('?');
        self.args.add(value).map_err(sqlx::Error::Encode)?;
        Ok(())
    }

    /// Appends ` AND <condition>` for each condition, with the semantics of
    /// [`crate::results::query`]: numbers compare as numbers, text as text, CONTAINS is a
    /// substring test, and a null matches nothing (SQL's NULL comparisons are never true).
    pub(super) fn conditions(
        &mut self,
        info: &TrackerInfo,
        conditions: &[Condition],
    ) -> Result<(), StoreError> {
        for c in conditions {
            let field = catalog_field(info, &c.field)?;
            let column = expr(field);
            // Time columns hold nanoseconds; as text they read as RFC 3339.
            let text = match field.ty {
                FieldType::Time => rfc3339_sql(&column),
                _ => column.clone(),
            };
            self.push(" AND ");
            let Some(cmp) = comparison(c.op) else {
                // CONTAINS: a substring of the text (validation kept it off numbers).
                self.push(&format!("instr({text}, "));
                self.bind(c.value.clone())?;
                self.push(") > 0");
                continue;
            };
            match field.ty {
                FieldType::U64 | FieldType::I64 => {
                    self.push(&format!("{column} {cmp} "));
                    self.bind_number(c)?;
                }
                // A time compares as nanoseconds when given a number, else as text.
                FieldType::Time => match c.value.trim().parse::<i64>() {
                    Ok(ns) => {
                        self.push(&format!("{column} {cmp} "));
                        self.bind(ns)?;
                    }
                    Err(_) => {
                        self.push(&format!("{text} {cmp} "));
                        self.bind(c.value.clone())?;
                    }
                },
                FieldType::Str => {
                    self.push(&format!("{column} {cmp} "));
                    self.bind(c.value.clone())?;
                }
            }
        }
        Ok(())
    }

    /// Binds a numeric condition's value: an integer when it fits SQLite's, else a real,
    /// which SQLite still compares with integers by value.
    fn bind_number(&mut self, c: &Condition) -> Result<(), StoreError> {
        let number: i128 = c.value.trim().parse().map_err(|_| QueryError::NotANumber {
            field: c.field.clone(),
            value: c.value.clone(),
        })?;
        match i64::try_from(number) {
            Ok(n) => self.bind(n),
            Err(_) => self.bind(number as f64),
        }
    }
}

/// The SQL operator of a comparison; `None` for CONTAINS, which is no comparison.
fn comparison(op: Op) -> Option<&'static str> {
    Some(match op {
        Op::Eq => "=",
        Op::Ne => "!=",
        Op::Gt => ">",
        Op::Ge => ">=",
        Op::Lt => "<",
        Op::Le => "<=",
        Op::Contains => return None,
    })
}

/// An integer nanoseconds expression as the RFC 3339 text of [`rfc3339_nanos`].
fn rfc3339_sql(ns: &str) -> String {
    format!(
        "(strftime('%Y-%m-%dT%H:%M:%S', {ns} / 1000000000, 'unixepoch') \
         || printf('.%09dZ', {ns} % 1000000000))"
    )
}

/// The SQL expression for a field: its column (see `columns`).
pub(super) fn expr(field: &FieldInfo) -> String {
    column(field).into_owned()
}

/// How a query groups: an optional time bucket, then fields.
pub(super) struct Grouping {
    pub(super) bucket_ns: Option<i64>,
    pub(super) fields: Vec<&'static FieldInfo>,
}

impl Grouping {
    pub(super) fn new(
        info: &TrackerInfo,
        bucket_ns: Option<i64>,
        group_by: &[String],
    ) -> Result<Self, QueryError> {
        let fields = group_by
            .iter()
            .map(|name| catalog_field(info, name))
            .collect::<Result<_, _>>()?;
        Ok(Self { bucket_ns, fields })
    }

    /// The grouping expressions, bucket first. Raw values, so that key types survive.
    pub(super) fn dims(&self) -> Vec<String> {
        // The bucket width is an integer the server computed: safe to write into the text.
        let bucket = self.bucket_ns.map(|ns| format!("(ts / {ns}) * {ns}"));
        bucket
            .into_iter()
            .chain(self.fields.iter().map(|f| expr(f)))
            .collect()
    }

    /// Reads a group's key from the first columns of a row laid out like [`Self::dims`].
    pub(super) fn key(&self, row: &SqliteRow) -> Result<GroupKey, StoreError> {
        let offset = usize::from(self.bucket_ns.is_some());
        let bucket = if offset == 1 { row.try_get(0)? } else { 0 };
        let parts = self
            .fields
            .iter()
            .enumerate()
            .map(|(i, f)| KeyPart::read(row, i + offset, f.ty == FieldType::Time))
            .collect::<Result<_, _>>()?;
        Ok(GroupKey { bucket, parts })
    }

    /// A group's key from the values of [`Self::dims`] as `eunomia_groups` returns them.
    pub(super) fn key_of(&self, values: &[serde_json::Value]) -> Result<GroupKey, StoreError> {
        let offset = usize::from(self.bucket_ns.is_some());
        let bad = || StoreError::Corrupt(format!("a group key of {values:?}"));
        if values.len() != offset + self.fields.len() {
            return Err(bad());
        }
        let bucket = match offset {
            1 => values[0].as_i64().ok_or_else(bad)?,
            _ => 0,
        };
        let parts = self
            .fields
            .iter()
            .zip(&values[offset..])
            .map(|(f, v)| KeyPart::from_json(v, f.ty == FieldType::Time).ok_or_else(bad))
            .collect::<Result<_, _>>()?;
        Ok(GroupKey { bucket, parts })
    }
}

/// One value of a group key as SQLite returned it. Kept typed so that a null and the
/// text "null" stay different groups even though both print as `null`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum KeyPart {
    Null,
    Int(i64),
    Time(i64),
    /// The bits of an f64: a JSON number too large for an integer.
    Real(u64),
    Text(String),
}

impl KeyPart {
    fn read(row: &SqliteRow, i: usize, is_time: bool) -> Result<Self, StoreError> {
        let raw = row.try_get_raw(i)?;
        if raw.is_null() {
            return Ok(KeyPart::Null);
        }
        let ty = raw.type_info().name().to_string();
        Ok(match ty.as_str() {
            "INTEGER" if is_time => KeyPart::Time(row.try_get(i)?),
            "INTEGER" => KeyPart::Int(row.try_get(i)?),
            "REAL" => KeyPart::Real(row.try_get::<f64, _>(i)?.to_bits()),
            "TEXT" => KeyPart::Text(row.try_get(i)?),
            other => return Err(StoreError::Corrupt(format!("a group key of type {other}"))),
        })
    }

    fn from_json(value: &serde_json::Value, is_time: bool) -> Option<Self> {
        use serde_json::Value as J;
        Some(match value {
            J::Null => KeyPart::Null,
            J::String(s) => KeyPart::Text(s.clone()),
            J::Number(n) => match n.as_i64() {
                Some(v) if is_time => KeyPart::Time(v),
                Some(v) => KeyPart::Int(v),
                None => KeyPart::Real(n.as_f64()?.to_bits()),
            },
            J::Bool(_) | J::Array(_) | J::Object(_) => return None,
        })
    }

    /// The key's text as query.rs says: decimal numbers, RFC 3339 times, "null".
    fn text(&self) -> String {
        match self {
            KeyPart::Null => "null".to_string(),
            KeyPart::Int(v) => v.to_string(),
            KeyPart::Time(ns) => rfc3339_nanos(*ns as u64),
            KeyPart::Real(bits) => f64::from_bits(*bits).to_string(),
            KeyPart::Text(s) => s.clone(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct GroupKey {
    /// Start of the time bucket (ns); 0 when the query has none.
    pub(super) bucket: i64,
    parts: Vec<KeyPart>,
}

impl GroupKey {
    pub(super) fn texts(&self) -> Vec<String> {
        self.parts.iter().map(KeyPart::text).collect()
    }
}
