//! Detection rules. A rules file is a YAML sequence of entries, shaped as Falco's:
//!
//! - `list: NAME` with `items`, a reusable list of strings or numbers (`x in NAME`);
//! - `macro: NAME` with `condition`, a reusable piece of condition, expanded where its
//!   name stands in a rule's condition;
//! - `rule: ID` with `name`, `description`, `severity`, `mitre`, `tags`, `sources` (the
//!   tracker and kinds of event it reads), `condition` (CEL, over the fields of those
//!   events), `output` (text with `{field}` placeholders), `enabled` and `action`.
//!
//! A file is checked whole when it loads: each condition compiles, names only fields its
//! sources have (or lists), and evaluates without a type error on an event of zero values;
//! each output names only such fields. An error names the entry, its line and what is
//! wrong, and a set that fails to load replaces nothing.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use cel::common::ast::{operators, EntryExpr, Expr, LiteralValue, MapExpr, StructExpr};
use cel::common::value::CowVal;
use cel::extractors::This;
use cel::{Context, Program};
use serde::{Deserialize, Serialize};

use super::drift::WrittenFiles;
use super::prefilter;
use crate::model::{FieldFormat, FieldType, Record, Severity, TrackerInfo, Value};
use crate::trackers::find_tracker;

/// The rules that ship with the server.
pub const BUILTIN: &str = include_str!("builtin.yaml");

/// How far a macro may expand into macros.
const MACRO_DEPTH: usize = 16;

/// The MITRE ATT&CK technique a rule detects.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mitre {
    /// Technique id, e.g. T1003.008.
    pub technique: String,
    /// Technique name.
    pub name: String,
    /// Tactic, e.g. credential-access.
    pub tactic: String,
}

/// Which events a rule reads: a tracker's, of these kinds (all when empty).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    pub tracker: String,
    #[serde(default)]
    pub kinds: Vec<String>,
}

/// What happens when a rule matches.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    #[default]
    Alert,
    /// Alert, and kill the process from user space.
    Kill,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RuleError {
    #[error("rules file: {0}")]
    Yaml(String),
    #[error("rules file, entry {index} (line {line}, `{name}`): {message}")]
    Entry {
        index: usize,
        line: usize,
        name: String,
        message: String,
    },
}

/// A list item: text or a number.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Item {
    Int(i64),
    Text(String),
}

impl Item {
    /// The item as a prefilter compares it.
    fn literal(&self) -> prefilter::Literal {
        match self {
            Item::Int(v) => prefilter::Literal::Int(*v),
            Item::Text(t) => prefilter::Literal::Text(t.clone()),
        }
    }
}

/// One entry as written; which keys it has says what it is.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    list: Option<String>,
    items: Option<Vec<Item>>,
    #[serde(rename = "macro")]
    macro_name: Option<String>,
    condition: Option<String>,
    rule: Option<String>,
    name: Option<String>,
    description: Option<String>,
    severity: Option<Severity>,
    mitre: Option<Mitre>,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    sources: Vec<Source>,
    output: Option<String>,
    enabled: Option<bool>,
    action: Option<Action>,
}

/// A piece of a rule's output: text, or a field's value.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Text(String),
    Field(String),
}

/// One loaded rule.
pub struct Rule {
    pub id: String,
    pub name: String,
    pub description: String,
    pub severity: Severity,
    pub mitre: Mitre,
    pub tags: Vec<String>,
    pub sources: Vec<Source>,
    /// The condition as written (macros not expanded).
    pub condition: String,
    pub output: String,
    pub action: Action,
    enabled: AtomicBool,
    hits: AtomicU64,
    program: Program,
    /// Tests of single fields the condition needs, checked before CEL runs.
    prefilter: Vec<prefilter::Test>,
    /// The condition asks `written_during_run`: its files tracker must record writes.
    asks_written: bool,
    parts: Vec<Part>,
}

impl std::fmt::Debug for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rule").field("id", &self.id).finish()
    }
}

impl Rule {
    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    pub fn set_enabled(&self, enabled: bool) {
        self.enabled.store(enabled, Ordering::Relaxed);
    }

    /// Events that matched it since it was loaded.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// Whether it reads events of `tracker` of `kind`.
    pub fn reads(&self, tracker: &str, kind: &str) -> bool {
        self.sources.iter().any(|s| {
            s.tracker == tracker && (s.kinds.is_empty() || s.kinds.iter().any(|k| k == kind))
        })
    }

