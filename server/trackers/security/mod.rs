//! The security tracker: the system calls detection rules read (ptrace, the set*id family,
//! namespaces, modules, memfd, dup2 onto sockets, chmod, unlink, rename, links, bpf,
//! socket, connect, prctl, personality, kexec), each at its exit with its arguments
//! decoded and its result. Each call has a program on its own tracepoint and only the
//! calls asked for are loaded, so the others cost nothing. Mounts, capability checks and
//! signals have trackers of their own (`mount`, `capable`, `signal`).
//!
//! Relative paths are made absolute against the caller's working directory or the
//! directory descriptor it passed, both walked in the kernel; fchmod's path is its
//! descriptor's. A symlink's target stays as written.

use std::net::{Ipv4Addr, Ipv6Addr};

use libbpf_rs::skel::OpenSkel;

use super::{Event, Tracker};
use crate::engine::{system, with_record, Run, TrackerError, TrackerOptions};
use crate::model::{EventBody, FieldFormat, FieldInfo, FieldType, FixedStr, TrackerInfo, Value};
use crate::{decode_header, run_ring_buffer_probe};

/// The generated skeleton; its `types` give the raw record layout (for tests and benchmarks).
pub mod skel {
    include!(concat!(env!("OUT_DIR"), "/security.skel.rs"));
}
use skel::{types, SecuritySkelBuilder};

static INFO: TrackerInfo = TrackerInfo {
    name: "security",
    description: "security-relevant system calls (ptrace, set*id, unshare, setns, modules, \
                  memfd_create, dup2, chmod, unlink, rename, links, bpf, socket, connect, \
                  prctl, personality, kexec), each with its arguments and result; the kind \
                  is the call",
    fields: &[
        FieldInfo::new("ret", FieldType::I64, "the call's result, or -errno")
            .shown_as(FieldFormat::Errno),
        FieldInfo::new(
            "path",
            FieldType::Str,
            "the file acted on: chmod family, unlink, rename's and link's old path, \
             symlink's target (as written); connect's unix socket",
        )
        .shown_as(FieldFormat::Path),
        FieldInfo::new(
            "new_path",
            FieldType::Str,
            "rename's and link's new path, the symlink created",
        )
        .shown_as(FieldFormat::Path),
        FieldInfo::new(
            "name",
            FieldType::Str,
            "memfd_create's name, delete_module's module",
        ),
        FieldInfo::new("mode", FieldType::U64, "the mode set (chmod family)")
            .shown_as(FieldFormat::Octal),
        FieldInfo::new(
            "flags",
            FieldType::U64,
            "the call's flags: CLONE_NEW* (unshare, setns), MFD_* (memfd_create), \
             AT_* (unlinkat, linkat, fchmodat2), RENAME_* (renameat2), O_CLOEXEC (dup3), \
             the persona (personality), module and kexec flags",
        )
        .shown_as(FieldFormat::Hex),
        FieldInfo::new(
            "namespaces",
            FieldType::Str,
            "the namespaces unshare leaves or setns enters, e.g. mnt|net (empty: setns \
             of any type)",
        ),
        FieldInfo::new(
            "target_pid",
            FieldType::U64,
            "the process acted on (ptrace but PTRACE_TRACEME, process_vm_writev)",
        ),
        FieldInfo::new(
            "operation",
            FieldType::Str,
            "ptrace's request (PTRACE_ATTACH), prctl's option (PR_SET_NAME), bpf's \
             command (BPF_PROG_LOAD)",
        ),
        FieldInfo::new(
            "new_id",
            FieldType::I64,
            "the effective user or group id the set*id call asks for (the fs id for \
             setfsuid and setfsgid); -1 leaves it",
        ),
        FieldInfo::new(
            "fd",
            FieldType::I64,
            "the descriptor acted on: dup2's and dup3's old one, fchmod, connect, setns, \
             finit_module",
        ),
        FieldInfo::new("new_fd", FieldType::I64, "dup2's and dup3's new descriptor"),
        FieldInfo::new(
            "fd_family",
            FieldType::Str,
            "dup2, dup3: the address family of the socket copied (AF_INET); null when \
             the old descriptor is no socket",
        ),
        FieldInfo::new(
            "family",
            FieldType::Str,
            "the address family (socket, connect): AF_INET, AF_PACKET, ...",
        ),
        FieldInfo::new(
            "sock_type",
            FieldType::Str,
            "socket's type: SOCK_STREAM, SOCK_DGRAM, SOCK_RAW, ...",
        ),
        FieldInfo::new("protocol", FieldType::U64, "socket's protocol"),
        FieldInfo::new("address", FieldType::Str, "connect's IP address"),
        FieldInfo::new("port", FieldType::U64, "connect's port"),
    ],
    weight: None,
    stacks: None,
};

