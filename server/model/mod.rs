//! The record vocabulary, the ground floor every other module stands on: typed events,
//! their fields and catalog entries, and the `Record` view that handlers work on; and
//! [`SessionId`], the name of a session wherever its events and results go.
//!
//! Every tracker's event is an [`Event`]: a common header (who, where, when) plus a
//! tracker-specific body (the registry's `trackers::Body`). Handlers never match on
//! tracker types: they read fields by name through [`Record`], so one filter or
//! aggregator works for every tracker. Nothing here imports another module of the crate.

use std::fmt;

mod errno;
mod format;
mod signal;
pub use errno::errno_name;
pub use format::FieldFormat;
pub use signal::signal_name;

/// Constants shared with the probes, generated from probes/common.h by build.rs.
pub mod common_h {
    include!(concat!(env!("OUT_DIR"), "/common_h.rs"));
}

/// The type of a field, as the catalog reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldType {
    /// Wall-clock time in nanoseconds since the Unix epoch, printed as RFC 3339.
    Time,
    U64,
    I64,
    Str,
}

/// One field of a tracker's events: the catalog entry users filter and group by.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct FieldInfo {
    pub name: &'static str,
    #[serde(rename = "type")]
    pub ty: FieldType,
    pub description: &'static str,
    /// A quantity (count, size, duration, return value) rather than an identity: in-memory
    /// sessions sum it instead of keeping one group per distinct value.
    pub measure: bool,
    /// A measure that, in records standing for many calls (see
    /// [`TrackerInfo::weight`]), is their sum: an average or percentile over such records
    /// would be one of interval sums, not of calls.
    pub total: bool,
    /// How people read it (an errno name, flag names, octal, hex).
    pub format: FieldFormat,
}

impl FieldInfo {
    /// An identity field: something events are grouped by.
    pub const fn new(name: &'static str, ty: FieldType, description: &'static str) -> Self {
        Self {
            name,
            ty,
            description,
            measure: false,
            total: false,
            format: FieldFormat::Plain,
        }
    }

    /// The same field, read by people as `format` says.
    pub const fn shown_as(self, format: FieldFormat) -> Self {
        Self { format, ..self }
    }

    /// A numeric quantity; see [`FieldInfo::measure`].
    pub const fn measure(name: &'static str, ty: FieldType, description: &'static str) -> Self {
        Self {
            measure: true,
            ..Self::new(name, ty, description)
        }
    }

    /// A numeric quantity summed over the calls a record stands for; see
    /// [`FieldInfo::total`].
    pub const fn total(name: &'static str, ty: FieldType, description: &'static str) -> Self {
        Self {
            total: true,
            ..Self::measure(name, ty, description)
        }
    }
}

/// The fields every event has, in output order. Tracker fields follow them.
pub const COMMON_FIELDS: &[FieldInfo] = &[
    FieldInfo::new(
        "tracker",
        FieldType::Str,
        "name of the tracker that produced the event",
    ),
    FieldInfo::new(
        "kind",
        FieldType::Str,
        "what happened, per tracker (e.g. exec, exit)",
    ),
    FieldInfo::new(
        "ts",
        FieldType::Time,
        "when it happened (RFC 3339, nanoseconds, UTC)",
    ),
    FieldInfo::new("pid", FieldType::U64, "process id (thread group id)"),
    FieldInfo::new("ppid", FieldType::U64, "parent process id"),
    FieldInfo::new(
        "comm",
        FieldType::Str,
        "task command name (at most 15 bytes)",
    ),
    FieldInfo::new("cgroup_id", FieldType::U64, "cgroup v2 id of the task"),
    FieldInfo::new("user_ns", FieldType::U64, "user namespace inode number"),
    FieldInfo::new("pid_ns", FieldType::U64, "pid namespace inode number"),
    FieldInfo::new("mnt_ns", FieldType::U64, "mount namespace inode number"),
    FieldInfo::new(
        "container",
        FieldType::Str,
        "container name (its short id when it has none); null on the host",
    ),
    FieldInfo::new(
        "container_id",
        FieldType::Str,
        "full container id; null on the host",
    ),
    FieldInfo::new(
        "container_image",
        FieldType::Str,
        "container image; null on the host or when the runtime does not say",
    ),
];