    /// Whether the condition asks `written_during_run`, which needs the files written.
    pub fn asks_written(&self) -> bool {
        self.asks_written
    }

    /// The tests of single fields the condition needs, for a caller that runs them
    /// itself (a matcher shares them between rules) before [`Rule::evaluate`].
    pub(crate) fn prefilter(&self) -> &[prefilter::Test] {
        &self.prefilter
    }

    /// Whether `record` matches the condition in CEL, in `context` (the set's, see
    /// [`RuleSet::context`]), its prefilter (run by the caller, see `prefilter`) taken as
    /// passed. An evaluation error (a field this event lacks, say) is no match; the caller
    /// counts it.
    pub fn evaluate(
        &self,
        context: &Context<'_, '_>,
        record: &(dyn Record + Sync),
    ) -> Result<bool, String> {
        let resolver = Fields(record);
        let mut scope = context.new_inner_scope();
        scope.set_variable_resolver(&resolver);
        match self.program.execute(&scope) {
            Ok(cel::Value::Bool(true)) => {
                self.hits.fetch_add(1, Ordering::Relaxed);
                Ok(true)
            }
            Ok(cel::Value::Bool(false)) => Ok(false),
            Ok(other) => Err(format!("the condition gave {other:?}, not a bool")),
            Err(err) => Err(err.to_string()),
        }
    }

    /// The output with each `{field}` replaced by the record's value as people read it
    /// (a mode in octal, an error by its name; `<none>` for null).
    pub fn render(&self, record: &dyn Record) -> String {
        let mut text = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => text.push_str(t),
                Part::Field(f) => match record.get(f) {
                    Some(Value::Null) | None => text.push_str("<none>"),
                    Some(v) => {
                        let format = record
                            .catalog()
                            .map_or(FieldFormat::Plain, |info| info.format_of(f));
                        if !format.write(v, &mut text) {
                            text.push_str(&v.to_string());
                        }
                    }
                },
            }
        }
        text
    }

    /// The texts `field` must equal for the condition to hold, when a top-level test of
    /// it says (`capability in [...]`); None when any value may match.
    pub fn required_texts(&self, field: &str) -> Option<Vec<String>> {
        prefilter::required_texts(&self.prefilter, field)
    }

    /// The fields the output names, for an alert's `fields`.
    pub fn output_fields(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Field(f) => Some(f.as_str()),
            Part::Text(_) => None,
        })
    }
}

/// Resolves a condition's variables from an event's fields: numbers as CEL ints (so that
/// `pid == 1` compares without a cast), times as nanoseconds.
struct Fields<'a>(&'a (dyn Record + Sync));

impl cel::context::VariableResolver for Fields<'_> {
    fn resolve<'b>(&'b self, variable: &str) -> Option<CowVal<'b, 'b>> {
        let value = cel_value(self.0.get(variable)?);
        value.try_into().ok().map(CowVal::Owned)
    }
}

fn cel_value(value: Value<'_>) -> cel::Value {
    match value {
        Value::Null => cel::Value::Null,
        Value::U64(v) | Value::Time(v) => cel::Value::Int(i64::try_from(v).unwrap_or(i64::MAX)),
        Value::I64(v) => cel::Value::Int(v),
        Value::Str(s) => cel::Value::String(Arc::new(s.to_string())),
    }
}

/// A loaded rules file: its rules, in file order, and its lists.
pub struct RuleSet {
    rules: Vec<Arc<Rule>>,
    lists: BTreeMap<String, Vec<Item>>,
}

impl std::fmt::Debug for RuleSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuleSet")
            .field("rules", &self.rules.len())
            .finish()
    }
}

impl RuleSet {
    /// The built-in rules (a test loads them, so this cannot fail in a build that passed).
    pub fn builtin() -> RuleSet {
        RuleSet::parse(BUILTIN).expect("the built-in rules load")
    }

