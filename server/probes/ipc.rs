//! The ipc tracker: SysV message queues, semaphores and shared memory, and POSIX message
//! queues, on the `syscalls:sys_enter_*`/`sys_exit_*` tracepoints. The probe reports each
//! call's raw arguments and result; [`Op`] says which argument is which field.

use std::mem::MaybeUninit;

use libbpf_rs::skel::{Skel, SkelBuilder};

use crate::event::{Event, EventBody, FieldInfo, FieldType, FixedStr, Value};
use crate::tracker_manager::{with_record, Run, Tracker, TrackerError, TrackerInfo};
use crate::{apply_common_config, decode_header};

/// The generated skeleton; its `types` give the raw record layout (for tests and benchmarks).
pub mod skel {
    include!(concat!(env!("OUT_DIR"), "/ipc.skel.rs"));
}
use skel::{types, IpcSkelBuilder};

static INFO: TrackerInfo = TrackerInfo {
    name: "ipc",
    description: "SysV message queue, semaphore and shared memory calls and POSIX message \
                  queue calls, with their key, id, flags and result",
    fields: &[
        FieldInfo::new(
            "op",
            FieldType::Str,
            "the system call, e.g. msgget (kind is its family: msg, sem, shm or mq)",
        ),
        FieldInfo::new("uid", FieldType::U64, "effective user id of the caller"),
        FieldInfo::new("gid", FieldType::U64, "effective group id of the caller"),
        FieldInfo::new(
            "key",
            FieldType::U64,
            "IPC key asked for, 0 for IPC_PRIVATE (msgget, semget, shmget)",
        ),
        FieldInfo::new(
            "name",
            FieldType::Str,
            "message queue name (mq_open, mq_unlink)",
        ),
        FieldInfo::new(
            "id",
            FieldType::I64,
            "queue, semaphore set or segment id (the result of *get, else the first \
             argument; shmat keeps the shmid); the descriptor for mq_*",
        ),
        FieldInfo::new(
            "flags",
            FieldType::U64,
            "msgflg, semflg, shmflg or oflag, permission bits included",
        ),
        FieldInfo::new(
            "cmd",
            FieldType::Str,
            "control command, e.g. IPC_RMID (msgctl, semctl, shmctl); a number when unknown",
        ),
        FieldInfo::measure(
            "size",
            FieldType::U64,
            "bytes: message size asked for (msgsnd, msgrcv, mq_timedsend, mq_timedreceive) \
             or segment size (shmget)",
        ),
        FieldInfo::measure("nsems", FieldType::U64, "semaphores in the set (semget)"),
        FieldInfo::measure(
            "nsops",
            FieldType::U64,
            "semaphore operations (semop, semtimedop)",
        ),
        FieldInfo::new(
            "addr",
            FieldType::U64,
            "segment address: attached at (shmat) or detached (shmdt)",
        ),
        FieldInfo::measure(
            "ret",
            FieldType::I64,
            "return value; a negative errno on failure",
        ),
    ],
};

/// The traced system calls, in the order of `enum ipc_op` in probes/ipc.h.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Msgget,
    Msgsnd,
    Msgrcv,
    Msgctl,
    Semget,
    Semop,
    Semtimedop,
    Semctl,
    Shmget,
    Shmat,
    Shmdt,
    Shmctl,
    MqOpen,
    MqTimedsend,
    MqTimedreceive,
    MqUnlink,
}

/// The IPC facility an op belongs to, for the command names it shares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Family {
    Msg,
    Sem,
    Shm,
    Mq,
}

impl Op {
    const ALL: [Op; 16] = [
        Op::Msgget,
        Op::Msgsnd,
        Op::Msgrcv,
        Op::Msgctl,
        Op::Semget,
        Op::Semop,
        Op::Semtimedop,
        Op::Semctl,
        Op::Shmget,
        Op::Shmat,
        Op::Shmdt,
        Op::Shmctl,
        Op::MqOpen,
        Op::MqTimedsend,
        Op::MqTimedreceive,
        Op::MqUnlink,
    ];

    /// From `enum ipc_op`, which counts from 1.
    fn from_raw(raw: u32) -> Option<Op> {
        Self::ALL
            .get(usize::try_from(raw).ok()?.checked_sub(1)?)
            .copied()
    }