/// The calls, in the order of `enum security_call` (probes/security.h); each one's program
/// is `exit_<call>` on `syscalls:sys_exit_<call>`.
pub const CALLS: [&str; 39] = [
    "ptrace",
    "process_vm_writev",
    "setuid",
    "setgid",
    "setreuid",
    "setregid",
    "setresuid",
    "setresgid",
    "setfsuid",
    "setfsgid",
    "capset",
    "unshare",
    "setns",
    "init_module",
    "finit_module",
    "delete_module",
    "memfd_create",
    "dup2",
    "dup3",
    "chmod",
    "fchmod",
    "fchmodat",
    "fchmodat2",
    "unlink",
    "unlinkat",
    "rename",
    "renameat",
    "renameat2",
    "symlink",
    "symlinkat",
    "link",
    "linkat",
    "bpf",
    "socket",
    "connect",
    "prctl",
    "personality",
    "kexec_load",
    "kexec_file_load",
];

pub struct SecurityTracker;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SecurityEvent {
    /// The call, as an index of [`CALLS`].
    pub call: u8,
    pub ret: i64,
    /// The first five raw arguments, decoded per call when read. Each argument these calls
    /// take is an int, a flag word or a pid that fits 32 bits; pointers are read in the
    /// kernel.
    pub args: [u32; 5],
    /// dup2, dup3: the old descriptor's socket family, 0 when it is no socket.
    pub fd_family: u16,
    /// The first path (or name); connect's unix socket path.
    pub path: FixedStr<256>,
    /// The second path; unshare's and setns's namespaces, connect's IP address. Shorter
    /// than `path`, keeping its end, so that an event stays within an exec's size.
    pub new_path: FixedStr<224>,
    /// connect: the port of an IP address.
    pub port: Option<u16>,
}

/// A string field: null when the call has none.
fn text(s: &str) -> Value<'_> {
    if s.is_empty() {
        Value::Null
    } else {
        Value::Str(s)
    }
}

/// include/linux/socket.h.
fn family_name(family: u64) -> Option<&'static str> {
    Some(match family {
        0 => "AF_UNSPEC",
        1 => "AF_UNIX",
        2 => "AF_INET",
        10 => "AF_INET6",
        15 => "AF_KEY",
        16 => "AF_NETLINK",
        17 => "AF_PACKET",
        29 => "AF_CAN",
        31 => "AF_BLUETOOTH",
        38 => "AF_ALG",
        40 => "AF_VSOCK",
        44 => "AF_XDP",
        _ => return None,
    })
}

/// The socket type, its creation flags (SOCK_NONBLOCK, SOCK_CLOEXEC) masked off.
fn sock_type_name(ty: u64) -> Option<&'static str> {
    Some(match ty & 0xf {
        1 => "SOCK_STREAM",
        2 => "SOCK_DGRAM",
        3 => "SOCK_RAW",
        4 => "SOCK_RDM",
        5 => "SOCK_SEQPACKET",
        6 => "SOCK_DCCP",
        10 => "SOCK_PACKET",
        _ => return None,
    })
}