    /// Loads and checks a rules file (see the module's documentation).
    pub fn parse(text: &str) -> Result<RuleSet, RuleError> {
        let entries: Vec<RawEntry> =
            serde_yaml_ng::from_str(text).map_err(|e| RuleError::Yaml(e.to_string()))?;
        let lines = entry_lines(text);
        let at = |index: usize, name: &str, message: String| RuleError::Entry {
            index: index + 1,
            line: lines.get(index).copied().unwrap_or(0),
            name: name.to_string(),
            message,
        };
        let mut lists = BTreeMap::new();
        let mut macros = HashMap::new();
        for (index, entry) in entries.iter().enumerate() {
            match (&entry.list, &entry.macro_name, &entry.rule) {
                (Some(name), None, None) => {
                    let items = entry
                        .items
                        .clone()
                        .ok_or_else(|| at(index, name, "a list needs `items`".into()))?;
                    lists.insert(name.clone(), items);
                }
                (None, Some(name), None) => {
                    let condition = entry
                        .condition
                        .clone()
                        .ok_or_else(|| at(index, name, "a macro needs a `condition`".into()))?;
                    macros.insert(name.clone(), condition);
                }
                (None, None, Some(_)) => {}
                _ => {
                    return Err(at(
                        index,
                        "?",
                        "an entry is one of `list`, `macro` or `rule`".into(),
                    ))
                }
            }
        }
        let context = root_context(&lists, Arc::default());
        let mut rules: Vec<Arc<Rule>> = Vec::new();
        for (index, entry) in entries.into_iter().enumerate() {
            let Some(id) = entry.rule.clone() else {
                continue;
            };
            if rules.iter().any(|r| r.id == id) {
                return Err(at(index, &id, "a second rule with this id".into()));
            }
            let rule =
                build_rule(entry, &macros, &lists, &context).map_err(|m| at(index, &id, m))?;
            rules.push(Arc::new(rule));
        }
        Ok(RuleSet { rules, lists })
    }

    pub fn rules(&self) -> &[Arc<Rule>] {
        &self.rules
    }

    pub fn get(&self, id: &str) -> Option<&Arc<Rule>> {
        self.rules.iter().find(|r| r.id == id)
    }

    /// The root context rules are evaluated in: CEL's functions, ours, and the lists;
    /// `written_during_run` knows no file.
    pub fn context(&self) -> Context<'static, 'static> {
        self.context_with(Arc::default())
    }

    /// The same, with `written_during_run` asking `written`.
    pub fn context_with(&self, written: Arc<WrittenFiles>) -> Context<'static, 'static> {
        root_context(&self.lists, written)
    }

    /// The rules `selection` names (`*` for all); an unknown id is an error naming it.
    pub fn select(&self, selection: &[String]) -> Result<Vec<Arc<Rule>>, String> {
        if selection.iter().any(|s| s == "*") {
            return Ok(self.rules.clone());
        }
        selection
            .iter()
            .map(|id| {
                self.get(id).cloned().ok_or_else(|| {
                    format!(
                        "no rule `{id}`; rules: {}",
                        self.rules
                            .iter()
                            .map(|r| r.id.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                })
            })
            .collect()
    }
}

/// The line each top-level entry (`- ` at the start of a line) starts on, in order.
fn entry_lines(text: &str) -> Vec<usize> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| l.starts_with("- ") || *l == "-")
        .map(|(i, _)| i + 1)
        .collect()
}

const O_ACCMODE: i64 = 0o3;
const O_CREAT: i64 = 0o100;
const O_TRUNC: i64 = 0o1000;

/// The open-flag functions and the bits each tests (for the prefilters).
const FLAG_FUNCTIONS: [(&str, i64); 3] = [
    ("open_write", O_ACCMODE),
    ("open_create", O_CREAT),
    ("open_trunc", O_TRUNC),
];

/// Patterns `matches` keeps compiled, per thread (each tracker's matcher has its own);
/// past this many distinct patterns they are dropped and compiled again.
const REGEX_CACHE: usize = 1024;

thread_local! {
    static REGEXES: std::cell::RefCell<HashMap<String, regex::Regex>> =
        std::cell::RefCell::new(HashMap::new());
}