/// A borrowed field value. `Null` means the field does not apply to this event.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Value<'a> {
    Null,
    U64(u64),
    I64(i64),
    Str(&'a str),
    Time(u64),
}

impl Value<'_> {
    /// The value as a number, for numeric comparison.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::U64(v) | Value::Time(v) => Some(v as f64),
            Value::I64(v) => Some(v as f64),
            Value::Null | Value::Str(_) => None,
        }
    }

    /// The value as an integer when it is one, exactly.
    pub fn as_i128(&self) -> Option<i128> {
        match *self {
            Value::U64(v) | Value::Time(v) => Some(v.into()),
            Value::I64(v) => Some(v.into()),
            Value::Null | Value::Str(_) => None,
        }
    }
}

impl fmt::Display for Value<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Value::Null => Ok(()),
            Value::U64(v) => write!(f, "{v}"),
            Value::I64(v) => write!(f, "{v}"),
            Value::Str(s) => f.write_str(s),
            Value::Time(ns) => f.write_str(&rfc3339_nanos(ns)),
        }
    }
}

/// Anything whose fields can be read by name: events, aggregate rows.
pub trait Record {
    /// Calls `visit` with every field in output order.
    fn visit(&self, visit: &mut dyn FnMut(&str, Value<'_>));
    /// One field by name; `None` when the record has no such field.
    fn get(&self, name: &str) -> Option<Value<'_>>;
    /// The catalog entry of the tracker whose fields these are, when the record is one of
    /// its events: printers read each field's [`Format`] there.
    fn catalog(&self) -> Option<&'static TrackerInfo> {
        None
    }
}

/// A NUL-free, valid UTF-8 string kept inline, so decoding allocates nothing.
#[derive(Clone, Copy)]
pub struct FixedStr<const N: usize> {
    len: u16,
    buf: [u8; N],
}

impl<const N: usize> FixedStr<N> {
    pub const fn empty() -> Self {
        Self {
            len: 0,
            buf: [0; N],
        }
    }

    /// Takes a C string from a kernel buffer: stops at the first NUL, replaces bytes that
    /// are not valid UTF-8 with '?', so the text stays printable and one byte per byte.
    pub fn from_c_chars(chars: &[i8]) -> Self {
        let mut out = Self::empty();
        let end = chars
            .iter()
            .position(|&c| c == 0)
            .unwrap_or(chars.len())
            .min(N);
        for (dst, &src) in out.buf.iter_mut().zip(&chars[..end]) {
            *dst = src as u8;
        }
        if std::str::from_utf8(&out.buf[..end]).is_err() {
            for byte in &mut out.buf[..end] {
                if !byte.is_ascii() {
                    *byte = b'?';
                }
            }
        }
        out.len = end as u16;
        out
    }

