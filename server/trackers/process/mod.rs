//! The process tracker: exec and whole-process exit with exit status and lifetime,
//! on `sched:sched_process_exec` and `sched:sched_process_exit`, with the effective user
//! and group; with the option `failed_execs`, execs that failed (execsnoop's `-x`) on the
//! exits of `execve` and `execveat`; with `cwd`, each exec's working directory; with
//! `exec_details`, what detection rules read of an exec: its arguments, parent, terminal
//! and login uid.

use std::sync::Arc;

use super::{Event, Tracker};
use crate::engine::{with_record, Run, TrackerError, TrackerOptions};
use crate::model::{
    errno_name, signal_name, Comm, EventBody, FieldFormat, FieldInfo, FieldType, FixedStr,
    TrackerInfo, Value,
};
use crate::{decode_header, run_ring_buffer_probe};

/// The generated skeleton; its `types` give the raw record layout (for tests and benchmarks).
pub mod skel {
    include!(concat!(env!("OUT_DIR"), "/process.skel.rs"));
}
use skel::{types, ProcessSkelBuilder};

const EXEC: u32 = 1;
const EXIT: u32 = 2;
const EXEC_FAILED: u32 = 3;

static INFO: TrackerInfo = TrackerInfo {
    name: "process",
    description:
        "process exec and exit: executed file, exit status or signal, exec-to-exit duration",
    fields: &[
        FieldInfo::new(
            "filename",
            FieldType::Str,
            "executed file as named by the caller, or its full path when the name was a \
             link to an open file such as /proc/self/exe (busybox applets) or /dev/fd/N \
             (exec); the path as passed (exec_failed)",
        )
        .shown_as(FieldFormat::Path),
        FieldInfo::new(
            "cwd",
            FieldType::Str,
            "working directory of the exec (with the option cwd)",
        )
        .shown_as(FieldFormat::Path),
        FieldInfo::new("uid", FieldType::U64, "effective user id"),
        FieldInfo::new("gid", FieldType::U64, "effective group id"),
        FieldInfo::new(
            "error",
            FieldType::Str,
            "why an exec failed, e.g. ENOENT or EACCES (exec_failed)",
        ),
        FieldInfo::new(
            "exit_code",
            FieldType::U64,
            "exit status; 128+signal when killed by a signal (exit events)",
        ),
        FieldInfo::new(
            "signal",
            FieldType::Str,
            "the signal that killed the process, e.g. SIGKILL (exit events)",
        ),
        FieldInfo::new(
            "core_dumped",
            FieldType::U64,
            "1 when the process dumped core (exit events)",
        ),
        FieldInfo::measure(
            "duration_ns",
            FieldType::U64,
            "exec to exit, or process start to exit when the exec was not seen",
        )
        .shown_as(FieldFormat::Duration),
        FieldInfo::new(
            "args",
            FieldType::Str,
            "the argument vector, argv[0] first: its first 16 arguments, each quoted as a \
             shell would need it and cut past 255 bytes with \"...\", joined by spaces, \
             then a last \"...\" when there are more (exec, with the option exec_details); \
             in rules, args.argv() splits it into a list",
        ),
        FieldInfo::new(
            "argc",
            FieldType::U64,
            "how many arguments the exec had, all of them (exec, with the option \
             exec_details)",
        ),
        FieldInfo::new(
            "parent_comm",
            FieldType::Str,
            "the parent's command name (exec, with the option exec_details)",
        ),
        FieldInfo::new(
            "parent_exe",
            FieldType::Str,
            "the parent's executable, its full path; null for a kernel thread (exec, with \
             the option exec_details)",
        )
        .shown_as(FieldFormat::Path),
        FieldInfo::new(
            "tty",
            FieldType::Str,
            "the controlling terminal, e.g. pts/0; null without one (exec, with the option \
             exec_details)",
        ),
        FieldInfo::new(
            "login_uid",
            FieldType::U64,
            "the uid the session logged in as (audit's loginuid), kept across su and sudo; \
             null when unset (exec, with the option exec_details)",
        ),
    ],
    weight: None,
    stacks: None,
};