/// include/uapi/linux/ptrace.h.
fn ptrace_request(request: u64) -> Option<&'static str> {
    Some(match request {
        0 => "PTRACE_TRACEME",
        1 => "PTRACE_PEEKTEXT",
        2 => "PTRACE_PEEKDATA",
        3 => "PTRACE_PEEKUSER",
        4 => "PTRACE_POKETEXT",
        5 => "PTRACE_POKEDATA",
        6 => "PTRACE_POKEUSER",
        7 => "PTRACE_CONT",
        8 => "PTRACE_KILL",
        9 => "PTRACE_SINGLESTEP",
        12 => "PTRACE_GETREGS",
        13 => "PTRACE_SETREGS",
        14 => "PTRACE_GETFPREGS",
        15 => "PTRACE_SETFPREGS",
        16 => "PTRACE_ATTACH",
        17 => "PTRACE_DETACH",
        24 => "PTRACE_SYSCALL",
        0x4200 => "PTRACE_SETOPTIONS",
        0x4201 => "PTRACE_GETEVENTMSG",
        0x4202 => "PTRACE_GETSIGINFO",
        0x4203 => "PTRACE_SETSIGINFO",
        0x4204 => "PTRACE_GETREGSET",
        0x4205 => "PTRACE_SETREGSET",
        0x4206 => "PTRACE_SEIZE",
        0x4207 => "PTRACE_INTERRUPT",
        0x4208 => "PTRACE_LISTEN",
        _ => return None,
    })
}

/// include/uapi/linux/prctl.h, the options a detection reads.
fn prctl_option(option: u64) -> Option<&'static str> {
    Some(match option {
        1 => "PR_SET_PDEATHSIG",
        3 => "PR_GET_DUMPABLE",
        4 => "PR_SET_DUMPABLE",
        8 => "PR_SET_KEEPCAPS",
        15 => "PR_SET_NAME",
        16 => "PR_GET_NAME",
        21 => "PR_GET_SECCOMP",
        22 => "PR_SET_SECCOMP",
        23 => "PR_CAPBSET_READ",
        24 => "PR_CAPBSET_DROP",
        28 => "PR_SET_SECUREBITS",
        35 => "PR_SET_MM",
        36 => "PR_SET_CHILD_SUBREAPER",
        38 => "PR_SET_NO_NEW_PRIVS",
        39 => "PR_GET_NO_NEW_PRIVS",
        47 => "PR_CAP_AMBIENT",
        0x59616d61 => "PR_SET_PTRACER",
        0x53564d41 => "PR_SET_VMA",
        _ => return None,
    })
}

/// include/uapi/linux/bpf.h's `enum bpf_cmd`, by number.
const BPF_COMMANDS: [&str; 37] = [
    "BPF_MAP_CREATE",
    "BPF_MAP_LOOKUP_ELEM",
    "BPF_MAP_UPDATE_ELEM",
    "BPF_MAP_DELETE_ELEM",
    "BPF_MAP_GET_NEXT_KEY",
    "BPF_PROG_LOAD",
    "BPF_OBJ_PIN",
    "BPF_OBJ_GET",
    "BPF_PROG_ATTACH",
    "BPF_PROG_DETACH",
    "BPF_PROG_TEST_RUN",
    "BPF_PROG_GET_NEXT_ID",
    "BPF_MAP_GET_NEXT_ID",
    "BPF_PROG_GET_FD_BY_ID",
    "BPF_MAP_GET_FD_BY_ID",
    "BPF_OBJ_GET_INFO_BY_FD",
    "BPF_PROG_QUERY",
    "BPF_RAW_TRACEPOINT_OPEN",
    "BPF_BTF_LOAD",
    "BPF_BTF_GET_FD_BY_ID",
    "BPF_TASK_FD_QUERY",
    "BPF_MAP_LOOKUP_AND_DELETE_ELEM",
    "BPF_MAP_FREEZE",
    "BPF_BTF_GET_NEXT_ID",
    "BPF_MAP_LOOKUP_BATCH",
    "BPF_MAP_LOOKUP_AND_DELETE_BATCH",
    "BPF_MAP_UPDATE_BATCH",
    "BPF_MAP_DELETE_BATCH",
    "BPF_LINK_CREATE",
    "BPF_LINK_UPDATE",
    "BPF_LINK_GET_FD_BY_ID",
    "BPF_LINK_GET_NEXT_ID",
    "BPF_ENABLE_STATS",
    "BPF_ITER_CREATE",
    "BPF_LINK_DETACH",
    "BPF_PROG_BIND_MAP",
    "BPF_TOKEN_CREATE",
];

