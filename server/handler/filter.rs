//! Pass-through filter on any field: `comm == sh`, `exit_code != 0`, `filename ~ /bin/`.

use std::cmp::Ordering;
use std::fmt;
use std::io;

use super::{Flow, Handler};
use crate::model::{FieldType, Record, Value};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FilterError {
    #[error("filter `{0}` has no operator; use one of == != > >= < <= ~ (contains)")]
    NoOperator(String),
    #[error("filter `{0}` names no field")]
    NoField(String),
    #[error("filter `{0}` has more than one operator; use one of == != > >= < <= ~ (contains)")]
    ExtraOperator(String),
    #[error("filter `{0}` compares with `=`; equality is `==`")]
    SingleEquals(String),
    #[error("unknown field `{field}`; known fields: {known}")]
    UnknownField { field: String, known: String },
    #[error("field `{field}` is numeric but `{value}` is not a number")]
    NotANumber { field: String, value: String },
    #[error("operator `~` (contains) needs a text field, and `{0}` is numeric")]
    ContainsOnNumber(String),
}

/// A comparison operator (`CmpOp` in the GraphQL API).
#[derive(Clone, Copy, Debug, PartialEq, Eq, async_graphql::Enum)]
#[graphql(name = "CmpOp")]
pub enum Op {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
    Contains,
}

impl Op {
    /// Longest spellings first, so `>=` is not read as `>`. A lone `=` is recognised only
    /// to be refused.
    const SPELLINGS: [(&'static str, Op); 8] = [
        ("==", Op::Eq),
        ("!=", Op::Ne),
        (">=", Op::Ge),
        ("<=", Op::Le),
        ("=", Op::Eq),
        (">", Op::Gt),
        ("<", Op::Lt),
        ("~", Op::Contains),
    ];

    fn holds(self, ordering: Ordering) -> bool {
        match self {
            Op::Eq => ordering == Ordering::Equal,
            Op::Ne => ordering != Ordering::Equal,
            Op::Gt => ordering == Ordering::Greater,
            Op::Ge => ordering != Ordering::Less,
            Op::Lt => ordering == Ordering::Less,
            Op::Le => ordering != Ordering::Greater,
            Op::Contains => false,
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let spelling = Op::SPELLINGS
            .iter()
            .find(|(_, op)| op == self)
            .map_or("?", |(s, _)| s);
        f.write_str(spelling)
    }
}

/// `field op value`, checked against the field's type when it is built.
#[derive(Clone, Debug, PartialEq)]
pub struct Predicate {
    field: String,
    op: Op,
    text: String,
    number: Option<i128>,
}

impl Predicate {
    /// Parses `field op value`; `field_type` says what each known field holds.
    pub fn parse(
        expr: &str,
        field_type: impl Fn(&str) -> Option<FieldType>,
        known: &[&str],
    ) -> Result<Self, FilterError> {
        let (at, spelling, op) = Op::SPELLINGS
            .iter()
            .filter_map(|&(s, op)| expr.find(s).map(|at| (at, s, op)))
            .min_by_key(|&(at, s, _)| (at, std::cmp::Reverse(s.len())))
            .ok_or_else(|| FilterError::NoOperator(expr.to_string()))?;
        let field = expr[..at].trim();
        let text = expr[at + spelling.len()..].trim();
        if field.is_empty() {
            return Err(FilterError::NoField(expr.to_string()));
        }
        // `===`, `=~`, `<>`: an operator that is not one would otherwise match nothing.
        if text.starts_with(['=', '~', '<', '>', '!']) {
            return Err(FilterError::ExtraOperator(expr.to_string()));
        }
        // Read as a typo rather than guessed at: `=` is assignment in most languages.
        if spelling == "=" {
            return Err(FilterError::SingleEquals(expr.to_string()));
        }
        // A quoted value is the text between the quotes, as a shell user expects.
        let text = ['"', '\'']
            .iter()
            .find_map(|&q| text.strip_prefix(q)?.strip_suffix(q))
            .unwrap_or(text);
        let ty = field_type(field).ok_or_else(|| FilterError::UnknownField {
            field: field.to_string(),
            known: known.join(", "),
        })?;
        Self::new(field, op, text, ty)
    }

    pub fn new(field: &str, op: Op, text: &str, ty: FieldType) -> Result<Self, FilterError> {
        // Times compare as nanoseconds since the epoch.
        let numeric = matches!(ty, FieldType::U64 | FieldType::I64 | FieldType::Time);
        let number = text.parse::<i128>().ok();
        if numeric && number.is_none() {
            return Err(FilterError::NotANumber {
                field: field.to_string(),
                value: text.to_string(),
            });
        }
        if numeric && op == Op::Contains {
            return Err(FilterError::ContainsOnNumber(field.to_string()));
        }
        Ok(Self {
            field: field.to_string(),
            op,
            text: text.to_string(),
            number: if numeric { number } else { None },
        })
    }

    pub fn field(&self) -> &str {
        &self.field
    }

    pub fn op(&self) -> Op {
        self.op
    }

    /// The value as given (without its quotes).
    pub fn text(&self) -> &str {
        &self.text
    }

    /// A record without the field, or with a null in it, never matches.
    pub fn matches<R: Record + ?Sized>(&self, record: &R) -> bool {
        match record.get(&self.field) {
            None | Some(Value::Null) => false,
            Some(Value::Str(s)) => match self.op {
                Op::Contains => s.contains(self.text.as_str()),
                op => op.holds(s.cmp(self.text.as_str())),
            },
            Some(value) => match (value.as_i128(), self.number) {
                (Some(lhs), Some(rhs)) => self.op.holds(lhs.cmp(&rhs)),
                _ => false,
            },
        }
    }
}

impl fmt::Display for Predicate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.field, self.op, self.text)
    }
}