pub struct ProcessTracker;

/// What an exec says with the option `exec_details`.
#[derive(Clone, Debug, PartialEq)]
pub struct ExecDetails {
    /// Out of line: the arguments alone can take 4 KiB, which every event copied (into
    /// the memory store, through channels) would otherwise carry.
    pub text: Arc<ExecText>,
    /// The exec's whole argument count.
    pub argc: u32,
    pub parent_comm: Comm,
    pub tty: Comm,
    /// u32::MAX when unset.
    pub login_uid: u32,
}

/// An exec's texts that are too long to keep inline.
#[derive(Debug, Default, PartialEq)]
pub struct ExecText {
    /// The first arguments, quoted and joined (see the `args` field).
    pub args: String,
    /// Empty for a kernel thread's child.
    pub parent_exe: String,
}

/// The arguments the kernel kept (each with its whole length), quoted as a shell needs
/// them and joined by spaces: one line that splits back into the same words.
fn joined_args(raw: &types::process_exec_details) -> String {
    let kept = (raw.argc as usize).min(raw.argv.len());
    let mut words: Vec<String> = raw.argv[..kept]
        .iter()
        .zip(raw.arg_len)
        .map(|(arg, len)| {
            let text = FixedStr::<{ MAX_ARG_LEN }>::from_c_chars(arg);
            let mut word = text.as_str().to_owned();
            if len as usize > word.len() {
                word.push_str("...");
            }
            word
        })
        .collect();
    if (raw.argc as usize) > kept {
        words.push("...".into());
    }
    words
        .iter()
        .map(|w| shlex::try_quote(w).map_or_else(|_| w.replace('\0', ""), |q| q.into_owned()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Bytes the kernel keeps of each argument, with its NUL.
const MAX_ARG_LEN: usize = 256;

/// The effective user and group a process ran as at the event.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ids {
    pub uid: u32,
    pub gid: u32,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ProcessEvent {
    Exec {
        filename: FixedStr<256>,
        /// Empty unless the `cwd` option is on.
        cwd: FixedStr<256>,
        ids: Ids,
        /// With the `exec_details` option.
        details: Option<ExecDetails>,
    },
    Exit {
        status: WaitStatus,
        duration_ns: u64,
        ids: Ids,
    },
    /// An execve or execveat that returned `-error`; the caller runs on unchanged.
    ExecFailed {
        filename: FixedStr<256>,
        error: i32,
        ids: Ids,
    },
}

/// A task's exit code as the kernel keeps it: `(status << 8) | core flag | signal`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WaitStatus(pub u32);

impl WaitStatus {
    pub fn signal(self) -> Option<u32> {
        match self.0 & 0x7f {
            0 => None,
            sig => Some(sig),
        }
    }

    /// The exit status a shell's `$?` shows: the status, or 128 + the signal.
    pub fn exit_code(self) -> u32 {
        self.signal().map_or((self.0 >> 8) & 0xff, |sig| 128 + sig)
    }

    pub fn core_dumped(self) -> bool {
        self.0 & 0x80 != 0
    }
}

impl EventBody for ProcessEvent {
    fn info(&self) -> &'static TrackerInfo {
        &INFO
    }

    fn kind(&self) -> &'static str {
        match self {
            ProcessEvent::Exec { .. } => "exec",
            ProcessEvent::Exit { .. } => "exit",
            ProcessEvent::ExecFailed { .. } => "exec_failed",
        }
    }

    fn get(&self, name: &str) -> Option<Value<'_>> {
        let (ProcessEvent::Exec { ids, .. }
        | ProcessEvent::Exit { ids, .. }
        | ProcessEvent::ExecFailed { ids, .. }) = self;
        Some(match (self, name) {
            (_, "uid") => Value::U64(ids.uid.into()),
            (_, "gid") => Value::U64(ids.gid.into()),
            (
                ProcessEvent::Exec { filename, .. } | ProcessEvent::ExecFailed { filename, .. },
                "filename",
            ) => Value::Str(filename.as_str()),
            (ProcessEvent::Exec { cwd, .. }, "cwd") if !cwd.as_str().is_empty() => {
                Value::Str(cwd.as_str())
            }
            (
                ProcessEvent::Exec {
                    details: Some(d), ..
                },
                "args",
            ) => Value::Str(&d.text.args),
            (
                ProcessEvent::Exec {
                    details: Some(d), ..
                },
                "argc",
            ) => Value::U64(d.argc.into()),
            (
                ProcessEvent::Exec {
                    details: Some(d), ..
                },
                "parent_comm",
            ) => Value::Str(d.parent_comm.as_str()),
            (
                ProcessEvent::Exec {
                    details: Some(d), ..
                },
                "parent_exe",
            ) if !d.text.parent_exe.is_empty() => Value::Str(&d.text.parent_exe),
            (
                ProcessEvent::Exec {
                    details: Some(d), ..
                },
                "tty",
            ) if !d.tty.as_str().is_empty() => Value::Str(d.tty.as_str()),
            (
                ProcessEvent::Exec {
                    details: Some(d), ..
                },
                "login_uid",
            ) if d.login_uid != u32::MAX => Value::U64(d.login_uid.into()),
            // Every Linux errno has a name (model::errno's test checks the table).
            (ProcessEvent::ExecFailed { error, .. }, "error") => {
                errno_name(*error).map_or(Value::Null, Value::Str)
            }
            (ProcessEvent::Exit { status, .. }, "exit_code") => {
                Value::U64(status.exit_code().into())
            }
            (ProcessEvent::Exit { status, .. }, "signal") => {
                status.signal().map_or(Value::Null, |sig| {
                    signal_name(sig).map_or(Value::U64(sig.into()), Value::Str)
                })
            }
            (ProcessEvent::Exit { status, .. }, "core_dumped") => {
                Value::U64(status.core_dumped().into())
            }
            (ProcessEvent::Exit { duration_ns, .. }, "duration_ns") => Value::U64(*duration_ns),
            (
                _,
                "filename" | "cwd" | "error" | "exit_code" | "signal" | "core_dumped"
                | "duration_ns" | "args" | "argc" | "parent_comm" | "parent_exe" | "tty"
                | "login_uid",
            ) => Value::Null,
            _ => return None,
        })
    }
}

