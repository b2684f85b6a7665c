"""Messages between the supervisor, components and the CLI: msgpack over SOCK_SEQPACKET sockets.

One datagram is one message, so no framing is needed. File descriptors (grants) travel with a
message as SCM_RIGHTS ancillary data.
"""

from __future__ import annotations

import array
import socket

import msgpack

MAX_MESSAGE = 1 << 20          # control and manifest messages
PPCALL_MAX = 64 * 1024         # a protected call's message, each way (bounded, as on seL4)
_MAX_FDS = 250                 # the kernel's SCM_MAX_FD is 253


class MessageError(Exception):
    """A peer sent something that is not a well-formed message."""


def pack(obj: object) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def unpack(data: bytes) -> object:
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=False)
    except Exception as exc:  # msgpack raises several unrelated types
        raise MessageError(f"malformed message ({exc})") from None


def send(sock: socket.socket, obj: object, fds: list[int] | tuple[int, ...] = ()) -> None:
    data = pack(obj)
    if len(data) > MAX_MESSAGE:
        raise MessageError(f"message of {len(data)} bytes exceeds {MAX_MESSAGE}")
    if not fds:
        sock.send(data)
        return
    if len(fds) > _MAX_FDS:
        raise MessageError(f"{len(fds)} descriptors exceed {_MAX_FDS} per message")
    sock.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))])


def recv(sock: socket.socket, with_fds: bool = False) -> object:
    """Receive one message; returns obj, or (obj, fds) when with_fds. EOF raises EOFError."""
    if not with_fds:
        data = sock.recv(MAX_MESSAGE)
        if not data:
            raise EOFError("peer closed")
        return unpack(data)
    fds = array.array("i")
    data, ancdata, _flags, _addr = sock.recvmsg(MAX_MESSAGE, socket.CMSG_LEN(_MAX_FDS * fds.itemsize))
    for level, kind, payload in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(payload[: len(payload) - (len(payload) % fds.itemsize)])
    if not data:
        raise EOFError("peer closed")
    return unpack(data), list(fds)
