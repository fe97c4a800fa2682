//! How a numeric field reads to people: the text mode shows it so, and JSON keeps the
//! number and adds the text beside it (`<field>_text`), durations excepted. The catalog says which fields
//! have a format ([`super::FieldInfo::format`]).

use std::fmt::Write;

use super::{errno_name, Value};

/// A field's reading for people.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, async_graphql::Enum)]
#[serde(rename_all = "snake_case")]
pub enum FieldFormat {
    /// The number as it is.
    #[default]
    Plain,
    /// A return value: -4095..-1 is a failure, shown as its errno name (`-2` is `ENOENT`);
    /// anything else stays a number.
    Errno,
    /// open(2) flags: `577` is `O_WRONLY|O_CREAT|O_TRUNC`.
    OpenFlags,
    /// Permission bits and flags in octal, as `ipcs` and `ls` think of them: `01600`.
    Octal,
    /// A key in hex, as `ipcs` prints it: `0x0000162e`.
    Hex,
    /// Nanoseconds in the unit that suits them, three figures: `840ns`, `17.6ms`, `3.12s`.
    /// Text only: in JSON the field's name says its unit.
    Duration,
    /// A path: the text table gives it a wide column and cuts a longer one in the middle,
    /// where it says least (`/usr/lib/x86…/libc.so.6`). Text only.
    Path,
}

/// The kernel's largest errno: a return value in -MAX_ERRNO..-1 is an error.
const MAX_ERRNO: i64 = 4095;

/// open(2) flags past the access mode, as x86-64 Linux numbers them (asm-generic/fcntl.h).
/// O_SYNC is __O_SYNC with O_DSYNC and O_TMPFILE is __O_TMPFILE with O_DIRECTORY: listed
/// first, so the composite name is used when all its bits are there.
const OPEN_FLAGS: &[(u64, &str)] = &[
    (0o4010000, "O_SYNC"),
    (0o20200000, "O_TMPFILE"),
    (0o100, "O_CREAT"),
    (0o200, "O_EXCL"),
    (0o400, "O_NOCTTY"),
    (0o1000, "O_TRUNC"),
    (0o2000, "O_APPEND"),
    (0o4000, "O_NONBLOCK"),
    (0o10000, "O_DSYNC"),
    (0o20000, "O_ASYNC"),
    (0o40000, "O_DIRECT"),
    (0o100000, "O_LARGEFILE"),
    (0o200000, "O_DIRECTORY"),
    (0o400000, "O_NOFOLLOW"),
    (0o1000000, "O_NOATIME"),
    (0o2000000, "O_CLOEXEC"),
    (0o10000000, "O_PATH"),
];

impl FieldFormat {
    /// Writes `value` as people read it into `out` and returns true; false (writing
    /// nothing) when the format has nothing to add: plain, null, or a number that is
    /// clearer as it is (a return value that is no error).
    pub fn write(self, value: Value<'_>, out: &mut String) -> bool {
        let number = match value {
            Value::U64(v) => i128::from(v),
            Value::I64(v) => i128::from(v),
            Value::Null | Value::Str(_) | Value::Time(_) => return false,
        };
        match self {
            FieldFormat::Plain | FieldFormat::Path => false,
            FieldFormat::Errno => match i64::try_from(number) {
                Ok(n) if (-MAX_ERRNO..0).contains(&n) => {
                    match errno_name(-n as i32) {
                        Some(name) => out.push_str(name),
                        None => {
                            let _ = write!(out, "errno {}", -n);
                        }
                    }
                    true
                }
                _ => false,
            },
            FieldFormat::OpenFlags => match u64::try_from(number) {
                Ok(flags) => {
                    write_open_flags(flags, out);
                    true
                }
                Err(_) => false,
            },
            FieldFormat::Octal => {
                let _ = write!(out, "0{number:o}");
                true
            }
            FieldFormat::Hex => {
                let _ = write!(out, "0x{number:08x}");
                true
            }
            FieldFormat::Duration => {
                write_duration(number, out);
                true
            }
        }
    }

