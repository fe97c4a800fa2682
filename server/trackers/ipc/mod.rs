//! The ipc tracker: SysV message queues, semaphores and shared memory, and POSIX message
//! queues, on the `syscalls:sys_enter_*`/`sys_exit_*` tracepoints. The probe reports each
//! call's raw arguments and result; [`Op`] says which argument is which field.

use super::{Event, Tracker};
use crate::engine::{with_record, NoOptions, Run, TrackerError};
use crate::model::{EventBody, FieldFormat, FieldInfo, FieldType, FixedStr, TrackerInfo, Value};
use crate::{decode_header, run_ring_buffer_probe};

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
        )
        .shown_as(FieldFormat::Hex),
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
        )
        .shown_as(FieldFormat::Octal),
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
        )
        .shown_as(FieldFormat::Errno),
    ],
    weight: None,
    stacks: None,
};

/// The traced system calls (`enum ipc_op` in probes/ipc.h).
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

/// Each op with its enumerator, as the skeleton generates it from probes/ipc.h (so the
/// numbers have one source), and its name.
const OPS: [(types::ipc_op, Op, &str); 16] = [
    (types::ipc_op::IPC_OP_MSGGET, Op::Msgget, "msgget"),
    (types::ipc_op::IPC_OP_MSGSND, Op::Msgsnd, "msgsnd"),
    (types::ipc_op::IPC_OP_MSGRCV, Op::Msgrcv, "msgrcv"),
    (types::ipc_op::IPC_OP_MSGCTL, Op::Msgctl, "msgctl"),
    (types::ipc_op::IPC_OP_SEMGET, Op::Semget, "semget"),
    (types::ipc_op::IPC_OP_SEMOP, Op::Semop, "semop"),
    (
        types::ipc_op::IPC_OP_SEMTIMEDOP,
        Op::Semtimedop,
        "semtimedop",
    ),
    (types::ipc_op::IPC_OP_SEMCTL, Op::Semctl, "semctl"),
    (types::ipc_op::IPC_OP_SHMGET, Op::Shmget, "shmget"),
    (types::ipc_op::IPC_OP_SHMAT, Op::Shmat, "shmat"),
    (types::ipc_op::IPC_OP_SHMDT, Op::Shmdt, "shmdt"),
    (types::ipc_op::IPC_OP_SHMCTL, Op::Shmctl, "shmctl"),
    (types::ipc_op::IPC_OP_MQ_OPEN, Op::MqOpen, "mq_open"),
    (
        types::ipc_op::IPC_OP_MQ_TIMEDSEND,
        Op::MqTimedsend,
        "mq_timedsend",
    ),
    (
        types::ipc_op::IPC_OP_MQ_TIMEDRECEIVE,
        Op::MqTimedreceive,
        "mq_timedreceive",
    ),
    (types::ipc_op::IPC_OP_MQ_UNLINK, Op::MqUnlink, "mq_unlink"),
];

impl Op {
    fn from_raw(raw: types::ipc_op) -> Option<Op> {
        OPS.iter().find(|(r, ..)| *r == raw).map(|&(_, op, _)| op)
    }