    pub fn as_str(&self) -> &str {
        // SAFETY: every constructor stores valid UTF-8 in buf[..len] (from_c_chars
        // sanitises, From<&str> cuts at a char boundary) and the fields are private.
        // Checked on every read this was a tenth of the handler chain's time.
        unsafe { std::str::from_utf8_unchecked(&self.buf[..self.len as usize]) }
    }
}

impl<const N: usize> Default for FixedStr<N> {
    fn default() -> Self {
        Self::empty()
    }
}

impl<const N: usize> From<&str> for FixedStr<N> {
    fn from(s: &str) -> Self {
        let mut out = Self::empty();
        let mut end = s.len().min(N);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        out.buf[..end].copy_from_slice(&s.as_bytes()[..end]);
        out.len = end as u16;
        out
    }
}

impl<const N: usize> fmt::Debug for FixedStr<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl<const N: usize> PartialEq for FixedStr<N> {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

pub type Comm = FixedStr<{ common_h::TASK_COMM_LEN }>;

/// What every event carries, whatever the tracker.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Header {
    /// Wall clock, nanoseconds since the Unix epoch.
    pub ts_ns: u64,
    pub pid: u32,
    pub ppid: u32,
    pub comm: Comm,
    pub cgroup_id: u64,
    pub user_ns: u32,
    pub pid_ns: u32,
    pub mnt_ns: u32,
    /// The container the task runs in, set by the container manager's enrichment; `None` on
    /// the host (or before enrichment).
    pub container: Option<ContainerTag>,
}

/// The calls a record stands for, from its weight field's value: one unless it holds a
/// count.
pub fn calls_in(weight: Option<Value<'_>>) -> u64 {
    match weight {
        Some(Value::U64(n)) => n,
        _ => 1,
    }
}

/// A tracker's catalog entry.
#[derive(Debug)]
pub struct TrackerInfo {
    pub name: &'static str,
    pub description: &'static str,
    /// The tracker's own fields; every event also has [`COMMON_FIELDS`] first.
    pub fields: &'static [FieldInfo],
    /// For trackers that count calls in the kernel: the field saying how many calls a
    /// record stands for (syscall `count`, files `opens`). COUNT sums it, so that it counts
    /// calls, not records; a record where it is null stands for one.
    pub weight: Option<&'static str>,
    /// For stack trackers (a `stack` field): the measure their flame graphs weigh each
    /// stack by (profile `samples`, offcpu `offcpu_ns`).
    pub stacks: Option<&'static str>,
}

impl TrackerInfo {
    /// Every field of this tracker's events, common ones first.
    pub fn all_fields(&self) -> impl Iterator<Item = &'static FieldInfo> {
        COMMON_FIELDS.iter().chain(self.fields)
    }

    /// How people read field `name` (plain when the tracker has no such field).
    pub fn format_of(&self, name: &str) -> FieldFormat {
        self.all_fields()
            .find(|f| f.name == name)
            .map_or(FieldFormat::Plain, |f| f.format)
    }

    /// The weight field when `name` is a total over the calls it counts (not the weight
    /// itself): a histogram then bins each record's value per call, `weight` times.
    pub fn summed_over(&self, name: &str) -> Option<&'static str> {
        let weight = self.weight?;
        let total = self.all_fields().any(|f| f.name == name && f.total);
        (total && name != weight).then_some(weight)
    }

    /// How many calls `record` (one of this tracker's) stands for.
    pub fn weight_of<R: Record + ?Sized>(&self, record: &R) -> u64 {
        calls_in(self.weight.and_then(|w| record.get(w)))
    }
}

#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    serde::Serialize,
    serde::Deserialize,
    async_graphql::Enum,
)]
#[serde(rename_all = "UPPERCASE")]
/// How serious a security alert is, least first.
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub const ALL: [Severity; 5] = [
        Severity::Info,
        Severity::Low,
        Severity::Medium,
        Severity::High,
        Severity::Critical,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "INFO",
            Severity::Low => "LOW",
            Severity::Medium => "MEDIUM",
            Severity::High => "HIGH",
            Severity::Critical => "CRITICAL",
        }
    }
}

/// A session's id: its key in the database, and the `ID` API clients name it by. Its own
/// type, so that no other string passes for one.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SessionId(String);

impl SessionId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<String> for SessionId {
    fn from(id: String) -> Self {
        Self(id)
    }
}

impl From<&str> for SessionId {
    fn from(id: &str) -> Self {
        Self(id.to_string())
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The container an event came from, inline so that events stay `Copy` and enrichment
/// allocates nothing. Empty `image` means unknown.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ContainerTag {
    pub id: FixedStr<64>,
    /// The container's name, or its short id when the runtime gives none.
    pub name: FixedStr<64>,
    pub image: FixedStr<128>,
}

impl ContainerTag {
    pub fn new(id: &str, name: Option<&str>, image: Option<&str>) -> Self {
        Self {
            id: FixedStr::from(id),
            name: FixedStr::from(name.unwrap_or_else(|| short_id(id))),
            image: FixedStr::from(image.unwrap_or("")),
        }
    }
}

/// The 12-character id Docker shows for a 64-hex id; other ids (runc's) stay whole.
pub fn short_id(id: &str) -> &str {
    if id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        &id[..12]
    } else {
        id
    }
}

