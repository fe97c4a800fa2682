//! Native prefilters: the tests of single fields among a condition's top-level conjuncts
//! (`kind == "open"`, `ret >= 0`, `open_write(flags)`, `path.startsWith("/etc/")`,
//! `path.matches("...")`, `comm in shell_binaries`, their negations, and alternatives of
//! them joined by `||`), checked on the event before CEL runs.
//! Each is necessary for the condition to hold, so one that is surely false means no
//! match, and CEL, which costs far more per rule, is not run. A test that cannot tell
//! (the field is null, or of another type) lets CEL decide: a prefilter never changes an
//! answer, it only skips work.

use cel::common::ast::{operators, CallExpr, ComprehensionExpr, Expr, LiteralValue};
use cel::IdedExpr;

use crate::model::{Record, Value};

/// A literal a field is compared with.
#[derive(Clone, Debug, PartialEq)]
pub enum Literal {
    Int(i64),
    Text(String),
    /// `null`: only `==` and `!=` compare with it.
    Null,
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
        /// Its field's place in a [`Plan`]'s cache of this event's values.
        slot: usize,
        check: Check,
        negated: bool,
    },
    Any(Vec<Test>),
}

impl Test {
    /// Some(answer) when the event's values say; None when CEL must decide.
    /// `get` reads a field's value, by its slot and name.
    fn holds<'r>(&self, get: &mut dyn FnMut(usize, &str) -> Option<Value<'r>>) -> Option<bool> {
        let (field, slot, check, negated) = match self {
            Test::Field {
                field,
                slot,
                check,
                negated,
            } => (field, *slot, check, *negated),
            // True when one holds, false when all surely fail.
            Test::Any(tests) => {
                let mut unknown = false;
                for test in tests {
                    match test.holds(get) {
                        Some(true) => return Some(true),
                        Some(false) => {}
                        None => unknown = true,
                    }
                }
                return (!unknown).then_some(false);
            }
        };
        let value = get(slot, field)?;
        let answer = match (check, value) {
            (Check::Compare(Compare::Eq, Literal::Null), value) => value == Value::Null,
            (Check::Compare(Compare::Ne, Literal::Null), value) => value != Value::Null,
            (Check::Compare(_, Literal::Null), _) => return None,
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

/// A test's field with no place in a plan's cache (read by name each time).
const NO_SLOT: usize = usize::MAX;

/// Fields a plan keeps the values of, per event, at most.
const CACHED_FIELDS: usize = 16;

/// The prefilters of the rules one matcher runs: each distinct test (`kind == "open"`,
/// `ret >= 0` and `open_write(flags)` are shared by most file rules) is evaluated at most
/// once per event, and each field it reads is read once.
pub struct Plan {
    tests: Vec<Test>,
    /// Per rule, its tests' indices.
    rules: Vec<Vec<usize>>,
    /// Per test, this event's answer so far.
    memo: Vec<u8>,
}

const NOT_YET: u8 = 0;
const HOLDS: u8 = 1;
const FAILS: u8 = 2;
const UNDECIDED: u8 = 3;

/// One event's field values, as a plan read them.
pub struct FieldCache<'r> {
    record: &'r dyn Record,
    values: [Option<Option<Value<'r>>>; CACHED_FIELDS],
}

impl<'r> FieldCache<'r> {
    fn get(&mut self, slot: usize, name: &str) -> Option<Value<'r>> {
        let record = self.record;
        match self.values.get_mut(slot) {
            Some(cached) => *cached.get_or_insert_with(|| record.get(name)),
            None => record.get(name),
        }
    }
}

impl Plan {
    pub fn new<'a>(prefilters: impl IntoIterator<Item = &'a [Test]>) -> Plan {
        let mut tests: Vec<Test> = Vec::new();
        // Tests are equal when they print the same (a regex prints its pattern).
        let mut seen: std::collections::HashMap<String, usize> = Default::default();
        let rules = prefilters
            .into_iter()
            .map(|prefilter| {
                prefilter
                    .iter()
                    .map(|test| {
                        *seen.entry(format!("{test:?}")).or_insert_with(|| {
                            tests.push(test.clone());
                            tests.len() - 1
                        })
                    })
                    .collect()
            })
            .collect();
        let mut fields = Vec::new();
        for test in &mut tests {
            assign_slots(test, &mut fields);
        }
        Plan {
            memo: vec![NOT_YET; tests.len()],
            tests,
            rules,
        }
    }

    /// A new event: the last one's answers are forgotten; returns the cache of its values.
    pub fn begin<'r>(&mut self, record: &'r dyn Record) -> FieldCache<'r> {
        self.memo.fill(NOT_YET);
        FieldCache {
            record,
            values: [None; CACHED_FIELDS],
        }
    }

    /// Whether rule `rule` (by its index in `new`) may match the event of `fields`: none
    /// of its tests surely fails.
    pub fn allows(&mut self, rule: usize, fields: &mut FieldCache<'_>) -> bool {
        for &test in &self.rules[rule] {
            let mut answer = self.memo[test];
            if answer == NOT_YET {
                answer = match self.tests[test].holds(&mut |slot, name| fields.get(slot, name)) {
                    Some(true) => HOLDS,
                    Some(false) => FAILS,
                    None => UNDECIDED,
                };
                self.memo[test] = answer;
            }
            if answer == FAILS {
                return false;
            }
        }
        true
    }
}

