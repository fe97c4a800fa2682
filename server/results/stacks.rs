//! A stack tracker's session as flame graph tools read it: one line per process name and
//! folded stack with its weight (`comm;main;work;spin 42`, Brendan Gregg's folded format),
//! and as an SVG flame graph drawn by `inferno`.

use inferno::flamegraph::{self, Options};

use super::query::{AggregateQuery, Condition, QueryError};
use super::{ResultsError, SessionResults};
use crate::handler::AggOp;
use crate::model::TrackerInfo;

/// The session's stacks, each under its process name, with the sum of the tracker's stack
/// measure over the events that meet `conditions`; heaviest first, none with nothing.
pub async fn folded_stacks(
    results: &dyn SessionResults,
    info: &TrackerInfo,
    conditions: Vec<Condition>,
) -> Result<String, ResultsError> {
    let measure = info
        .stacks
        .ok_or_else(|| ResultsError::Query(QueryError::NoStacks(info.name.to_string())))?;
    let query = AggregateQuery {
        group_by: vec!["comm".to_string(), "stack".to_string()],
        op: AggOp::Sum,
        field: Some(measure.to_string()),
        top: None,
        conditions,
    };
    let mut folded = String::new();
    for row in results.aggregate(&query).await? {
        // Weights are whole numbers (samples, nanoseconds, bytes).
        let weight = row.value.round();
        if weight >= 1.0 {
            // A process name may hold a `;`, which separates frames.
            let comm = row.keys[0].replace(';', ":");
            folded.push_str(&format!("{comm};{} {weight}\n", row.keys[1]));
        }
    }
    Ok(folded)
}

/// `folded` (as [`folded_stacks`] gives it) drawn as an SVG flame graph titled `title`,
/// its widths in the tracker's stack measure.
pub fn flame_graph(info: &TrackerInfo, folded: &str, title: &str) -> std::io::Result<Vec<u8>> {
    let mut options = Options::default();
    options.title = title.to_string();
    options.count_name = info.stacks.unwrap_or("samples").to_string();
    let mut svg = Vec::new();
    if folded.is_empty() {
        // inferno refuses an empty profile; an empty graph says the same without an error.
        options.subtitle = Some("no stacks recorded (yet)".to_string());
        flamegraph::from_lines(&mut options, ["[none] 1"], &mut svg)?;
    } else {
        flamegraph::from_lines(&mut options, folded.lines(), &mut svg)?;
    }
    Ok(svg)
}