/// The CLONE_NEW* flags (include/uapi/linux/sched.h) by the names lsns uses.
const NAMESPACES: [(u64, &str); 8] = [
    (0x0002_0000, "mnt"),
    (0x0400_0000, "uts"),
    (0x0800_0000, "ipc"),
    (0x1000_0000, "user"),
    (0x2000_0000, "pid"),
    (0x4000_0000, "net"),
    (0x0200_0000, "cgroup"),
    (0x0000_0080, "time"),
];

/// `mnt|net` for the namespace flags in `flags`.
fn namespaces(flags: u64) -> String {
    let names: Vec<&str> = NAMESPACES
        .iter()
        .filter(|(bit, _)| flags & bit != 0)
        .map(|(_, name)| *name)
        .collect();
    names.join("|")
}

/// connect's socket address: the IP address and port, or a unix socket's path (`@name`
/// for an abstract one).
fn socket_address(raw: &[u8]) -> (String, Option<u16>, Option<String>) {
    let family = raw.get(..2).map_or(0, |b| u16::from_ne_bytes([b[0], b[1]]));
    let port = raw.get(2..4).map(|b| u16::from_be_bytes([b[0], b[1]]));
    match family {
        2 => match raw.get(4..8) {
            Some(b) => (
                Ipv4Addr::new(b[0], b[1], b[2], b[3]).to_string(),
                port,
                None,
            ),
            None => (String::new(), None, None),
        },
        10 => match raw.get(8..24) {
            Some(b) => {
                let bytes: [u8; 16] = b.try_into().expect("16 bytes");
                (Ipv6Addr::from(bytes).to_string(), port, None)
            }
            None => (String::new(), None, None),
        },
        1 => {
            let name = raw.get(2..).unwrap_or_default();
            let path = match name.split_first() {
                Some((0, rest)) => {
                    let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
                    format!("@{}", String::from_utf8_lossy(&rest[..end]))
                }
                _ => {
                    let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
                    String::from_utf8_lossy(&name[..end]).into_owned()
                }
            };
            (String::new(), None, Some(path))
        }
        _ => (String::new(), None, None),
    }
}

/// `text` in N bytes: its end behind "..." when it is longer, as paths are cut in the
/// kernel, since a path's end says most.
fn tail<const N: usize>(text: &str) -> FixedStr<N> {
    if text.len() <= N {
        return FixedStr::from(text);
    }
    let mut start = text.len() - (N - 3);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    FixedStr::from(format!("...{}", &text[start..]).as_str())
}

/// `path` joined to `dir`, the directory the kernel found it relative to (empty when it
/// is absolute, or is kept as written).
fn joined<const N: usize>(dir: &[i8], path: &[i8]) -> FixedStr<N> {
    let path = FixedStr::<256>::from_c_chars(path);
    let dir = FixedStr::<256>::from_c_chars(dir);
    if dir.as_str().is_empty() {
        return tail(path.as_str());
    }
    let relative = path.as_str().trim_start_matches("./");
    tail(&format!(
        "{}/{relative}",
        dir.as_str().trim_end_matches('/')
    ))
}

impl SecurityEvent {
    fn call(&self) -> &'static str {
        CALLS
            .get(usize::from(self.call))
            .copied()
            .unwrap_or("unknown")
    }

    /// Argument `i` as the C int it is.
    fn int(&self, i: usize) -> i64 {
        i64::from(self.args[i] as i32)
    }

    /// Argument `i` as an unsigned number.
    fn word(&self, i: usize) -> u64 {
        self.args[i].into()
    }
}