    pub fn name(self) -> &'static str {
        match self {
            Op::Msgget => "msgget",
            Op::Msgsnd => "msgsnd",
            Op::Msgrcv => "msgrcv",
            Op::Msgctl => "msgctl",
            Op::Semget => "semget",
            Op::Semop => "semop",
            Op::Semtimedop => "semtimedop",
            Op::Semctl => "semctl",
            Op::Shmget => "shmget",
            Op::Shmat => "shmat",
            Op::Shmdt => "shmdt",
            Op::Shmctl => "shmctl",
            Op::MqOpen => "mq_open",
            Op::MqTimedsend => "mq_timedsend",
            Op::MqTimedreceive => "mq_timedreceive",
            Op::MqUnlink => "mq_unlink",
        }
    }

    fn family(self) -> Family {
        match self {
            Op::Msgget | Op::Msgsnd | Op::Msgrcv | Op::Msgctl => Family::Msg,
            Op::Semget | Op::Semop | Op::Semtimedop | Op::Semctl => Family::Sem,
            Op::Shmget | Op::Shmat | Op::Shmdt | Op::Shmctl => Family::Shm,
            Op::MqOpen | Op::MqTimedsend | Op::MqTimedreceive | Op::MqUnlink => Family::Mq,
        }
    }

    /// Which argument (0-based, as in the tracepoint format) holds a field, per op.
    fn key_arg(self) -> Option<usize> {
        matches!(self, Op::Msgget | Op::Semget | Op::Shmget).then_some(0)
    }

    fn flags_arg(self) -> Option<usize> {
        match self {
            Op::Msgget | Op::MqOpen => Some(1),
            Op::Semget | Op::Shmget | Op::Shmat => Some(2),
            Op::Msgsnd => Some(3),
            Op::Msgrcv => Some(4),
            _ => None,
        }
    }

    fn cmd_arg(self) -> Option<usize> {
        match self {
            Op::Msgctl | Op::Shmctl => Some(1),
            Op::Semctl => Some(2),
            _ => None,
        }
    }

    fn size_arg(self) -> Option<usize> {
        match self {
            Op::Shmget => Some(1),
            Op::Msgsnd | Op::Msgrcv | Op::MqTimedsend | Op::MqTimedreceive => Some(2),
            _ => None,
        }
    }

    /// Whether the call creates or looks up the object, so its result is the id.
    fn returns_id(self) -> bool {
        matches!(self, Op::Msgget | Op::Semget | Op::Shmget | Op::MqOpen)
    }

    /// Whether the first argument is the object's id (or descriptor).
    fn takes_id(self) -> bool {
        !self.returns_id() && !matches!(self, Op::Shmdt | Op::MqUnlink)
    }
}

/// Bit the C library may add to *ctl commands to ask for the 64-bit structures.
const IPC_64: u32 = 0x100;

/// The name of a msgctl/semctl/shmctl command (see linux/ipc.h, msg.h, sem.h, shm.h).
fn cmd_name(family: Family, cmd: u32) -> Option<&'static str> {
    Some(match (family, cmd & !IPC_64) {
        (_, 0) => "IPC_RMID",
        (_, 1) => "IPC_SET",
        (_, 2) => "IPC_STAT",
        (_, 3) => "IPC_INFO",
        (Family::Msg, 11) => "MSG_STAT",
        (Family::Msg, 12) => "MSG_INFO",
        (Family::Msg, 13) => "MSG_STAT_ANY",
        (Family::Sem, 11) => "GETPID",
        (Family::Sem, 12) => "GETVAL",
        (Family::Sem, 13) => "GETALL",
        (Family::Sem, 14) => "GETNCNT",
        (Family::Sem, 15) => "GETZCNT",
        (Family::Sem, 16) => "SETVAL",
        (Family::Sem, 17) => "SETALL",
        (Family::Sem, 18) => "SEM_STAT",
        (Family::Sem, 19) => "SEM_INFO",
        (Family::Sem, 20) => "SEM_STAT_ANY",
        (Family::Shm, 11) => "SHM_LOCK",
        (Family::Shm, 12) => "SHM_UNLOCK",
        (Family::Shm, 13) => "SHM_STAT",
        (Family::Shm, 14) => "SHM_INFO",
        (Family::Shm, 15) => "SHM_STAT_ANY",
        _ => return None,
    })
}

pub struct IpcTracker;