/// One decoded kernel event: the header and a tracker's body (`trackers::Event` names
/// it with the registry's body type).
#[derive(Clone, Debug, PartialEq)]
pub struct Event<B> {
    pub header: Header,
    pub body: B,
}

/// What a tracker's own part of an event must provide.
pub trait EventBody {
    /// The catalog entry of the tracker these events come from.
    fn info(&self) -> &'static TrackerInfo;
    fn kind(&self) -> &'static str;
    /// One of the tracker's own fields; `None` for a name the catalog does not have.
    fn get(&self, name: &str) -> Option<Value<'_>>;

    fn tracker(&self) -> &'static str {
        self.info().name
    }

    /// The tracker's own fields, in output order (the catalog's order after the common ones).
    fn visit(&self, visit: &mut dyn FnMut(&str, Value<'_>)) {
        for field in self.info().fields {
            visit(field.name, self.get(field.name).unwrap_or(Value::Null));
        }
    }
}

impl<B: EventBody> Event<B> {
    pub fn tracker(&self) -> &'static str {
        self.body.tracker()
    }

    /// How many calls the event stands for (see [`TrackerInfo::weight`]).
    pub fn weight(&self) -> u64 {
        self.body.info().weight_of(self)
    }

    pub fn kind(&self) -> &'static str {
        self.body.kind()
    }

    fn common(&self, name: &str) -> Option<Value<'_>> {
        let h = &self.header;
        Some(match name {
            "tracker" => Value::Str(self.tracker()),
            "kind" => Value::Str(self.kind()),
            "ts" => Value::Time(h.ts_ns),
            "pid" => Value::U64(h.pid.into()),
            "ppid" => Value::U64(h.ppid.into()),
            "comm" => Value::Str(h.comm.as_str()),
            "cgroup_id" => Value::U64(h.cgroup_id),
            "user_ns" => Value::U64(h.user_ns.into()),
            "pid_ns" => Value::U64(h.pid_ns.into()),
            "mnt_ns" => Value::U64(h.mnt_ns.into()),
            "container" => h
                .container
                .as_ref()
                .map_or(Value::Null, |c| Value::Str(c.name.as_str())),
            "container_id" => h
                .container
                .as_ref()
                .map_or(Value::Null, |c| Value::Str(c.id.as_str())),
            "container_image" => match &h.container {
                Some(c) if !c.image.as_str().is_empty() => Value::Str(c.image.as_str()),
                _ => Value::Null,
            },
            _ => return None,
        })
    }
}

impl<B: EventBody> Record for Event<B> {
    fn visit(&self, visit: &mut dyn FnMut(&str, Value<'_>)) {
        for field in COMMON_FIELDS {
            if let Some(value) = self.common(field.name) {
                visit(field.name, value);
            }
        }
        self.body.visit(visit);
    }

    fn get(&self, name: &str) -> Option<Value<'_>> {
        self.common(name).or_else(|| self.body.get(name))
    }

    fn catalog(&self) -> Option<&'static TrackerInfo> {
        Some(self.body.info())
    }
}