/// Decodes one ring buffer record of `probes/process.h`'s `struct process_event`, or of
/// `struct process_exec_details` for an exec with details.
pub fn decode(bytes: &[u8], clock_offset: u64) -> Option<Event> {
    with_record(bytes, |raw: &types::process_event| {
        let ids = Ids {
            uid: raw.uid,
            gid: raw.gid,
        };
        let body = match raw.kind {
            EXEC => ProcessEvent::Exec {
                filename: FixedStr::from_c_chars(&raw.filename),
                cwd: FixedStr::from_c_chars(&raw.cwd),
                ids,
                details: with_record(bytes, |d: &types::process_exec_details| ExecDetails {
                    text: Arc::new(ExecText {
                        args: joined_args(d),
                        parent_exe: FixedStr::<256>::from_c_chars(&d.parent_exe)
                            .as_str()
                            .to_owned(),
                    }),
                    argc: d.argc,
                    parent_comm: FixedStr::from_c_chars(&d.parent_comm),
                    tty: FixedStr::from_c_chars(&d.tty),
                    login_uid: d.login_uid,
                }),
            },
            EXIT => ProcessEvent::Exit {
                status: WaitStatus(raw.exit_code),
                duration_ns: raw.duration_ns,
                ids,
            },
            EXEC_FAILED => ProcessEvent::ExecFailed {
                filename: FixedStr::from_c_chars(&raw.filename),
                error: raw.error,
                ids,
            },
            _ => return None,
        };
        Some(Event {
            header: decode_header!(raw.header, clock_offset),
            body: body.into(),
        })
    })
    .flatten()
}

/// The process tracker's options.
#[derive(
    Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(default, deny_unknown_fields)]