/// One finished IPC call.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct IpcEvent {
    pub op: Op,
    pub uid: u32,
    pub gid: u32,
    pub ret: i64,
    /// The call's first arguments, as the tracepoint has them.
    pub args: [u64; 5],
    pub name: FixedStr<256>,
}

impl IpcEvent {
    /// A 32-bit argument (key, id, flags, cmd) as the call saw it.
    fn arg32(&self, index: usize) -> u32 {
        self.args[index] as u32
    }

    fn id(&self) -> Option<i64> {
        if self.op.returns_id() {
            (self.ret >= 0).then_some(self.ret)
        } else {
            self.op.takes_id().then(|| i64::from(self.arg32(0) as i32))
        }
    }

    fn addr(&self) -> Option<u64> {
        match self.op {
            Op::Shmat => (self.ret >= 0).then_some(self.ret as u64),
            Op::Shmdt => Some(self.args[0]),
            _ => None,
        }
    }
}

impl EventBody for IpcEvent {
    fn tracker(&self) -> &'static str {
        INFO.name
    }

    fn kind(&self) -> &'static str {
        match self.op.family() {
            Family::Msg => "msg",
            Family::Sem => "sem",
            Family::Shm => "shm",
            Family::Mq => "mq",
        }
    }

    fn visit(&self, visit: &mut dyn FnMut(&str, Value<'_>)) {
        for field in INFO.fields {
            visit(field.name, self.get(field.name).unwrap_or(Value::Null));
        }
    }

    fn get(&self, name: &str) -> Option<Value<'_>> {
        let op = self.op;
        let u64_of = |value: Option<u64>| value.map_or(Value::Null, Value::U64);
        let arg32 = |index: Option<usize>| u64_of(index.map(|i| self.arg32(i).into()));
        Some(match name {
            "op" => Value::Str(op.name()),
            "uid" => Value::U64(self.uid.into()),
            "gid" => Value::U64(self.gid.into()),
            "key" => arg32(op.key_arg()),
            "name" if matches!(op, Op::MqOpen | Op::MqUnlink) => Value::Str(self.name.as_str()),
            "name" => Value::Null,
            "id" => self.id().map_or(Value::Null, Value::I64),
            "flags" => arg32(op.flags_arg()),
            "cmd" => op.cmd_arg().map_or(Value::Null, |i| {
                let cmd = self.arg32(i);
                cmd_name(op.family(), cmd).map_or(Value::U64(cmd.into()), Value::Str)
            }),
            "size" => u64_of(op.size_arg().map(|i| self.args[i])),
            "nsems" => arg32((op == Op::Semget).then_some(1)),
            "nsops" => arg32(matches!(op, Op::Semop | Op::Semtimedop).then_some(2)),
            "addr" => u64_of(self.addr()),
            "ret" => Value::I64(self.ret),
            _ => return None,
        })
    }
}

/// Decodes one ring buffer record of `probes/ipc.h`'s `struct ipc_event`.
pub fn decode(bytes: &[u8], clock_offset: u64) -> Option<Event> {
    with_record(bytes, |raw: &types::ipc_event| {
        let body = IpcEvent {
            op: Op::from_raw(raw.op)?,
            uid: raw.uid,
            gid: raw.gid,
            ret: raw.ret,
            args: raw.args,
            name: FixedStr::from_c_chars(&raw.name),
        };
        Some(Event {
            header: decode_header!(raw.header, clock_offset),
            body: body.into(),
        })
    })
    .flatten()
}

impl Tracker for IpcTracker {
    fn info(&self) -> &'static TrackerInfo {
        &INFO
    }

    fn run(&self, run: Run<'_>) -> Result<(), TrackerError> {
        let mut storage = MaybeUninit::uninit();
        let mut open = IpcSkelBuilder::default()
            .open(&mut storage)
            .map_err(TrackerError::Open)?;
        let rodata = open
            .maps
            .rodata_data
            .as_deref_mut()
            .expect("ipc.bpf.c declares read-only globals");
        apply_common_config!(rodata, run.config());
        open.maps
            .events
            .set_max_entries(run.config().ringbuf_bytes)
            .map_err(TrackerError::Map)?;
        let skel = run.load(open)?;
        run.fill_cgroup_filter(&skel.maps.cgroup_filter)?;
        let dropped = &skel
            .maps
            .bss_data
            .as_deref()
            .expect("ipc.bpf.c declares .bss")
            .ringbuf_dropped;
        run.serve(skel.object(), &skel.maps.events, dropped, decode)
    }
}
