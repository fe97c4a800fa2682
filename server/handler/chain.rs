//! Chains assembled at run time from a list of stages (from the CLI, a config file or a
//! session request), checked against the fields the records will have.

use std::io::Write;
use std::time::Duration;

use super::{
    is_numeric, AggOp, AggRow, AggregateSpec, Aggregator, Clock, CsvPrinter, Discard, FanOut,
    Filter, FilterError, Format, Handler, HistogramPrinter, JsonPrinter, Predicate, SortBy,
    TextPrinter, MAX_GROUP_BY,
};
use crate::model::{FieldType, Record, TrackerInfo};

/// One stage of a chain. Stages after an `aggregate` see its rows (the group-by fields
/// and `count`), so `filter` there reads e.g. `count > 10`.
#[derive(Clone, Debug, PartialEq, serde::Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Stage {
    /// Keep records for which every expression holds (`field op value`).
    Filter { r#where: Vec<String> },
    /// Count calls per group, and apply `op` to `field` (unless COUNT); emits the groups
    /// when the stream ends, ordered by `sort`, the first `top`.
    Aggregate {
        group_by: Vec<String>,
        #[serde(default)]
        op: AggOp,
        #[serde(default)]
        field: Option<String>,
        #[serde(default)]
        top: Option<usize>,
        #[serde(default)]
        sort: SortBy,
        /// Emit the groups every this many milliseconds and start again (a table per
        /// period), as well as when the stream ends.
        #[serde(default)]
        period_ms: Option<u64>,
    },
    /// Print records; must end its branch.
    Print {
        format: Format,
        #[serde(default)]
        columns: Option<Vec<String>>,
        /// Text: numbers as they are (no errno or flag names, durations in ns).
        #[serde(default)]
        raw: bool,
        /// Text: `utc` (default), `local`, `local_date` or `utc_date` times.
        #[serde(default)]
        clock: Clock,
    },
    /// Give every record to each branch; must end its branch.
    Tee { branches: Vec<Vec<Stage>> },
    /// Print a power-of-two histogram of a numeric field per group when the stream ends,
    /// as libbpf-tools do; must end its branch.
    Histogram {
        field: String,
        #[serde(default)]
        group_by: Vec<String>,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    #[error(transparent)]
    Filter(#[from] FilterError),
    #[error("cannot group by `{field}`; known fields: {known}")]
    UnknownGroupField { field: String, known: String },
    #[error("aggregate needs 1 to {MAX_GROUP_BY} group-by fields, got {0}")]
    GroupByWidth(usize),
    #[error("{} needs a numeric field to apply to", .0.as_str())]
    FieldRequired(AggOp),
    #[error("cannot apply {op} to `{field}`: it is not a numeric field; numeric fields: {known}", op = .op.as_str())]
    NotNumeric {
        op: AggOp,
        field: String,
        known: String,
    },
    #[error(
        "cannot count `{field}` in a histogram: it is not a numeric field; numeric fields: {known}"
    )]
    NotNumericHistogram { field: String, known: String },
    #[error("unknown column `{field}`; known fields: {known}")]
    UnknownColumn { field: String, known: String },
    #[error("`{0}` must be the last stage of its branch")]
    NotLast(&'static str),
    #[error("an aggregate's period_ms must be at least 1")]
    ZeroPeriod,
}

/// The fields a record at some point of the chain has, with their types.
#[derive(Clone, Debug, PartialEq)]
pub struct Schema {
    pub fields: Vec<(String, FieldType)>,
    /// The field saying how many calls a record stands for, which counting sums (see
    /// [`TrackerInfo::weight`]).
    pub weight: Option<String>,
    /// The total fields, each with the weight field counting the calls it sums (see
    /// [`TrackerInfo::summed_over`]).
    pub summed_over: Vec<(String, String)>,
}

impl Schema {
    /// The fields of a tracker's events, common ones first.
    pub fn of(info: &TrackerInfo) -> Schema {
        Schema {
            fields: info
                .all_fields()
                .map(|f| (f.name.to_string(), f.ty))
                .collect(),
            weight: info.weight.map(str::to_string),
            summed_over: info
                .all_fields()
                .filter_map(|f| Some((f.name.to_string(), info.summed_over(f.name)?.to_string())))
                .collect(),
        }
    }

    pub fn field_type(&self, name: &str) -> Option<FieldType> {
        self.fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|&(_, ty)| ty)
    }

    /// The fields of the rows ([`AggRow`]) that grouping these records by `spec` gives:
    /// the group-by fields, `count`, and the value column unless the op is COUNT.
    pub fn of_groups(&self, spec: &AggregateSpec) -> Result<Schema, ChainError> {
        let mut rows = Vec::with_capacity(spec.group_by.len() + 2);
        for field in &spec.group_by {
            let ty = self
                .field_type(field)
                .ok_or_else(|| ChainError::UnknownGroupField {
                    field: field.clone(),
                    known: self.known(),
                })?;
            rows.push((field.clone(), ty));
        }
        rows.push(("count".to_string(), FieldType::U64));
        rows.extend(spec.value_name().map(|name| (name, FieldType::I64)));
        Ok(Schema {
            fields: rows,
            weight: None,
            summed_over: Vec::new(),
        })
    }

    fn names(&self) -> Vec<&str> {
        self.fields.iter().map(|(n, _)| n.as_str()).collect()
    }

    fn known(&self) -> String {
        self.names().join(", ")
    }

    /// The numeric fields' names, for messages.
    fn numeric(&self) -> String {
        self.fields
            .iter()
            .filter(|(_, ty)| is_numeric(*ty))
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Where printers write: called once per printer.
pub type OutputFactory<'a> = &'a dyn Fn() -> Box<dyn Write + Send>;

/// Builds the handlers for `stages` over records described by `schema`.
pub fn build<R: Record + ?Sized + 'static>(
    stages: &[Stage],
    schema: &Schema,
    output: OutputFactory<'_>,
) -> Result<Box<dyn Handler<R>>, ChainError> {
    let Some((stage, rest)) = stages.split_first() else {
        return Ok(Box::new(Discard));
    };
    let last_only = |name| {
        if rest.is_empty() {
            Ok(())
        } else {
            Err(ChainError::NotLast(name))
        }
    };
    Ok(match stage {
        Stage::Filter { r#where } => {
            let known = schema.names();
            let predicates = r#where
                .iter()
                .map(|expr| Predicate::parse(expr, |f| schema.field_type(f), &known))
                .collect::<Result<Vec<_>, _>>()?;
            Box::new(Filter::new(predicates, build::<R>(rest, schema, output)?))
        }
        Stage::Aggregate {
            group_by,
            op,
            field,
            top,
            sort,
            period_ms,
        } => {
            if period_ms == &Some(0) {
                return Err(ChainError::ZeroPeriod);
            }
            if group_by.is_empty() || group_by.len() > MAX_GROUP_BY {
                return Err(ChainError::GroupByWidth(group_by.len()));
            }
            let numeric = |f: &str| schema.field_type(f).is_some_and(is_numeric);
            match (op, field) {
                (AggOp::Count, _) => {}
                (op, None) => return Err(ChainError::FieldRequired(*op)),
                (op, Some(f)) if !numeric(f) => {
                    return Err(ChainError::NotNumeric {
                        op: *op,
                        field: f.clone(),
                        known: schema.numeric(),
                    })
                }
                _ => {}
            }
            let spec = AggregateSpec {
                group_by: group_by.clone(),
                weight: schema.weight.clone(),
                op: *op,
                field: field.clone().filter(|_| *op != AggOp::Count),
                top: *top,
                sort: *sort,
                period: period_ms.map(Duration::from_millis),
            };
            let next = build::<AggRow>(rest, &schema.of_groups(&spec)?, output)?;
            Box::new(Aggregator::new(spec, next))
        }
        Stage::Print {
            format,
            columns,
            raw,
            clock,
        } => {
            last_only("print")?;
            if let Some(unknown) = columns
                .iter()
                .flatten()
                .find(|c| schema.field_type(c).is_none())
            {
                return Err(ChainError::UnknownColumn {
                    field: unknown.clone(),
                    known: schema.known(),
                });
            }
            match format {
                Format::Json => Box::new(JsonPrinter::new(output())),
                Format::Csv => Box::new(CsvPrinter::new(output())),
                Format::Text => {
                    let printer = TextPrinter::new(output(), columns.clone());
                    Box::new(printer.raw(*raw).clock(*clock))
                }
            }
        }
        Stage::Histogram { field, group_by } => {
            last_only("histogram")?;
            if !schema.field_type(field).is_some_and(is_numeric) {
                return Err(ChainError::NotNumericHistogram {
                    field: field.clone(),
                    known: schema.numeric(),
                });
            }
            if let Some(unknown) = group_by.iter().find(|g| schema.field_type(g).is_none()) {
                return Err(ChainError::UnknownGroupField {
                    field: unknown.clone(),
                    known: schema.known(),
                });
            }
            let weight = schema
                .summed_over
                .iter()
                .find(|(total, _)| total == field)
                .map(|(_, weight)| weight.clone());
            Box::new(HistogramPrinter::new(
                output(),
                field.clone(),
                group_by.clone(),
                weight,
            ))
        }
        Stage::Tee { branches } => {
            last_only("tee")?;
            let branches = branches
                .iter()
                .map(|b| build::<R>(b, schema, output))
                .collect::<Result<Vec<_>, _>>()?;
            Box::new(FanOut::new(branches))
        }
    })
}