/// Gives each field `test` reads its place among `fields` (the first CACHED_FIELDS).
fn assign_slots(test: &mut Test, fields: &mut Vec<String>) {
    match test {
        Test::Field { field, slot, .. } => {
            let at = match fields.iter().position(|f| f == field) {
                Some(at) => at,
                None => {
                    fields.push(field.clone());
                    fields.len() - 1
                }
            };
            *slot = if at < CACHED_FIELDS { at } else { NO_SLOT };
        }
        Test::Any(tests) => {
            for test in tests {
                assign_slots(test, fields);
            }
        }
    }
}

/// A named list's items, by its name.
pub type Lists<'a> = &'a dyn Fn(&str) -> Option<Vec<Literal>>;

/// The texts `field` must equal for the tests to hold, when one test says so (`field ==
/// "x"`, `field in [...]`): a filter the kernel can apply before any event is sent.
pub fn required_texts(tests: &[Test], field: &str) -> Option<Vec<String>> {
    let texts = |literals: &[Literal]| -> Option<Vec<String>> {
        literals
            .iter()
            .map(|l| match l {
                Literal::Text(t) => Some(t.clone()),
                Literal::Int(_) | Literal::Null => None,
            })
            .collect()
    };
    tests.iter().find_map(|test| match test {
        Test::Field {
            field: f,
            check,
            negated: false,
            ..
        } if f == field => match check {
            Check::Compare(Compare::Eq, literal) => texts(std::slice::from_ref(literal)),
            Check::In(literals) => texts(literals),
            _ => None,
        },
        _ => None,
    })
}