impl EventBody for SecurityEvent {
    fn info(&self) -> &'static TrackerInfo {
        &INFO
    }

    fn kind(&self) -> &'static str {
        self.call()
    }

    fn get(&self, name: &str) -> Option<Value<'_>> {
        let a = |i: usize| self.word(i);
        let call = self.call();
        let null = Value::Null;
        Some(match name {
            "ret" => Value::I64(self.ret),
            "path" => match call {
                "memfd_create" | "delete_module" | "init_module" | "finit_module" => null,
                _ => text(self.path.as_str()),
            },
            "new_path" => match call {
                "unshare" | "setns" | "connect" => null,
                _ => text(self.new_path.as_str()),
            },
            "name" => match call {
                "memfd_create" | "delete_module" => Value::Str(self.path.as_str()),
                _ => null,
            },
            "mode" => match call {
                "chmod" | "fchmod" => Value::U64(a(1)),
                "fchmodat" | "fchmodat2" => Value::U64(a(2)),
                _ => null,
            },
            "flags" => match call {
                "unshare" | "personality" => Value::U64(a(0)),
                "setns" | "memfd_create" | "delete_module" => Value::U64(a(1)),
                "dup3" | "unlinkat" | "finit_module" => Value::U64(a(2)),
                "fchmodat2" | "kexec_load" => Value::U64(a(3)),
                "renameat2" | "linkat" | "kexec_file_load" => Value::U64(a(4)),
                _ => null,
            },
            "namespaces" => match call {
                "unshare" | "setns" => Value::Str(self.new_path.as_str()),
                _ => null,
            },
            "target_pid" => match call {
                "ptrace" if a(0) != 0 => Value::U64(a(1)),
                "process_vm_writev" => Value::U64(a(0)),
                _ => null,
            },
            "operation" => match call {
                "ptrace" => ptrace_request(a(0)).map_or(null, Value::Str),
                "prctl" => prctl_option(a(0)).map_or(null, Value::Str),
                "bpf" => BPF_COMMANDS
                    .get(self.args[0] as usize)
                    .map_or(null, |c| Value::Str(c)),
                _ => null,
            },
            "new_id" => match call {
                "setuid" | "setgid" | "setfsuid" | "setfsgid" => Value::I64(self.int(0)),
                "setreuid" | "setregid" | "setresuid" | "setresgid" => Value::I64(self.int(1)),
                _ => null,
            },
            "fd" => match call {
                "fchmod" | "dup2" | "dup3" | "connect" | "setns" | "finit_module" => {
                    Value::I64(self.int(0))
                }
                _ => null,
            },
            "new_fd" => match call {
                "dup2" | "dup3" => Value::I64(self.int(1)),
                _ => null,
            },
            "fd_family" => match call {
                "dup2" | "dup3" if self.fd_family != 0 => {
                    family_name(self.fd_family.into()).map_or(null, Value::Str)
                }
                _ => null,
            },
            "family" => match call {
                "socket" => family_name(a(0)).map_or(null, Value::Str),
                "connect" => match self.port {
                    Some(_) if self.new_path.as_str().contains(':') => Value::Str("AF_INET6"),
                    Some(_) => Value::Str("AF_INET"),
                    None if !self.path.as_str().is_empty() => Value::Str("AF_UNIX"),
                    None => null,
                },
                _ => null,
            },
            "sock_type" => match call {
                "socket" => sock_type_name(a(1)).map_or(null, Value::Str),
                _ => null,
            },
            "protocol" => match call {
                "socket" => Value::U64(a(2)),
                _ => null,
            },
            "address" => match call {
                "connect" => text(self.new_path.as_str()),
                _ => null,
            },
            "port" => self.port.map_or(null, |p| Value::U64(p.into())),
            _ => return None,
        })
    }
}