    fn entry(self) -> &'static (types::ipc_op, Op, &'static str) {
        OPS.iter()
            .find(|(_, op, _)| *op == self)
            .expect("OPS lists every op")
    }

    pub fn name(self) -> &'static str {
        self.entry().2
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
    fn info(&self) -> &'static TrackerInfo {
        &INFO
    }

    fn kind(&self) -> &'static str {
        match self.op.family() {
            Family::Msg => "msg",
            Family::Sem => "sem",
            Family::Shm => "shm",
            Family::Mq => "mq",
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
    type Options = NoOptions;

    fn info(&self) -> &'static TrackerInfo {
        &INFO
    }

    fn run(&self, run: Run<'_, Event>, _: &NoOptions) -> Result<(), TrackerError> {
        run_ring_buffer_probe!(run, IpcSkelBuilder, decode)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Record;

    fn raw_event(op: types::ipc_op, args: [u64; 5], ret: i64) -> types::ipc_event {
        let mut raw = types::ipc_event::default();
        raw.header.ts_ns = 5;
        raw.header.pid = 42;
        for (dst, src) in raw.header.comm.iter_mut().zip(b"ipcmk\0") {
            *dst = *src as i8;
        }
        for (dst, src) in raw.name.iter_mut().zip(b"queue\0") {
            *dst = *src as i8;
        }
        raw.op = op;
        raw.uid = 1000;
        raw.gid = 100;
        raw.ret = ret;
        raw.args = args;
        raw
    }

    fn bytes_of(raw: &types::ipc_event) -> Vec<u8> {
        // SAFETY: ipc_event is plain old data; reading its bytes is always valid.
        unsafe {
            std::slice::from_raw_parts(
                (raw as *const types::ipc_event).cast::<u8>(),
                std::mem::size_of_val(raw),
            )
            .to_vec()
        }
    }

    fn decoded(op: Op, args: [u64; 5], ret: i64) -> Event {
        decode(&bytes_of(&raw_event(op.entry().0, args, ret)), 1_000).expect("decodes")
    }

    /// The fields of an event that are not null, in catalog order.
    fn set_fields(event: &Event) -> Vec<(String, Value<'_>)> {
        INFO.fields
            .iter()
            .filter_map(|f| match event.get(f.name) {
                Some(Value::Null) => None,
                Some(v) => Some((f.name.to_string(), v)),
                None => panic!("{} is in the catalog but get does not know it", f.name),
            })
            .collect()
    }

    fn expect(event: &Event, fields: &[(&str, Value<'_>)]) {
        let expected: Vec<(String, Value<'_>)> = fields
            .iter()
            .map(|(name, v)| (name.to_string(), *v))
            .collect();
        assert_eq!(set_fields(event), expected, "{event:?}");
    }

    fn common<'a>(
        op: &'a str,
        rest: &[(&'a str, Value<'a>)],
        ret: i64,
    ) -> Vec<(&'a str, Value<'a>)> {
        let mut fields = vec![
            ("op", Value::Str(op)),
            ("uid", Value::U64(1000)),
            ("gid", Value::U64(100)),
        ];
        fields.extend_from_slice(rest);
        fields.push(("ret", Value::I64(ret)));
        fields
    }

    #[test]
    fn decodes_header_and_get_calls() {
        // shmget(0x8badf00d, 4096, IPC_CREAT | 0644) = 7: the key is 32 bits, sign-extended.
        let event = decoded(Op::Shmget, [0xffff_ffff_8bad_f00d, 4096, 0o1644, 0, 0], 7);
        assert_eq!(event.header.ts_ns, 1_005);
        assert_eq!(event.get("pid"), Some(Value::U64(42)));
        assert_eq!(event.get("comm"), Some(Value::Str("ipcmk")));
        assert_eq!(event.get("tracker"), Some(Value::Str("ipc")));
        assert_eq!(event.get("kind"), Some(Value::Str("shm")));
        let rest = [
            ("key", Value::U64(0x8bad_f00d)),
            ("id", Value::I64(7)),
            ("flags", Value::U64(0o1644)),
            ("size", Value::U64(4096)),
        ];
        expect(&event, &common("shmget", &rest, 7));

        // A failed get has no id.
        let event = decoded(Op::Semget, [0, 3, 0o600, 0, 0], -22);
        let rest = [
            ("key", Value::U64(0)),
            ("flags", Value::U64(0o600)),
            ("nsems", Value::U64(3)),
        ];
        expect(&event, &common("semget", &rest, -22));
        assert_eq!(event.get("kind"), Some(Value::Str("sem")));
    }

    #[test]
    fn maps_each_ops_arguments() {
        let msgrcv = decoded(Op::Msgrcv, [4, 0x7000, 32, 0, 0o4000], 10);
        let rest = [
            ("id", Value::I64(4)),
            ("flags", Value::U64(0o4000)),
            ("size", Value::U64(32)),
        ];
        expect(&msgrcv, &common("msgrcv", &rest, 10));

        let semop = decoded(Op::Semop, [5, 0x7000, 2, 0, 0], 0);
        let rest = [("id", Value::I64(5)), ("nsops", Value::U64(2))];
        expect(&semop, &common("semop", &rest, 0));

        let shmat = decoded(Op::Shmat, [6, 0, 0o10000, 0, 0], 0x7f00_0000_0000);
        let rest = [
            ("id", Value::I64(6)),
            ("flags", Value::U64(0o10000)),
            ("addr", Value::U64(0x7f00_0000_0000)),
        ];
        expect(&shmat, &common("shmat", &rest, 0x7f00_0000_0000));

        let shmdt = decoded(Op::Shmdt, [0x7f00_0000_0000, 0, 0, 0, 0], 0);
        expect(
            &shmdt,
            &common("shmdt", &[("addr", Value::U64(0x7f00_0000_0000))], 0),
        );

        let mq_open = decoded(Op::MqOpen, [0x7000, 0o302, 0o600, 0, 0], 3);
        let rest = [
            ("name", Value::Str("queue")),
            ("id", Value::I64(3)),
            ("flags", Value::U64(0o302)),
        ];
        expect(&mq_open, &common("mq_open", &rest, 3));
        assert_eq!(mq_open.get("kind"), Some(Value::Str("mq")));

        let send = decoded(Op::MqTimedsend, [3, 0x7000, 5, 1, 0], 0);
        let rest = [("id", Value::I64(3)), ("size", Value::U64(5))];
        expect(&send, &common("mq_timedsend", &rest, 0));

        let unlink = decoded(Op::MqUnlink, [0x7000, 0, 0, 0, 0], -2);
        expect(
            &unlink,
            &common("mq_unlink", &[("name", Value::Str("queue"))], -2),
        );

        // An invalid id as the caller passed it.
        let msgsnd = decoded(Op::Msgsnd, [u64::from(u32::MAX), 0x7000, 8, 0, 0], -22);
        assert_eq!(msgsnd.get("id"), Some(Value::I64(-1)));
    }

    #[test]
    fn names_control_commands_per_facility() {
        let cmd = |op, cmd: u64| {
            decoded(op, [1, cmd, cmd, 0, 0], 0)
                .get("cmd")
                .map(|v| v.to_string())
        };
        assert_eq!(cmd(Op::Msgctl, 0).as_deref(), Some("IPC_RMID"));
        // The 64-bit structures flag does not change the command.
        assert_eq!(cmd(Op::Shmctl, 0x100 | 2).as_deref(), Some("IPC_STAT"));
        assert_eq!(cmd(Op::Msgctl, 11).as_deref(), Some("MSG_STAT"));
        assert_eq!(cmd(Op::Semctl, 16).as_deref(), Some("SETVAL"));
        assert_eq!(cmd(Op::Shmctl, 11).as_deref(), Some("SHM_LOCK"));
        assert_eq!(cmd(Op::Shmctl, 99).as_deref(), Some("99"));
        let semctl = decoded(Op::Semctl, [9, 0, 0, 0, 0], 0);
        let rest = [("id", Value::I64(9)), ("cmd", Value::Str("IPC_RMID"))];
        expect(&semctl, &common("semctl", &rest, 0));
    }

    #[test]
    fn visit_gives_every_catalog_field_in_order() {
        let event = decoded(Op::Msgget, [0, 0o1600, 0, 0, 0], 1);
        let mut names = Vec::new();
        event
            .body
            .visit(&mut |name, _| names.push(name.to_string()));
        let catalog: Vec<&str> = INFO.fields.iter().map(|f| f.name).collect();
        assert_eq!(names, catalog);
        assert_eq!(event.get("nonsense"), None);
    }

    #[test]
    fn rejects_short_and_unknown_records() {
        let bytes = bytes_of(&raw_event(types::ipc_op::IPC_OP_MSGGET, [0; 5], 0));
        assert!(decode(&bytes[..bytes.len() - 1], 0).is_none());
        let unknown = |raw| decode(&bytes_of(&raw_event(types::ipc_op(raw), [0; 5], 0)), 0);
        assert!(unknown(0).is_none());
        assert!(unknown(types::ipc_op::IPC_OP_END.0).is_none());
    }

    /// Every op the C enum has maps to one op here, under its own name: a new op in
    /// probes/ipc.h fails this test until it is added to OPS.
    #[test]
    fn every_op_of_the_c_enum_is_known() {
        let end = types::ipc_op::IPC_OP_END.0;
        let names: std::collections::BTreeSet<&str> = (1..end)
            .map(|raw| Op::from_raw(types::ipc_op(raw)).expect("mapped").name())
            .collect();
        assert_eq!(names.len(), OPS.len());
        assert_eq!(end as usize - 1, OPS.len());
    }
}
