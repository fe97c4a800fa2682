"""Makes known IPC calls through the C library for tests/ipc_tracker.rs and prints their results.

Usage: ipc_calls.py MQ_NAME. Prints one `name=value` line per result the test checks.
"""
import ctypes
import os
import sys

libc = ctypes.CDLL("libc.so.6", use_errno=True)
librt = ctypes.CDLL("librt.so.1", use_errno=True)

IPC_PRIVATE = 0
IPC_CREAT = 0o1000
IPC_RMID = 0


class MqAttr(ctypes.Structure):
    _fields_ = [
        ("mq_flags", ctypes.c_long),
        ("mq_maxmsg", ctypes.c_long),
        ("mq_msgsize", ctypes.c_long),
        ("mq_curmsgs", ctypes.c_long),
        ("reserved", ctypes.c_long * 4),
    ]


class SemBuf(ctypes.Structure):
    _fields_ = [
        ("sem_num", ctypes.c_ushort),
        ("sem_op", ctypes.c_short),
        ("sem_flg", ctypes.c_short),
    ]


def report(name, value):
    print(f"{name}={value}", flush=True)


def posix_mq(name):
    attr = MqAttr(0, 4, 64, 0)
    mqd = librt.mq_open(name, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600, ctypes.byref(attr))
    report("mqd", mqd)
    report("send", librt.mq_send(mqd, b"hello", 5, 1))
    buf = ctypes.create_string_buffer(64)
    prio = ctypes.c_uint()
    report("receive", librt.mq_receive(mqd, buf, 64, ctypes.byref(prio)))
    os.close(mqd)
    report("unlink", librt.mq_unlink(name))
    # The queue is gone: this one fails with ENOENT.
    report("unlink_again", librt.mq_unlink(name))


def sysv():
    msqid = libc.msgget(IPC_PRIVATE, IPC_CREAT | 0o600)
    report("msqid", msqid)
    message = ctypes.create_string_buffer(b"\x01\x00\x00\x00\x00\x00\x00\x00" + b"0123456789")
    report("msgsnd", libc.msgsnd(msqid, message, 10, 0))
    received = ctypes.create_string_buffer(8 + 32)
    report("msgrcv", libc.msgrcv(msqid, received, ctypes.c_size_t(32), ctypes.c_long(0), 0))
    report("msgctl", libc.msgctl(msqid, IPC_RMID, None))

    semid = libc.semget(IPC_PRIVATE, 2, IPC_CREAT | 0o600)
    report("semid", semid)
    ops = (SemBuf * 1)(SemBuf(1, 1, 0))
    report("semop", libc.semop(semid, ops, 1))
    report("semctl", libc.semctl(semid, 0, IPC_RMID))

    libc.shmat.restype = ctypes.c_void_p
    shmid = libc.shmget(IPC_PRIVATE, 8192, IPC_CREAT | 0o600)
    report("shmid", shmid)
    addr = libc.shmat(shmid, None, 0)
    report("shmat", addr)
    report("shmdt", libc.shmdt(ctypes.c_void_p(addr)))
    report("shmctl", libc.shmctl(shmid, IPC_RMID, None))


posix_mq(sys.argv[1].encode())
sysv()