/// Passes a record on when every predicate holds; catches it otherwise.
pub struct Filter<N> {
    predicates: Vec<Predicate>,
    next: N,
}

impl<N> Filter<N> {
    pub fn new(predicates: Vec<Predicate>, next: N) -> Self {
        Self { predicates, next }
    }
}

impl<R: Record + ?Sized, N: Handler<R>> Handler<R> for Filter<N> {
    fn handle(&mut self, record: &R) -> Flow {
        if self.predicates.iter().all(|p| p.matches(record)) {
            self.next.handle(record)
        } else {
            Flow::Caught
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.next.flush()
    }

    fn finish(&mut self) -> io::Result<()> {
        self.next.finish()
    }

    fn begin_period(&mut self) -> io::Result<()> {
        self.next.begin_period()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record with one numeric field `n` and one text field `s`.
    struct One(u64, &'static str);

    impl Record for One {
        fn visit(&self, visit: &mut dyn FnMut(&str, Value<'_>)) {
            visit("n", Value::U64(self.0));
            visit("s", Value::Str(self.1));
        }

        fn get(&self, name: &str) -> Option<Value<'_>> {
            match name {
                "n" => Some(Value::U64(self.0)),
                "s" => Some(Value::Str(self.1)),
                _ => None,
            }
        }
    }

    /// Every operator below, at and above its bound, on numbers and on text; and each
    /// prints as it is spelled.
    #[test]
    fn every_operator_holds_exactly_where_it_should() {
        let ty = |f: &str| {
            Some(if f == "n" {
                FieldType::U64
            } else {
                FieldType::Str
            })
        };
        let holds = |expr: &str| -> [bool; 3] {
            let number = Predicate::parse(expr, ty, &["n", "s"]).unwrap();
            [One(4, ""), One(5, ""), One(6, "")].map(|r| number.matches(&r))
        };
        assert_eq!(holds("n == 5"), [false, true, false]);
        assert_eq!(holds("n != 5"), [true, false, true]);
        assert_eq!(holds("n > 5"), [false, false, true]);
        assert_eq!(holds("n >= 5"), [false, true, true]);
        assert_eq!(holds("n < 5"), [true, false, false]);
        assert_eq!(holds("n <= 5"), [true, true, false]);
        let text = |expr: &str| -> [bool; 3] {
            let p = Predicate::parse(expr, ty, &["n", "s"]).unwrap();
            [One(0, "a"), One(0, "b"), One(0, "c")].map(|r| p.matches(&r))
        };
        assert_eq!(text("s <= b"), [true, true, false]);
        assert_eq!(text("s > b"), [false, false, true]);
        assert_eq!(text("s ~ b"), [false, true, false]);
        for (spelling, op) in Op::SPELLINGS {
            let shown = op.to_string();
            assert_eq!(
                Op::SPELLINGS
                    .iter()
                    .find(|(s, _)| *s == shown)
                    .map(|&(_, o)| o),
                Some(op),
                "{spelling}"
            );
        }
        assert_eq!(
            Predicate::parse("n>=5", ty, &[]).unwrap().to_string(),
            "n >= 5"
        );
    }
}
