//! Native prefilters: the tests of single fields among a condition's top-level conjuncts
//! (`kind == "open"`, `ret >= 0`, `open_write(flags)`, `path.startsWith("/etc/")`,
//! `path.matches("...")`, `comm in shell_binaries`, their negations, and alternatives of
//! them joined by `||`), checked on the event before CEL runs.
//! Each is necessary for the condition to hold, so one that is surely false means no
//! match, and CEL, which costs far more per rule, is not run. A test that cannot tell
//! (the field is null, or of another type) lets CEL decide: a prefilter never changes an
//! answer, it only skips work.

use cel::common::ast::{operators, CallExpr, Expr, LiteralValue};
use cel::IdedExpr;

use crate::model::{Record, Value};

/// A literal a field is compared with.
#[derive(Clone, Debug, PartialEq)]
pub enum Literal {
    Int(i64),
    Text(String),
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Compare {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Clone, Debug)]
pub enum Check {
    Compare(Compare, Literal),
    StartsWith(String),
    EndsWith(String),
    Contains(String),
    In(Vec<Literal>),
    /// `open_write(flags)` and the like: flags & mask != 0.
    AnyBit(i64),
    /// `text.matches(pattern)`, compiled once.
    Matches(regex::Regex),
}

/// One test: of one field, perhaps negated, or any of several (`||`).
#[derive(Clone, Debug)]
pub enum Test {
    Field {
        field: String,
        check: Check,
        negated: bool,
    },
    Any(Vec<Test>),
}

impl Test {
    /// Some(answer) when the event's values say; None when CEL must decide.
    fn holds(&self, record: &dyn Record) -> Option<bool> {
        let (field, check, negated) = match self {
            Test::Field {
                field,
                check,
                negated,
            } => (field, check, *negated),
            // True when one holds, false when all surely fail.
            Test::Any(tests) => {
                let mut unknown = false;
                for test in tests {
                    match test.holds(record) {
                        Some(true) => return Some(true),
                        Some(false) => {}
                        None => unknown = true,
                    }
                }
                return (!unknown).then_some(false);
            }
        };
        let value = record.get(field)?;
        let answer = match (check, value) {
            (Check::Compare(op, Literal::Int(want)), value) => {
                let got = value_int(value)?;
                compare(*op, got.cmp(want))
            }
            (Check::Compare(op, Literal::Text(want)), Value::Str(got)) => {
                compare(*op, got.cmp(want.as_str()))
            }
            (Check::StartsWith(prefix), Value::Str(got)) => got.starts_with(prefix.as_str()),
            (Check::EndsWith(suffix), Value::Str(got)) => got.ends_with(suffix.as_str()),
            (Check::Contains(part), Value::Str(got)) => got.contains(part.as_str()),
            (Check::In(items), value) => match value {
                Value::Str(got) => items
                    .iter()
                    .any(|i| matches!(i, Literal::Text(t) if t == got)),
                other => {
                    let got = value_int(other)?;
                    items.contains(&Literal::Int(got))
                }
            },
            (Check::AnyBit(mask), value) => value_int(value)? & mask != 0,
            (Check::Matches(regex), Value::Str(got)) => regex.is_match(got),
            _ => return None,
        };
        Some(answer != negated)
    }
}

/// A number as CEL sees it (an int); None for anything else.
fn value_int(value: Value<'_>) -> Option<i64> {
    match value {
        Value::U64(v) | Value::Time(v) => i64::try_from(v).ok(),
        Value::I64(v) => Some(v),
        Value::Null | Value::Str(_) => None,
    }
}

fn compare(op: Compare, ordering: std::cmp::Ordering) -> bool {
    use std::cmp::Ordering::*;
    match op {
        Compare::Eq => ordering == Equal,
        Compare::Ne => ordering != Equal,
        Compare::Lt => ordering == Less,
        Compare::Le => ordering != Greater,
        Compare::Gt => ordering == Greater,
        Compare::Ge => ordering != Less,
    }
}

/// Whether `record` surely fails one of `tests`.
pub fn rules_out(tests: &[Test], record: &dyn Record) -> bool {
    tests.iter().any(|t| t.holds(record) == Some(false))
}

/// A named list's items, by its name.
pub type Lists<'a> = &'a dyn Fn(&str) -> Option<Vec<Literal>>;

/// The tests found among the top-level conjuncts of `expr`; `lists` resolves list names;
/// `flag_masks` gives the bit mask of each open-flag function (`open_write`: O_ACCMODE).
/// The texts `field` must equal for the tests to hold, when one test says so (`field ==
/// "x"`, `field in [...]`): a filter the kernel can apply before any event is sent.
pub fn required_texts(tests: &[Test], field: &str) -> Option<Vec<String>> {
    let texts = |literals: &[Literal]| -> Option<Vec<String>> {
        literals
            .iter()
            .map(|l| match l {
                Literal::Text(t) => Some(t.clone()),
                Literal::Int(_) => None,
            })
            .collect()
    };
    tests.iter().find_map(|test| match test {
        Test::Field {
            field: f,
            check,
            negated: false,
        } if f == field => match check {
            Check::Compare(Compare::Eq, literal) => texts(std::slice::from_ref(literal)),
            Check::In(literals) => texts(literals),
            _ => None,
        },
        _ => None,
    })
}