/// CEL's `text.matches(pattern)` (RE2 syntax; true when the pattern matches anywhere in
/// the text), with each pattern compiled once rather than at every call: compiling is
/// what a rule would otherwise spend most of its time on.
fn matches(
    This(text): This<Arc<String>>,
    pattern: Arc<String>,
) -> Result<bool, cel::ExecutionError> {
    REGEXES.with(|cache| {
        let mut cache = cache.borrow_mut();
        if let Some(regex) = cache.get(pattern.as_str()) {
            return Ok(regex.is_match(&text));
        }
        let regex = regex::Regex::new(&pattern).map_err(|err| {
            cel::ExecutionError::function_error("matches", format!("`{pattern}`: {err}"))
        })?;
        let found = regex.is_match(&text);
        if cache.len() >= REGEX_CACHE {
            cache.clear();
        }
        cache.insert(pattern.to_string(), regex);
        Ok(found)
    })
}

/// The function that asks `written` whether a file was written while its guard runs.
pub const WRITTEN_DURING_RUN: &str = "written_during_run";

/// `args.argv()`: an exec's quoted argument line (the process tracker's `args`) as the
/// list of its words again, for tests of one argument (`args.argv().exists(a, a == "-e")`).
fn argv(This(line): This<Arc<String>>) -> Result<Arc<Vec<cel::Value>>, cel::ExecutionError> {
    let words = shlex::split(&line).ok_or_else(|| {
        cel::ExecutionError::function_error("argv", format!("`{line}` is no quoted argument line"))
    })?;
    Ok(Arc::new(
        words
            .into_iter()
            .map(|w| cel::Value::String(Arc::new(w)))
            .collect(),
    ))
}

/// CEL's standard functions, `matches` (see [`matches`]), `argv` (see [`argv`]), the
/// open-flag tests the files tracker's `flags` need (CEL has no bitwise operators), and
/// the lists.
fn root_context(
    lists: &BTreeMap<String, Vec<Item>>,
    written: Arc<WrittenFiles>,
) -> Context<'static, 'static> {
    let mut context = Context::default();
    let declared = "our function names are not CEL's";
    context.add_function("matches", matches).expect(declared);
    context.add_function("argv", argv).expect(declared);
    context
        .add_function(WRITTEN_DURING_RUN, move |mnt_ns: i64, path: Arc<String>| {
            u32::try_from(mnt_ns).is_ok_and(|ns| written.contains(ns, &path))
        })
        .expect(declared);
    context
        .add_function("open_write", |flags: i64| flags & O_ACCMODE != 0)
        .expect(declared);
    context
        .add_function("open_create", |flags: i64| flags & O_CREAT != 0)
        .expect(declared);
    context
        .add_function("open_trunc", |flags: i64| flags & O_TRUNC != 0)
        .expect(declared);
    for (name, items) in lists {
        let values: Vec<cel::Value> = items
            .iter()
            .map(|item| match item {
                Item::Int(v) => cel::Value::Int(*v),
                Item::Text(t) => cel::Value::String(Arc::new(t.clone())),
            })
            .collect();
        context.add_variable_from_value(name.clone(), cel::Value::List(Arc::new(values)));
    }
    context
}