/// Nanoseconds since the Unix epoch, now; the time base of every timestamp users see.
pub fn wall_clock_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Formats nanoseconds since the Unix epoch as `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`.
pub fn rfc3339_nanos(ns: u64) -> String {
    let secs = ns / 1_000_000_000;
    let nanos = ns % 1_000_000_000;
    let (year, month, day) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Reads the `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ` of [`rfc3339_nanos`] back (fewer digits of
/// the fraction, or none, also do); `None` for any other text.
pub fn parse_rfc3339_nanos(text: &str) -> Option<u64> {
    let text = text.strip_suffix('Z')?;
    let (date, time) = text.split_once('T')?;
    let (time, fraction) = time.split_once('.').unwrap_or((time, ""));
    let number = |part: &str, digits: usize| {
        (part.len() == digits && part.bytes().all(|b| b.is_ascii_digit()))
            .then(|| part.parse::<u64>().ok())
            .flatten()
    };
    let mut date = date.split('-');
    let (year, month, day) = (
        number(date.next()?, 4)?,
        number(date.next()?, 2)?,
        number(date.next()?, 2)?,
    );
    let mut time = time.split(':');
    let (hour, minute, second) = (
        number(time.next()?, 2)?,
        number(time.next()?, 2)?,
        number(time.next()?, 2)?,
    );
    if date.next().is_some() || time.next().is_some() || fraction.len() > 9 {
        return None;
    }
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let nanos = match fraction {
        "" => 0,
        digits => number(digits, digits.len())? * 10u64.pow(9 - digits.len() as u32),
    };
    let days = u64::try_from(days_from_civil(year as i64, month as u32, day as u32)).ok()?;
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second;
    secs.checked_mul(1_000_000_000)?.checked_add(nanos)
}

/// A proleptic Gregorian date to days since 1970-01-01 (the inverse of
/// [`civil_from_days`]).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = year - i64::from(month <= 2);
    let era = year.div_euclid(400);
    let yoe = year.rem_euclid(400);
    let mp = i64::from((month + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_rfc3339_with_nanoseconds() {
        assert_eq!(rfc3339_nanos(0), "1970-01-01T00:00:00.000000000Z");
        // 2024-02-29T23:59:59.000000007Z, a leap day.
        assert_eq!(
            rfc3339_nanos(1_709_251_199_000_000_007),
            "2024-02-29T23:59:59.000000007Z"
        );
        assert_eq!(
            rfc3339_nanos(1_795_879_201_123_456_789),
            "2026-11-28T15:20:01.123456789Z"
        );
    }

    #[test]
    fn reads_rfc3339_back() {
        for ns in [
            0,
            1_709_251_199_000_000_007,
            1_795_879_201_123_456_789,
            951_782_400_999_999_999, // 2000-02-29, a leap day of a century
        ] {
            assert_eq!(parse_rfc3339_nanos(&rfc3339_nanos(ns)), Some(ns));
        }
        assert_eq!(
            parse_rfc3339_nanos("2026-11-28T15:20:01.5Z"),
            Some(1_795_879_201_500_000_000)
        );
        assert_eq!(
            parse_rfc3339_nanos("2026-11-28T15:20:01Z"),
            Some(1_795_879_201_000_000_000)
        );
        for bad in [
            "",
            "2026-11-28T15:20:01",
            "2026-11-28 15:20:01Z",
            "2026-13-28T15:20:01Z",
            "2026-11-28T15:20:01.1234567890Z",
            "1969-12-31T23:59:59Z",
            "2026-11-28T15:20:+1Z",
        ] {
            assert_eq!(parse_rfc3339_nanos(bad), None, "{bad}");
        }
    }

    #[test]
    fn fixed_str_stops_at_nul_and_sanitises() {
        let raw: Vec<i8> = b"sh\0junk".iter().map(|&b| b as i8).collect();
        assert_eq!(FixedStr::<16>::from_c_chars(&raw).as_str(), "sh");
        let bad: Vec<i8> = [b'a', 0xff, b'b'].iter().map(|&b| b as i8).collect();
        assert_eq!(FixedStr::<16>::from_c_chars(&bad).as_str(), "a?b");
        let full: Vec<i8> = [b'x'; 16].iter().map(|&b| b as i8).collect();
        assert_eq!(FixedStr::<16>::from_c_chars(&full).as_str().len(), 16);
        assert_eq!(FixedStr::<4>::from("héllo").as_str(), "hél");
        assert_eq!(FixedStr::<2>::from("hé").as_str(), "h");
    }
}
