//! The files tracker: reads and writes per (process, file) with counts and bytes per
//! interval, as filetop reports them, on the `syscalls` read and write family
//! tracepoints; and every `openat` with its flags and result, as opensnoop reports them,
//! or (option `opens: aggregate`) their counts per (process, file, flags, result) per
//! interval. The kernel resolves each fd to its file, type and full path, and aggregates
//! in maps drained every interval.

use std::mem::MaybeUninit;

use libbpf_rs::skel::Skel;
use libbpf_rs::MapCore;

use super::{Event, Tracker};
use crate::engine::{take_rows, with_record, Drain, DrainContext, Mode, Run, TrackerError};
use crate::model::{EventBody, FieldFormat, FieldInfo, FieldType, FixedStr, TrackerInfo, Value};
use crate::{bss_generations, decode_header, open_probe};

mod options;

pub use options::{FileType, FilesOptions};

/// The generated skeleton; its `types` give the raw record layouts (for tests).
pub mod skel {
    include!(concat!(env!("OUT_DIR"), "/files.skel.rs"));
}
use skel::{types, FilesSkelBuilder};

/// `FILES_PATH_MAX` in probes/files.h.
pub const PATH_MAX: usize = 256;

static INFO: TrackerInfo = TrackerInfo {
    name: "files",
    description: "file reads and writes per process and file, counts and bytes per interval \
                  (kind io), and openat calls with flags and result (kind open), each or \
                  counted per interval (option opens); options file_types (default \
                  regular), opens and interval_ms",
    fields: &[
        FieldInfo::new(
            "path",
            FieldType::Str,
            "full path (\"...\" in front when cut); pipe:[inode] or socket:[inode] for those; \
             for a failed open, the name as passed",
        )
        .shown_as(FieldFormat::Path),
        FieldInfo::new(
            "file_type",
            FieldType::Str,
            "regular, socket, pipe or other; null for a failed open",
        ),
        FieldInfo::total(
            "reads",
            FieldType::U64,
            "successful read, pread64 and readv calls in the interval (io)",
        ),
        FieldInfo::total(
            "writes",
            FieldType::U64,
            "successful write, pwrite64 and writev calls in the interval (io)",
        ),
        FieldInfo::total(
            "read_bytes",
            FieldType::U64,
            "bytes those reads returned (io)",
        ),
        FieldInfo::total(
            "write_bytes",
            FieldType::U64,
            "bytes those writes returned (io)",
        ),
        FieldInfo::new(
            "flags",
            FieldType::U64,
            "openat flags, e.g. 577 = O_WRONLY|O_CREAT|O_TRUNC (open)",
        )
        .shown_as(FieldFormat::OpenFlags),
        FieldInfo::measure(
            "ret",
            FieldType::I64,
            "openat result: the new fd, or -errno; with opens aggregated, 0 for success \
             (open)",
        )
        .shown_as(FieldFormat::Errno),
        FieldInfo::total(
            "opens",
            FieldType::U64,
            "openat calls the record stands for: 1, or with opens aggregated the \
             interval's count (open)",
        ),
    ],
    weight: Some("opens"),
    stacks: None,
};

pub struct FilesTracker;

/// Which file, as the kernel resolved it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FileRef {
    pub path: FixedStr<PATH_MAX>,
    /// `None` when the file is unknown (a failed open).
    pub file_type: Option<FileType>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum FilesEvent {
    /// One interval's reads and writes of one process on one file.
    Io {
        file: FileRef,
        reads: u64,
        writes: u64,
        read_bytes: u64,
        write_bytes: u64,
    },
    /// One openat call, or with opens aggregated one interval's `opens` calls.
    Open {
        file: FileRef,
        flags: u32,
        ret: i64,
        opens: u64,
    },
}