/// Decodes one ring buffer record of `probes/security.h`'s `struct security_event`.
pub fn decode(bytes: &[u8], clock_offset: u64) -> Option<Event> {
    with_record(bytes, |raw: &types::security_event| {
        // Calls count from 1 in probes/security.h.
        let index = usize::try_from(raw.call.checked_sub(1)?).ok()?;
        let call = *CALLS.get(index)?;
        let header = decode_header!(raw.header, clock_offset);
        // Arguments past 32 bits are pointers, read in the kernel.
        let args = raw.args.map(|a| a as u32);
        let mut path = joined(&raw.dir, &raw.path);
        let mut new_path = joined(&raw.dir2, &raw.path2);
        let mut port = None;
        match call {
            "unshare" => new_path = FixedStr::from(namespaces(raw.args[0]).as_str()),
            "setns" => new_path = FixedStr::from(namespaces(raw.args[1]).as_str()),
            "connect" => {
                let bytes: Vec<u8> = raw.path.iter().map(|&c| c as u8).collect();
                let len = bytes.len().min(raw.args[2] as usize);
                let (address, ip_port, unix) = socket_address(&bytes[..len]);
                new_path = FixedStr::from(address.as_str());
                port = ip_port;
                path = unix.map_or(FixedStr::empty(), |p| tail(&p));
            }
            _ => {}
        }
        Some(Event {
            header,
            body: SecurityEvent {
                call: u8::try_from(index).ok()?,
                ret: raw.ret,
                args: [args[0], args[1], args[2], args[3], args[4]],
                fd_family: raw.fd_family as u16,
                path,
                new_path,
                port,
            }
            .into(),
        })
    })
    .flatten()
}

/// The security tracker's options.
#[derive(
    Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(default, deny_unknown_fields)]
pub struct SecurityOptions {
    /// Report only these calls (`ptrace`, `setuid`, `connect`, ...); the others are not
    /// loaded. Empty for every call this kernel has (without modules or kexec built in,
    /// it has no tracepoints for them).
    pub calls: Vec<String>,
}

impl TrackerOptions for SecurityOptions {
    fn check(&self) -> Result<(), String> {
        match self.calls.iter().find(|c| !CALLS.contains(&c.as_str())) {
            Some(call) => Err(format!(
                "`{call}` is no call of the security tracker; it reports {}",
                CALLS.join(", ")
            )),
            None => Ok(()),
        }
    }
}

/// Whether this kernel has the tracepoint `call`'s program attaches to.
pub fn traceable(call: &str) -> bool {
    system::tracepoint_exists("syscalls", &format!("sys_exit_{call}"))
}

impl Tracker for SecurityTracker {
    type Options = SecurityOptions;

    fn info(&self) -> &'static TrackerInfo {
        &INFO
    }

    fn run(&self, run: Run<'_, Event>, options: &SecurityOptions) -> Result<(), TrackerError> {
        let asked =
            |call: &str| options.calls.is_empty() || options.calls.iter().any(|c| c == call);
        if let Some(call) = options.calls.iter().find(|c| !traceable(c)) {
            return Err(TrackerError::MissingTracepoint {
                category: "syscalls".to_string(),
                name: format!("sys_exit_{call}"),
            });
        }
        run_ring_buffer_probe!(run, SecuritySkelBuilder, decode, |open| {
            for mut prog in open.open_object_mut().progs_mut() {
                let name = prog.name().to_string_lossy().into_owned();
                let call = name.trim_start_matches("exit_");
                prog.set_autoload(asked(call) && traceable(call));
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_addresses_namespaces_and_names() {
        let mut v4 = vec![2, 0, 0x1f, 0x90, 169, 254, 169, 254];
        v4.extend([0; 8]);
        let (ip, port, unix) = socket_address(&v4);
        assert_eq!(
            (ip.as_str(), port, unix),
            ("169.254.169.254", Some(8080), None)
        );
        let mut abstract_unix = vec![1, 0, 0];
        abstract_unix.extend(b"x11\0");
        assert_eq!(socket_address(&abstract_unix).2.as_deref(), Some("@x11"));
        assert_eq!(namespaces(0x4002_0000), "mnt|net");
        assert_eq!(ptrace_request(16), Some("PTRACE_ATTACH"));
        assert_eq!(BPF_COMMANDS[5], "BPF_PROG_LOAD");
        assert_eq!(sock_type_name(0x80003), Some("SOCK_RAW"));
    }
}