pub struct ProcessOptions {
    /// Report only processes that lived at least this many nanoseconds; exec events are
    /// then left out, as an exec cannot know how long its process will live.
    pub min_duration_ns: u64,
    /// Also report execve and execveat calls that failed (kind exec_failed), at the cost
    /// of a probe on those two calls' exits.
    pub failed_execs: bool,
    /// Report each exec's working directory (`cwd`), at the cost of a path walk per exec.
    pub cwd: bool,
    /// Report each exec's argument vector (`args`, `argc`), parent command name and
    /// executable (`parent_comm`, `parent_exe`), controlling terminal (`tty`) and login
    /// uid (`login_uid`): what detection rules read; a few reads and a path walk per exec,
    /// and a 5,056-byte record instead of 600.
    pub exec_details: bool,
}

impl TrackerOptions for ProcessOptions {
    /// Only failed execs say why they failed; execs give their directory when asked.
    fn empty_fields(&self) -> Vec<&'static str> {
        [
            (!self.failed_execs).then_some("error"),
            (!self.cwd).then_some("cwd"),
            (!self.exec_details).then_some("args"),
            (!self.exec_details).then_some("argc"),
            (!self.exec_details).then_some("parent_comm"),
            (!self.exec_details).then_some("parent_exe"),
            (!self.exec_details).then_some("tty"),
            (!self.exec_details).then_some("login_uid"),
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}

impl Tracker for ProcessTracker {
    type Options = ProcessOptions;

    fn info(&self) -> &'static TrackerInfo {
        &INFO
    }

    fn run(&self, run: Run<'_, Event>, options: &ProcessOptions) -> Result<(), TrackerError> {
        run_ring_buffer_probe!(run, ProcessSkelBuilder, decode, |open| {
            open.progs
                .handle_execve_exit
                .set_autoload(options.failed_execs);
            open.progs
                .handle_execveat_exit
                .set_autoload(options.failed_execs);
            let rodata = open
                .maps
                .rodata_data
                .as_deref_mut()
                .expect("process.bpf.c declares read-only globals");
            rodata.min_duration_ns = options.min_duration_ns;
            rodata.report_cwd = options.cwd;
            rodata.report_details = options.exec_details;
        })
    }
}