impl EventBody for FilesEvent {
    fn info(&self) -> &'static TrackerInfo {
        &INFO
    }

    fn kind(&self) -> &'static str {
        match self {
            FilesEvent::Io { .. } => "io",
            FilesEvent::Open { .. } => "open",
        }
    }

    fn get(&self, name: &str) -> Option<Value<'_>> {
        let file = match self {
            FilesEvent::Io { file, .. } | FilesEvent::Open { file, .. } => file,
        };
        Some(match (self, name) {
            (_, "path") => Value::Str(file.path.as_str()),
            (_, "file_type") => file
                .file_type
                .map_or(Value::Null, |t| Value::Str(t.as_str())),
            (FilesEvent::Io { reads, .. }, "reads") => Value::U64(*reads),
            (FilesEvent::Io { writes, .. }, "writes") => Value::U64(*writes),
            (FilesEvent::Io { read_bytes, .. }, "read_bytes") => Value::U64(*read_bytes),
            (FilesEvent::Io { write_bytes, .. }, "write_bytes") => Value::U64(*write_bytes),
            (FilesEvent::Open { flags, .. }, "flags") => Value::U64((*flags).into()),
            (FilesEvent::Open { ret, .. }, "ret") => Value::I64(*ret),
            (FilesEvent::Open { opens, .. }, "opens") => Value::U64(*opens),
            (_, "reads" | "writes" | "read_bytes" | "write_bytes" | "flags" | "ret" | "opens") => {
                Value::Null
            }
            _ => return None,
        })
    }
}

/// A file type's enumerator, as the skeleton generates it from probes/files.h (so the
/// numbers have one source).
fn raw_type(t: FileType) -> types::files_file_type {
    match t {
        FileType::Regular => types::files_file_type::FILES_TYPE_REGULAR,
        FileType::Socket => types::files_file_type::FILES_TYPE_SOCKET,
        FileType::Pipe => types::files_file_type::FILES_TYPE_PIPE,
        FileType::Other => types::files_file_type::FILES_TYPE_OTHER,
    }
}

fn file_type(raw: types::files_file_type) -> Option<FileType> {
    FileType::ALL.into_iter().find(|&t| raw_type(t) == raw)
}

/// The `file_type_mask` the probe filters with: bit (1 << raw type) per type reported.
pub fn file_type_mask(types: &[FileType]) -> u32 {
    types.iter().fold(0, |mask, &t| mask | 1 << raw_type(t).0)
}

/// The path of `struct files_path`; pipes and sockets, which have none, are named as
/// /proc/<pid>/fd shows them.
fn file_ref(raw: &types::files_path, ino: u64) -> FileRef {
    let file_type = file_type(raw.file_type);
    let start = usize::from(raw.path_start).min(raw.path.len());
    let path = match file_type {
        Some(t @ (FileType::Pipe | FileType::Socket)) if raw.pseudo != 0 => {
            FixedStr::from(format!("{}:[{ino}]", t.as_str()).as_str())
        }
        _ => FixedStr::from_c_chars(&raw.path[start..]),
    };
    FileRef { path, file_type }
}

fn open_body(raw: &types::files_open_event) -> FilesEvent {
    FilesEvent::Open {
        file: file_ref(&raw.file, raw.ino),
        flags: raw.flags,
        ret: raw.ret,
        opens: raw.opens,
    }
}

/// Decodes one ring buffer record: `probes/files.h`'s `struct files_open_event`.
pub fn decode(bytes: &[u8], clock_offset: u64) -> Option<Event> {
    with_record(bytes, |raw: &types::files_open_event| Event {
        header: decode_header!(raw.header, clock_offset),
        body: open_body(raw).into(),
    })
}

/// A drained row's event carries the drain's time: it covers the interval up to it.
fn at_drain(mut event: Event, context: &DrainContext) -> Event {
    event.header.ts_ns = context.now_ns;
    event
}

/// Decodes one drained row of aggregated opens (`struct files_open_event`).
pub fn decode_opens(bytes: &[u8], context: &DrainContext) -> Option<Event> {
    decode(bytes, context.clock_offset).map(|event| at_drain(event, context))
}