pub fn extract(expr: &IdedExpr, lists: Lists<'_>, flag_masks: &[(&str, i64)]) -> Vec<Test> {
    let mut conjuncts = Vec::new();
    flatten(expr, operators::LOGICAL_AND, &mut conjuncts);
    conjuncts
        .into_iter()
        .filter_map(|c| test_of(c, lists, flag_masks))
        .collect()
}

/// The operands of a chain of `op` (`_&&_` or `_||_`), in order.
fn flatten<'e>(expr: &'e IdedExpr, op: &str, out: &mut Vec<&'e IdedExpr>) {
    match &expr.expr {
        Expr::Call(call) if call.func_name == op && call.args.len() == 2 => {
            flatten(&call.args[0], op, out);
            flatten(&call.args[1], op, out);
        }
        _ => out.push(expr),
    }
}

fn test_of(expr: &IdedExpr, lists: Lists<'_>, flag_masks: &[(&str, i64)]) -> Option<Test> {
    let Expr::Call(call) = &expr.expr else {
        return None;
    };
    if call.func_name == operators::LOGICAL_NOT && call.args.len() == 1 {
        return match test_of(&call.args[0], lists, flag_masks)? {
            Test::Field {
                field,
                check,
                negated,
            } => Some(Test::Field {
                field,
                check,
                negated: !negated,
            }),
            Test::Any(_) => None,
        };
    }
    if call.func_name == operators::LOGICAL_OR && call.args.len() == 2 {
        // Every alternative must be a test, or the whole may hold without any of them.
        let mut alternatives = Vec::new();
        flatten(expr, operators::LOGICAL_OR, &mut alternatives);
        let tests = alternatives
            .into_iter()
            .map(|a| test_of(a, lists, flag_masks))
            .collect::<Option<Vec<_>>>()?;
        return Some(Test::Any(tests));
    }
    let (field, check) = match (call.func_name.as_str(), call_parts(call)) {
        (name, (None, [a, b])) => {
            let op = match name {
                operators::EQUALS => Some(Compare::Eq),
                operators::NOT_EQUALS => Some(Compare::Ne),
                operators::LESS => Some(Compare::Lt),
                operators::LESS_EQUALS => Some(Compare::Le),
                operators::GREATER => Some(Compare::Gt),
                operators::GREATER_EQUALS => Some(Compare::Ge),
                _ => None,
            };
            match op {
                Some(op) => (ident(a)?, Check::Compare(op, literal(b)?)),
                None if name == operators::IN => (ident(a)?, Check::In(list(b, lists)?)),
                None => return None,
            }
        }
        (name, (Some(target), [arg])) => {
            let text = match literal(arg)? {
                Literal::Text(t) => t,
                Literal::Int(_) => return None,
            };
            let check = match name {
                "startsWith" => Check::StartsWith(text),
                "endsWith" => Check::EndsWith(text),
                "contains" => Check::Contains(text),
                // A bad pattern is CEL's to report.
                "matches" => Check::Matches(regex::Regex::new(&text).ok()?),
                _ => return None,
            };
            (ident(target)?, check)
        }
        (name, (None, [arg])) => {
            let (_, mask) = flag_masks.iter().find(|(f, _)| *f == name)?;
            (ident(arg)?, Check::AnyBit(*mask))
        }
        _ => return None,
    };
    Some(Test::Field {
        field,
        check,
        negated: false,
    })
}

fn call_parts(call: &CallExpr) -> (Option<&IdedExpr>, &[IdedExpr]) {
    (call.target.as_deref(), call.args.as_slice())
}

fn ident(expr: &IdedExpr) -> Option<String> {
    match &expr.expr {
        Expr::Ident(name) => Some(name.clone()),
        _ => None,
    }
}

fn literal(expr: &IdedExpr) -> Option<Literal> {
    match &expr.expr {
        Expr::Literal(LiteralValue::Int(v)) => Some(Literal::Int(*v.inner())),
        Expr::Literal(LiteralValue::UInt(v)) => i64::try_from(*v.inner()).ok().map(Literal::Int),
        Expr::Literal(LiteralValue::String(s)) => Some(Literal::Text(s.inner().to_string())),
        _ => None,
    }
}

/// A list literal of literals, or a named list.
fn list(expr: &IdedExpr, lists: Lists<'_>) -> Option<Vec<Literal>> {
    match &expr.expr {
        Expr::List(items) => items.elements.iter().map(literal).collect(),
        Expr::Ident(name) => lists(name),
        _ => None,
    }
}