/// The tests found among the top-level conjuncts of `expr`; `lists` resolves list names;
/// `flag_masks` gives the bit mask of each open-flag function (`open_write`: O_ACCMODE).
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
    let call = match &expr.expr {
        Expr::Call(call) => call,
        Expr::Comprehension(comprehension) => return exists_test(comprehension, lists),
        _ => return None,
    };
    if call.func_name == operators::LOGICAL_NOT && call.args.len() == 1 {
        return match test_of(&call.args[0], lists, flag_masks)? {
            Test::Field {
                field,
                slot,
                check,
                negated,
            } => Some(Test::Field {
                field,
                slot,
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
            let Literal::Text(text) = literal(arg)? else {
                return None;
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
        slot: NO_SLOT,
        check,
        negated: false,
    })
}

/// `list.exists(x, field.startsWith(x))` (or endsWith, contains, `field == x`): a test
/// of the field against each item, any of which will do.
fn exists_test(c: &ComprehensionExpr, lists: Lists<'_>) -> Option<Test> {
    let is_exists =
        matches!(c.accu_init.expr, Expr::Literal(LiteralValue::Boolean(ref b)) if !*b.inner());
    let Expr::Call(step) = &c.loop_step.expr else {
        return None;
    };
    if !is_exists || step.func_name != operators::LOGICAL_OR || step.args.len() != 2 {
        return None;
    }
    let Expr::Call(predicate) = &step.args[1].expr else {
        return None;
    };
    let (field, item_is_arg) = match call_parts(predicate) {
        (Some(target), [arg]) => (ident(target)?, ident(arg)? == c.iter_var),
        (None, [a, b]) if predicate.func_name == operators::EQUALS => {
            (ident(a)?, ident(b)? == c.iter_var)
        }
        _ => return None,
    };
    if !item_is_arg || c.iter_var2.is_some() {
        return None;
    }
    let tests = list(&c.iter_range, lists)?
        .into_iter()
        .map(|item| {
            let check = match (predicate.func_name.as_str(), item) {
                (operators::EQUALS, item) => Check::Compare(Compare::Eq, item),
                ("startsWith", Literal::Text(t)) => Check::StartsWith(t),
                ("endsWith", Literal::Text(t)) => Check::EndsWith(t),
                ("contains", Literal::Text(t)) => Check::Contains(t),
                _ => return None,
            };
            Some(Test::Field {
                field: field.clone(),
                slot: NO_SLOT,
                check,
                negated: false,
            })
        })
        .collect::<Option<Vec<_>>>()?;
    Some(Test::Any(tests))
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
        Expr::Literal(LiteralValue::Null) => Some(Literal::Null),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Comm, FixedStr, Header};
    use crate::security::RuleSet;
    use crate::trackers::files::{FileRef, FileType, FilesEvent};
    use crate::trackers::Event;

    /// Whether `record` surely fails one of `tests`, each run on its own.
    fn rules_out(tests: &[Test], record: &dyn Record) -> bool {
        tests
            .iter()
            .any(|t| t.holds(&mut |_, name| record.get(name)) == Some(false))
    }

    fn open(path: &str, flags: u32, ret: i64, comm: &str) -> Event {
        Event {
            header: Header {
                pid: 42,
                comm: Comm::from(comm),
                ..Header::default()
            },
            body: FilesEvent::Open {
                file: FileRef {
                    path: FixedStr::from(path),
                    file_type: Some(FileType::Regular),
                },
                flags,
                ret,
                opens: 1,
            }
            .into(),
        }
    }

    /// Sharing tests and field reads between rules changes no rule's answer.
    #[test]
    fn a_plan_answers_as_each_rules_own_tests() {
        let set = RuleSet::builtin();
        let rules: Vec<_> = set
            .rules()
            .iter()
            .filter(|r| r.reads("files", "open"))
            .collect();
        assert!(rules.len() > 20);
        let mut plan = Plan::new(rules.iter().map(|r| r.prefilter()));
        let events = [
            open("/etc/shadow", 0, 3, "cat"),
            open("/etc/shadow", 0, 3, "sudo"),
            open("/etc/passwd", 0o1101, 3, "vi"),
            open("/tmp/.hidden", 0o101, 4, "sh"),
            open("/usr/bin/ls", 1, 5, "cp"),
            open("/usr/bin/ls", 1, 5, "dpkg"),
            open("/proc/12/mem", 2, -13, "gdb"),
            open("/root/.ssh/authorized_keys", 0o1101, 6, "sh"),
            open("/home/a/.bashrc", 0o2001, 6, "sh"),
            open(
                "/var/run/secrets/kubernetes.io/serviceaccount/token",
                0,
                7,
                "curl",
            ),
            open("relative", 0, 7, "sh"),
        ];
        let mut ruled_out = 0;
        for event in &events {
            let mut fields = plan.begin(event);
            for (i, rule) in rules.iter().enumerate() {
                let alone = !rules_out(rule.prefilter(), event);
                assert_eq!(
                    plan.allows(i, &mut fields),
                    alone,
                    "{} on {event:?}",
                    rule.id
                );
                ruled_out += usize::from(!alone);
            }
        }
        // Most rules are ruled out by their tests alone on most of these events.
        assert!(ruled_out > events.len() * rules.len() / 2, "{ruled_out}");
    }
}