    /// Whether JSON adds this reading beside the number.
    pub fn in_json(self) -> bool {
        !matches!(
            self,
            FieldFormat::Plain | FieldFormat::Duration | FieldFormat::Path
        )
    }
}

fn write_duration(ns: i128, out: &mut String) {
    let (value, unit) = match ns.unsigned_abs() {
        0..1_000 => {
            let _ = write!(out, "{ns}ns");
            return;
        }
        1_000..1_000_000 => (ns as f64 / 1e3, "us"),
        1_000_000..1_000_000_000 => (ns as f64 / 1e6, "ms"),
        _ => (ns as f64 / 1e9, "s"),
    };
    // Three significant figures: 1.23, 12.3, 123.
    let decimals = match value.abs() {
        v if v < 10.0 => 2,
        v if v < 100.0 => 1,
        _ => 0,
    };
    let _ = write!(out, "{value:.decimals$}{unit}");
}

fn write_open_flags(flags: u64, out: &mut String) {
    out.push_str(match flags & 0o3 {
        0 => "O_RDONLY",
        1 => "O_WRONLY",
        2 => "O_RDWR",
        _ => "O_ACCMODE",
    });
    let mut rest = flags & !0o3;
    for &(bits, name) in OPEN_FLAGS {
        if rest & bits == bits {
            out.push('|');
            out.push_str(name);
            rest &= !bits;
        }
    }
    if rest != 0 {
        let _ = write!(out, "|0x{rest:x}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(format: FieldFormat, value: Value<'_>) -> Option<String> {
        let mut out = String::new();
        format.write(value, &mut out).then_some(out)
    }

    #[test]
    fn numbers_read_as_people_read_them() {
        assert_eq!(
            text(FieldFormat::Errno, Value::I64(-2)).as_deref(),
            Some("ENOENT")
        );
        assert_eq!(
            text(FieldFormat::Errno, Value::I64(-13)).as_deref(),
            Some("EACCES")
        );
        assert_eq!(
            text(FieldFormat::Errno, Value::I64(-4000)).as_deref(),
            Some("errno 4000")
        );
        assert_eq!(text(FieldFormat::Errno, Value::I64(3)), None);
        assert_eq!(text(FieldFormat::Errno, Value::I64(-4096)), None);
        assert_eq!(text(FieldFormat::Errno, Value::Null), None);
        assert_eq!(
            text(FieldFormat::OpenFlags, Value::U64(577)).as_deref(),
            Some("O_WRONLY|O_CREAT|O_TRUNC")
        );
        assert_eq!(
            text(FieldFormat::OpenFlags, Value::U64(0)).as_deref(),
            Some("O_RDONLY")
        );
        assert_eq!(
            text(
                FieldFormat::OpenFlags,
                Value::U64(0o2 | 0o4010000 | 0o2000000)
            )
            .as_deref(),
            Some("O_RDWR|O_SYNC|O_CLOEXEC")
        );
        assert_eq!(
            text(
                FieldFormat::OpenFlags,
                Value::U64(0o200000 | 0o10000000 | 1 << 40)
            )
            .as_deref(),
            Some("O_RDONLY|O_DIRECTORY|O_PATH|0x10000000000")
        );
        assert_eq!(
            text(FieldFormat::Octal, Value::U64(0o1600)).as_deref(),
            Some("01600")
        );
        assert_eq!(
            text(FieldFormat::Hex, Value::U64(5678)).as_deref(),
            Some("0x0000162e")
        );
        assert_eq!(text(FieldFormat::Plain, Value::U64(5)), None);
        let durations = [
            (840, "840ns"),
            (1_000, "1.00us"),
            (17_612_345, "17.6ms"),
            (3_120_000_000, "3.12s"),
            (999_999, "1000us"),
            (7_200_000_000_000, "7200s"),
        ];
        for (ns, want) in durations {
            assert_eq!(
                text(FieldFormat::Duration, Value::U64(ns)).as_deref(),
                Some(want)
            );
        }
        assert!(!FieldFormat::Duration.in_json() && FieldFormat::Errno.in_json());
    }
}