/// An exec of `filename` with `header`, for other modules' tests.
#[cfg(test)]
pub(crate) fn exec_event(header: crate::model::Header, filename: &str) -> Event {
    Event {
        header,
        body: ProcessEvent::Exec {
            filename: FixedStr::from(filename),
            cwd: FixedStr::default(),
            ids: Ids::default(),
            details: None,
        }
        .into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Record;

    fn raw_event(kind: u32) -> types::process_event {
        let mut raw = types::process_event::default();
        raw.header.ts_ns = 5;
        raw.header.pid = 42;
        raw.header.ppid = 1;
        raw.header.cgroup_id = 7;
        raw.header.pid_ns = 4026531836;
        for (dst, src) in raw.header.comm.iter_mut().zip(b"sh\0") {
            *dst = *src as i8;
        }
        for (dst, src) in raw.filename.iter_mut().zip(b"/bin/sh\0") {
            *dst = *src as i8;
        }
        raw.kind = kind;
        raw.exit_code = 7 << 8;
        raw.duration_ns = 1234;
        raw
    }

    fn bytes_of(raw: &types::process_event) -> Vec<u8> {
        // SAFETY: process_event is plain old data; reading its bytes is always valid.
        unsafe {
            std::slice::from_raw_parts(
                (raw as *const types::process_event).cast::<u8>(),
                std::mem::size_of_val(raw),
            )
            .to_vec()
        }
    }

    #[test]
    fn decodes_exec() {
        let event = decode(&bytes_of(&raw_event(EXEC)), 1_000).expect("decodes");
        assert_eq!(event.header.ts_ns, 1_005);
        assert_eq!(event.get("kind"), Some(Value::Str("exec")));
        assert_eq!(event.get("pid"), Some(Value::U64(42)));
        assert_eq!(event.get("comm"), Some(Value::Str("sh")));
        assert_eq!(event.get("filename"), Some(Value::Str("/bin/sh")));
        assert_eq!(event.get("exit_code"), Some(Value::Null));
        assert_eq!(event.get("pid_ns"), Some(Value::U64(4026531836)));
        assert_eq!(event.get("nonsense"), None);
    }

    #[test]
    fn decodes_exit_status_and_signal() {
        let event = decode(&bytes_of(&raw_event(EXIT)), 0).expect("decodes");
        assert_eq!(event.get("exit_code"), Some(Value::U64(7)));
        assert_eq!(event.get("signal"), Some(Value::Null));
        assert_eq!(event.get("duration_ns"), Some(Value::U64(1234)));
        assert_eq!(event.get("filename"), Some(Value::Null));

        let mut killed = raw_event(EXIT);
        killed.exit_code = 9;
        let event = decode(&bytes_of(&killed), 0).expect("decodes");
        assert_eq!(event.get("exit_code"), Some(Value::U64(137)));
        assert_eq!(event.get("signal"), Some(Value::Str("SIGKILL")));

        let mut segv_core = raw_event(EXIT);
        segv_core.exit_code = 0x80 | 11;
        let event = decode(&bytes_of(&segv_core), 0).expect("decodes");
        assert_eq!(event.get("signal"), Some(Value::Str("SIGSEGV")));
        assert_eq!(event.get("core_dumped"), Some(Value::U64(1)));
    }

    /// Details come in a record of their own; the arguments are quoted, cut ones marked.
    #[test]
    fn decodes_exec_details() {
        let mut raw = types::process_exec_details {
            base: raw_event(EXEC),
            argc: 18,
            login_uid: u32::MAX,
            ..Default::default()
        };
        let text = |dst: &mut [i8], src: &str| {
            for (d, s) in dst.iter_mut().zip(src.bytes().chain([0])) {
                *d = s as i8;
            }
        };
        let long = "y".repeat(255);
        for i in 0..16 {
            let arg = match i {
                0 => "sh".to_string(),
                1 => "a b".to_string(),
                2 => long.clone(),
                _ => format!("n{i}"),
            };
            text(&mut raw.argv[i], &arg);
            raw.arg_len[i] = if i == 2 { 300 } else { arg.len() as u32 };
        }
        text(&mut raw.parent_comm, "bash");
        text(&mut raw.parent_exe, "/usr/bin/bash");
        // SAFETY: plain old data, as in bytes_of.
        let bytes = unsafe {
            std::slice::from_raw_parts(
                (&raw as *const types::process_exec_details).cast::<u8>(),
                std::mem::size_of_val(&raw),
            )
        };
        let event = decode(bytes, 0).expect("decodes");
        let tail: Vec<String> = (3..16).map(|i| format!("n{i}")).collect();
        assert_eq!(
            event.get("args"),
            Some(Value::Str(&format!(
                "sh 'a b' {long}... {} ...",
                tail.join(" ")
            )))
        );
        assert_eq!(event.get("argc"), Some(Value::U64(18)));
        assert_eq!(event.get("parent_comm"), Some(Value::Str("bash")));
        assert_eq!(event.get("parent_exe"), Some(Value::Str("/usr/bin/bash")));
        assert_eq!(event.get("tty"), Some(Value::Null));
        assert_eq!(event.get("login_uid"), Some(Value::Null));
        // Without details the same fields are null, not unknown.
        let plain = decode(&bytes_of(&raw_event(EXEC)), 0).expect("decodes");
        assert_eq!(plain.get("args"), Some(Value::Null));
        assert_eq!(plain.get("parent_exe"), Some(Value::Null));
    }

    #[test]
    fn rejects_short_and_unknown_records() {
        let bytes = bytes_of(&raw_event(EXEC));
        assert!(decode(&bytes[..bytes.len() - 1], 0).is_none());
        assert!(decode(&bytes_of(&raw_event(99)), 0).is_none());
    }
}