fn build_rule(
    entry: RawEntry,
    macros: &HashMap<String, String>,
    lists: &BTreeMap<String, Vec<Item>>,
    context: &Context<'_, '_>,
) -> Result<Rule, String> {
    let need = |what: &str| format!("a rule needs `{what}`");
    let condition = entry.condition.ok_or_else(|| need("condition"))?;
    let output = entry.output.ok_or_else(|| need("output"))?;
    if entry.sources.is_empty() {
        return Err(need("sources"));
    }
    let mut infos: Vec<&'static TrackerInfo> = Vec::new();
    for source in &entry.sources {
        let tracker = find_tracker(&source.tracker).map_err(|e| e.to_string())?;
        infos.push(tracker.info());
    }
    let expanded = expand(&condition, macros, 0)?;
    let program = Program::compile(&expanded).map_err(|e| format!("condition: {e}"))?;
    let field_type = |name: &str| {
        infos
            .iter()
            .find_map(|info| info.all_fields().find(|f| f.name == name).map(|f| f.ty))
    };
    let bound = comprehension_variables(&expanded);
    for variable in program.references().variables() {
        let known = field_type(variable).is_some()
            || lists.contains_key(variable)
            || bound.iter().any(|b| b == variable);
        if !known {
            return Err(format!(
                "condition: `{variable}` is no field of {} and no list",
                entry
                    .sources
                    .iter()
                    .map(|s| s.tracker.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    let parts = parse_output(&output)?;
    for part in &parts {
        if let Part::Field(f) = part {
            if field_type(f).is_none() {
                return Err(format!(
                    "output: `{{{f}}}` is no field of the rule's sources"
                ));
            }
        }
    }
    // Checked on the whole expression, since the dry run below skips what a false guard
    // (`kind == "open" && ...`) short-circuits.
    static_check(&program.expression().expr, &field_type)?;
    // A dry run on an event of zero values finds type errors (a number compared with a
    // text, a bad regex) before any event does.
    let zero = ZeroEvent(&infos);
    let resolver = Fields(&zero);
    let mut scope = context.new_inner_scope();
    scope.set_variable_resolver(&resolver);
    match program.execute(&scope) {
        Ok(cel::Value::Bool(_)) => {}
        Ok(other) => return Err(format!("condition gives {other:?}, not a bool")),
        Err(err) => return Err(format!("condition: {err}")),
    }
    Ok(Rule {
        name: entry
            .name
            .unwrap_or_else(|| entry.rule.clone().unwrap_or_default()),
        id: entry.rule.unwrap_or_default(),
        description: entry.description.unwrap_or_default(),
        severity: entry.severity.ok_or_else(|| need("severity"))?,
        mitre: entry.mitre.ok_or_else(|| need("mitre"))?,
        tags: entry.tags,
        sources: entry.sources,
        condition,
        output,
        action: entry.action.unwrap_or_default(),
        enabled: AtomicBool::new(entry.enabled.unwrap_or(true)),
        hits: AtomicU64::new(0),
        asks_written: expanded.contains(WRITTEN_DURING_RUN),
        prefilter: prefilter::extract(
            program.expression(),
            &|name| {
                let items = lists.get(name)?;
                Some(items.iter().map(Item::literal).collect())
            },
            &FLAG_FUNCTIONS,
        ),
        program,
        parts,
    })
}

/// An event with every field of its trackers at its type's zero: "" or 0.
struct ZeroEvent<'a>(&'a [&'static TrackerInfo]);

impl ZeroEvent<'_> {
    fn zero(ty: FieldType) -> Value<'static> {
        match ty {
            FieldType::Str => Value::Str(""),
            FieldType::U64 => Value::U64(0),
            FieldType::I64 => Value::I64(0),
            FieldType::Time => Value::Time(0),
        }
    }
}

impl Record for ZeroEvent<'_> {
    fn visit(&self, visit: &mut dyn FnMut(&str, Value<'_>)) {
        for info in self.0 {
            for f in info.all_fields() {
                visit(f.name, Self::zero(f.ty));
            }
        }
    }

    fn get(&self, name: &str) -> Option<Value<'_>> {
        self.0
            .iter()
            .find_map(|info| info.all_fields().find(|f| f.name == name))
            .map(|f| Self::zero(f.ty))
    }
}

/// The variables CEL's comprehension macros bind (`list.exists(x, ...)`): names of the
/// condition's own, not fields.
/// Finds, anywhere in a condition, a `matches` pattern that is no valid regex and a field
/// compared with a literal of another type (`pid == "1"`, `comm == 1`).
fn static_check(expr: &Expr, field_type: &dyn Fn(&str) -> Option<FieldType>) -> Result<(), String> {
    let literal_is_text = |e: &Expr| match e {
        Expr::Literal(LiteralValue::String(_)) => Some(true),
        Expr::Literal(LiteralValue::Int(_) | LiteralValue::UInt(_) | LiteralValue::Double(_)) => {
            Some(false)
        }
        _ => None,
    };
    let children: Vec<&Expr> = match expr {
        Expr::Call(call) => {
            if call.func_name == "matches" {
                if let Some(Expr::Literal(LiteralValue::String(pattern))) =
                    call.args.last().map(|a| &a.expr)
                {
                    regex::Regex::new(pattern.inner())
                        .map_err(|e| format!("condition: bad regex `{}`: {e}", pattern.inner()))?;
                }
            }
            if COMPARISONS.contains(&call.func_name.as_str()) && call.args.len() == 2 {
                for (side, other) in [(0, 1), (1, 0)] {
                    let (Expr::Ident(name), Some(text)) = (
                        &call.args[side].expr,
                        literal_is_text(&call.args[other].expr),
                    ) else {
                        continue;
                    };
                    let field_is_text = match field_type(name) {
                        Some(ty) => ty == FieldType::Str,
                        None => continue,
                    };
                    if field_is_text != text {
                        let (field, value) = if field_is_text {
                            ("text", "number")
                        } else {
                            ("number", "text")
                        };
                        return Err(format!(
                            "condition: `{name}` is a {field}, compared with a {value}"
                        ));
                    }
                }
            }
            call.target
                .iter()
                .map(|t| &t.expr)
                .chain(call.args.iter().map(|a| &a.expr))
                .collect()
        }
        Expr::Comprehension(c) => vec![
            &c.iter_range.expr,
            &c.accu_init.expr,
            &c.loop_cond.expr,
            &c.loop_step.expr,
            &c.result.expr,
        ],
        Expr::List(list) => list.elements.iter().map(|e| &e.expr).collect(),
        Expr::Select(select) => vec![&select.operand.expr],
        Expr::Map(MapExpr { entries }) | Expr::Struct(StructExpr { entries, .. }) => entries
            .iter()
            .flat_map(|entry| match &entry.expr {
                EntryExpr::MapEntry(m) => vec![&m.key.expr, &m.value.expr],
                EntryExpr::StructField(f) => vec![&f.value.expr],
            })
            .collect(),
        Expr::Unspecified | Expr::Ident(_) | Expr::Literal(_) => Vec::new(),
    };
    children
        .into_iter()
        .try_for_each(|child| static_check(child, field_type))
}

/// CEL's comparison operators.
const COMPARISONS: [&str; 6] = [
    operators::EQUALS,
    operators::NOT_EQUALS,
    operators::LESS,
    operators::LESS_EQUALS,
    operators::GREATER,
    operators::GREATER_EQUALS,
];

fn comprehension_variables(condition: &str) -> Vec<String> {
    const MACROS: [&str; 6] = [
        "all(",
        "exists(",
        "exists_one(",
        "map(",
        "filter(",
        "existsOne(",
    ];
    let mut bound = Vec::new();
    for (at, _) in condition.match_indices('.') {
        let rest = &condition[at + 1..];
        if let Some(name) = MACROS.iter().find_map(|m| rest.strip_prefix(m)) {
            if let Some((variable, _)) = name.split_once(',') {
                bound.push(variable.trim().to_string());
            }
        }
    }
    bound
}

/// `condition` with each macro name replaced by its (expanded) condition in parentheses.
/// Identifiers only: not inside string literals, nor after a `.` (a method or field).
fn expand(
    condition: &str,
    macros: &HashMap<String, String>,
    depth: usize,
) -> Result<String, String> {
    if depth > MACRO_DEPTH {
        return Err(format!("macros nest deeper than {MACRO_DEPTH} (a cycle?)"));
    }
    let mut out = String::with_capacity(condition.len());
    let mut chars = condition.char_indices().peekable();
    let mut previous = ' ';
    while let Some((start, c)) = chars.next() {
        if c == '"' || c == '\'' {
            out.push(c);
            let mut escaped = false;
            for (_, d) in chars.by_ref() {
                out.push(d);
                if escaped {
                    escaped = false;
                } else if d == '\\' {
                    escaped = true;
                } else if d == c {
                    break;
                }
            }
            previous = c;
            continue;
        }
        if c.is_ascii_alphabetic() || c == '_' {
            let mut end = start + c.len_utf8();
            while let Some(&(i, d)) = chars.peek() {
                if d.is_ascii_alphanumeric() || d == '_' {
                    end = i + d.len_utf8();
                    chars.next();
                } else {
                    break;
                }
            }
            let word = &condition[start..end];
            match macros.get(word).filter(|_| previous != '.') {
                Some(body) => {
                    out.push('(');
                    out.push_str(&expand(body, macros, depth + 1)?);
                    out.push(')');
                }
                None => out.push_str(word),
            }
            previous = 'a';
            continue;
        }
        out.push(c);
        if !c.is_whitespace() {
            previous = c;
        }
    }
    Ok(out)
}

/// Splits an output template into text and `{field}` parts; `{{` and `}}` are braces.
fn parse_output(output: &str) -> Result<Vec<Part>, String> {
    let mut parts = Vec::new();
    let mut text = String::new();
    let mut chars = output.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                text.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                text.push('}');
            }
            '{' => {
                let field: String = chars.by_ref().take_while(|&d| d != '}').collect();
                if field.is_empty() {
                    return Err("output: an empty `{}`".into());
                }
                if !text.is_empty() {
                    parts.push(Part::Text(std::mem::take(&mut text)));
                }
                parts.push(Part::Field(field.trim().to_string()));
            }
            '}' => return Err("output: a `}` with no `{`".into()),
            c => text.push(c),
        }
    }
    if !text.is_empty() {
        parts.push(Part::Text(text));
    }
    Ok(parts)
}