/// Decodes one drained row, `struct files_io`.
pub fn decode_io(bytes: &[u8], context: &DrainContext) -> Option<Event> {
    with_record(bytes, |raw: &types::files_io| {
        let event = Event {
            header: decode_header!(raw.header, context.clock_offset),
            body: FilesEvent::Io {
                file: file_ref(&raw.file, raw.ino),
                reads: raw.reads,
                writes: raw.writes,
                read_bytes: raw.read_bytes,
                write_bytes: raw.write_bytes,
            }
            .into(),
        };
        at_drain(event, context)
    })
}

/// A drained row's decoder.
type DecodeRow = fn(&[u8], &DrainContext) -> Option<Event>;

/// Reads and empties one generation of rows. It must be inactive: no program adds to it
/// while this runs.
fn take(
    rows: &dyn MapCore,
    decode_row: DecodeRow,
    context: &DrainContext,
    emit: &mut dyn FnMut(Event),
) -> Result<(), TrackerError> {
    take_rows(rows, |_, row| {
        if let Some(event) = decode_row(row, context) {
            emit(event);
        }
        Ok(())
    })
}

impl Tracker for FilesTracker {
    type Options = FilesOptions;

    fn info(&self) -> &'static TrackerInfo {
        &INFO
    }

    fn run(&self, run: Run<'_, Event>, options: &FilesOptions) -> Result<(), TrackerError> {
        let mut storage = MaybeUninit::uninit();
        let mut open = open_probe!(run, FilesSkelBuilder, &mut storage)?;
        let rodata = open
            .maps
            .rodata_data
            .as_deref_mut()
            .expect("files.bpf.c declares read-only globals");
        rodata.file_type_mask = file_type_mask(&options.file_types);
        rodata.file_struct_id = crate::engine::system::kernel_struct_id("file");
        rodata.aggregate_opens = options.opens == Mode::Aggregate;
        open.progs.files_sys_exit.set_autoload(options.io);
        open.progs.files_openat_exit.set_autoload(!options.io);
        let mut skel = run.load(open)?;
        run.fill_cgroup_filter(&skel.maps.cgroup_filter)?;
        let (dropped, mut switch) = bss_generations!(skel);
        let maps = &skel.maps;
        let generations: [[(&dyn MapCore, DecodeRow); 2]; 2] = [
            [(&maps.io_0, decode_io), (&maps.opens_0, decode_opens)],
            [(&maps.io_1, decode_io), (&maps.opens_1, decode_opens)],
        ];
        let drain = Drain {
            every: options.interval_ms.duration(),
            pull: Box::new(move |context: &DrainContext, emit| {
                switch.quiet(context).iter().try_for_each(|&quiet| {
                    generations[quiet]
                        .iter()
                        .try_for_each(|&(rows, decode_row)| take(rows, decode_row, context, emit))
                })
            }),
        };
        run.serve_draining(skel.object(), &maps.events, dropped, decode, Some(drain))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Record;

    fn set_path(file: &mut types::files_path, path: &str, start: usize) {
        for (dst, src) in file.path[start..].iter_mut().zip(path.bytes().chain([0])) {
            *dst = src as i8;
        }
        file.path_start = start as u16;
    }

    fn bytes_of<T>(raw: &T) -> Vec<u8> {
        // SAFETY: the probe's records are plain old data; reading their bytes is valid.
        unsafe {
            std::slice::from_raw_parts((raw as *const T).cast::<u8>(), std::mem::size_of::<T>())
                .to_vec()
        }
    }

    fn context() -> DrainContext {
        DrainContext {
            clock_offset: 1_000,
            now_ns: 77,
            last: false,
        }
    }

    #[test]
    fn decodes_an_io_row_at_the_drain_time() {
        let mut raw = types::files_io::default();
        raw.header.ts_ns = 5;
        raw.header.pid = 42;
        raw.reads = 3;
        raw.writes = 2;
        raw.read_bytes = 300;
        raw.write_bytes = 20;
        raw.ino = 9;
        raw.file.file_type = raw_type(FileType::Regular);
        set_path(&mut raw.file, "/tmp/x/data", 200);
        let bytes = bytes_of(&raw);
        let event = decode_io(&bytes, &context()).expect("decodes");
        assert_eq!(event.header.ts_ns, 77);
        assert_eq!(event.kind(), "io");
        assert_eq!(event.get("pid"), Some(Value::U64(42)));
        assert_eq!(event.get("path"), Some(Value::Str("/tmp/x/data")));
        assert_eq!(event.get("file_type"), Some(Value::Str("regular")));
        assert_eq!(event.get("reads"), Some(Value::U64(3)));
        assert_eq!(event.get("writes"), Some(Value::U64(2)));
        assert_eq!(event.get("read_bytes"), Some(Value::U64(300)));
        assert_eq!(event.get("write_bytes"), Some(Value::U64(20)));
        assert_eq!(event.get("flags"), Some(Value::Null));
        assert_eq!(event.get("ret"), Some(Value::Null));
        assert_eq!(event.get("nonsense"), None);
        assert!(decode_io(&bytes[..bytes.len() - 1], &context()).is_none());
    }

    #[test]
    fn names_pipes_and_sockets_by_inode() {
        let mut raw = types::files_io::default();
        raw.ino = 1234;
        raw.file.pseudo = 1;
        set_path(&mut raw.file, "", 255);
        for (t, path) in [
            (FileType::Pipe, "pipe:[1234]"),
            (FileType::Socket, "socket:[1234]"),
        ] {
            raw.file.file_type = raw_type(t);
            let event = decode_io(&bytes_of(&raw), &context()).expect("decodes");
            assert_eq!(event.get("path"), Some(Value::Str(path)));
        }
        // Other files without a path keep their own name, e.g. an eventfd.
        raw.file.file_type = raw_type(FileType::Other);
        set_path(&mut raw.file, "[eventfd]", 246);
        let event = decode_io(&bytes_of(&raw), &context()).expect("decodes");
        assert_eq!(event.get("path"), Some(Value::Str("[eventfd]")));
        assert_eq!(event.get("file_type"), Some(Value::Str("other")));
    }

    #[test]
    fn decodes_a_failed_open() {
        let mut raw = types::files_open_event::default();
        raw.header.ts_ns = 5;
        raw.header.pid = 7;
        raw.ret = -2;
        raw.opens = 1;
        raw.flags = 0o101;
        set_path(&mut raw.file, "missing.txt", 0);
        let bytes = bytes_of(&raw);
        let event = decode(&bytes, 1_000).expect("decodes");
        assert_eq!(event.header.ts_ns, 1_005);
        assert_eq!(event.kind(), "open");
        assert_eq!(event.get("path"), Some(Value::Str("missing.txt")));
        assert_eq!(event.get("file_type"), Some(Value::Null));
        assert_eq!(event.get("flags"), Some(Value::U64(0o101)));
        assert_eq!(event.get("ret"), Some(Value::I64(-2)));
        assert_eq!(event.get("opens"), Some(Value::U64(1)));
        assert_eq!(event.get("reads"), Some(Value::Null));
        assert!(decode(&bytes[..bytes.len() - 1], 0).is_none());
    }

    #[test]
    fn visits_every_catalog_field_in_order() {
        let event = FilesEvent::Open {
            file: FileRef {
                path: FixedStr::from("/etc/hosts"),
                file_type: Some(FileType::Regular),
            },
            flags: 0,
            ret: 3,
            opens: 1,
        };
        let mut names = Vec::new();
        event.visit(&mut |name, _| names.push(name.to_string()));
        let catalog: Vec<&str> = INFO.fields.iter().map(|f| f.name).collect();
        assert_eq!(names, catalog);
    }

    #[test]
    fn type_mask_has_one_bit_per_type() {
        assert_eq!(file_type_mask(&[FileType::Regular]), 0b10);
        assert_eq!(file_type_mask(&FileType::ALL), 0b11110);
        assert_eq!(file_type_mask(&[FileType::Pipe, FileType::Socket]), 0b1100);
        for t in FileType::ALL {
            assert_eq!(file_type(raw_type(t)), Some(t));
        }
        assert_eq!(file_type(types::files_file_type(0)), None);
    }
}