/// The trackers `rules` read, for a guard that starts only those.
pub fn trackers_of(rules: &[Arc<Rule>]) -> BTreeSet<String> {
    rules
        .iter()
        .flat_map(|r| r.sources.iter().map(|s| s.tracker.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The leading tests of single fields become prefilters, macros, negations and
    /// `list.exists(x, field.startsWith(x))` included; what is not one is left to CEL.
    #[test]
    fn single_field_conjuncts_become_prefilters() {
        let set = RuleSet::builtin();
        let count = |id: &str| set.get(id).unwrap().prefilter.len();
        // kind == "open", ret >= 0, !open_write(flags), path in ..., !(comm in ...)
        assert_eq!(count("read_sensitive_file"), 5);
        // kind, ret, open_write(flags), the comprehension over binary_dirs, a negated list
        assert_eq!(count("write_below_binary_dir"), 5);
        // `container_id != null` too
        assert_eq!(count("terminal_shell_in_container"), 3);
        // kind, ret; the comprehension's predicate is no single field's test
        assert_eq!(count("shell_history_deleted"), 1);
        // kind, ret and the regex, compiled once
        assert_eq!(count("proc_mem_opened"), 3);
        // kind, ret, and the alternatives of the path as one test
        assert_eq!(count("service_account_token_read"), 5);
    }

    #[test]
    fn macros_expand_as_identifiers_only() {
        let macros = HashMap::from([
            (
                "open_read".to_string(),
                "kind == 'open' && is_x".to_string(),
            ),
            ("is_x".to_string(), "path.startsWith('/x')".to_string()),
        ]);
        assert_eq!(
            expand(
                "open_read && comm != 'open_read' && a.open_read",
                &macros,
                0
            )
            .unwrap(),
            "(kind == 'open' && (path.startsWith('/x'))) && comm != 'open_read' && a.open_read"
        );
        let cycle = HashMap::from([("a".to_string(), "a".to_string())]);
        assert!(expand("a", &cycle, 0).unwrap_err().contains("cycle"));
    }

    /// `argv()` gives back the words the process tracker quoted into `args`.
    #[test]
    fn argv_splits_the_quoted_argument_line() {
        let run = |line: &str, condition: &str| {
            let mut context = root_context(&BTreeMap::new(), Arc::default());
            context.add_variable_from_value("args", cel::Value::String(Arc::new(line.into())));
            Program::compile(condition).unwrap().execute(&context)
        };
        let line = "nc 'a b' \"it's\" -e /bin/sh";
        assert_eq!(run(line, "args.argv().size()"), Ok(cel::Value::Int(5)));
        assert_eq!(
            run(line, "args.argv()[1] == 'a b'"),
            Ok(cel::Value::Bool(true))
        );
        assert_eq!(
            run(line, "args.argv()[2] == \"it's\""),
            Ok(cel::Value::Bool(true))
        );
        assert_eq!(
            run(line, "args.argv().exists(a, a == '-e')"),
            Ok(cel::Value::Bool(true))
        );
        // `-e` inside a quoted word is no argument of its own.
        assert_eq!(
            run("sh -c 'nc -e x'", "args.argv().exists(a, a == '-e')"),
            Ok(cel::Value::Bool(false))
        );
        assert!(run("a 'b", "args.argv().size() == 2").is_err());
    }

    #[test]
    fn outputs_split_into_text_and_fields() {
        assert_eq!(
            parse_output("{comm} read {path} {{x}}").unwrap(),
            [
                Part::Field("comm".into()),
                Part::Text(" read ".into()),
                Part::Field("path".into()),
                Part::Text(" {x}".into()),
            ]
        );
        assert!(parse_output("a } b").is_err());
    }
}
