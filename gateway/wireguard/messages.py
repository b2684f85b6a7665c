"""The four WireGuard messages (whitepaper §5.4.2–§5.4.7), two ways.

- ``construct`` definitions (``INITIATION``, ``RESPONSE``, ``COOKIE_REPLY``, ``TRANSPORT``):
  declarative, used off the hot path and in tests as the reference.
- Fast views: fixed offsets and ``struct`` packers used on the data path (``parse_header``,
  ``pack_*``). Tests cross-check the two on every field.

Layouts (little-endian integers; type is one byte followed by three reserved zero bytes):

    initiation (148): type=1 | sender u32 | ephemeral 32 | static 32+16 | timestamp 12+16
                      | mac1 16 | mac2 16
    response    (92): type=2 | sender u32 | receiver u32 | ephemeral 32 | empty 0+16
                      | mac1 16 | mac2 16
    cookie reply(64): type=3 | receiver u32 | nonce 24 | cookie 16+16
    transport (16+n): type=4 | receiver u32 | counter u64 | packet n (n >= 16)
"""

from __future__ import annotations

import struct

import construct as cs

INITIATION_TYPE, RESPONSE_TYPE, COOKIE_REPLY_TYPE, TRANSPORT_TYPE = 1, 2, 3, 4
INITIATION_LEN, RESPONSE_LEN, COOKIE_REPLY_LEN = 148, 92, 64
TRANSPORT_HEADER_LEN = 16
TRANSPORT_MIN_LEN = TRANSPORT_HEADER_LEN + 16      # a keepalive: header + empty AEAD
MAC1_OFFSET = {INITIATION_TYPE: 116, RESPONSE_TYPE: 60}   # bytes covered by mac1
MAC2_OFFSET = {INITIATION_TYPE: 132, RESPONSE_TYPE: 76}   # bytes covered by mac2

_Header = cs.Struct("type" / cs.Int8ul, "reserved" / cs.Const(b"\0\0\0"))

INITIATION = cs.Struct(
    "header" / _Header, "sender" / cs.Int32ul, "ephemeral" / cs.Bytes(32),
    "static" / cs.Bytes(48), "timestamp" / cs.Bytes(28), "mac1" / cs.Bytes(16),
    "mac2" / cs.Bytes(16), cs.Terminated)
RESPONSE = cs.Struct(
    "header" / _Header, "sender" / cs.Int32ul, "receiver" / cs.Int32ul,
    "ephemeral" / cs.Bytes(32), "empty" / cs.Bytes(16), "mac1" / cs.Bytes(16),
    "mac2" / cs.Bytes(16), cs.Terminated)
COOKIE_REPLY = cs.Struct(
    "header" / _Header, "receiver" / cs.Int32ul, "nonce" / cs.Bytes(24),
    "cookie" / cs.Bytes(32), cs.Terminated)
TRANSPORT = cs.Struct(
    "header" / _Header, "receiver" / cs.Int32ul, "counter" / cs.Int64ul,
    "packet" / cs.GreedyBytes)

_TYPE_WORD = struct.Struct("<I")
_U32 = struct.Struct("<I")
_TRANSPORT_HEADER = struct.Struct("<IIQ")
_INITIATION_HEAD = struct.Struct("<II")
_RESPONSE_HEAD = struct.Struct("<III")
_COOKIE_HEAD = struct.Struct("<II")


def message_type(datagram: bytes | memoryview) -> int:
    """The message type, or 0 if the datagram is not a well-formed WireGuard message of its type.

    The first four bytes are read as one little-endian word, so non-zero reserved bytes make
    the type unknown (as wireguard-go does). Lengths are exact for handshake messages.
    """
    n = len(datagram)
    if n < 4:
        return 0
    kind = _TYPE_WORD.unpack_from(datagram)[0]
    if kind == TRANSPORT_TYPE:
        return kind if n >= TRANSPORT_MIN_LEN else 0
    if (kind == INITIATION_TYPE and n == INITIATION_LEN) or (
            kind == RESPONSE_TYPE and n == RESPONSE_LEN) or (
            kind == COOKIE_REPLY_TYPE and n == COOKIE_REPLY_LEN):
        return kind
    return 0


# -- fast views --------------------------------------------------------------------------------
def transport_header(datagram) -> tuple[int, int]:
    """(receiver, counter) of a transport message."""
    _kind, receiver, counter = _TRANSPORT_HEADER.unpack_from(datagram)
    return receiver, counter


def pack_transport_header(receiver: int, counter: int) -> bytes:
    return _TRANSPORT_HEADER.pack(TRANSPORT_TYPE, receiver, counter)


def pack_transport_header_into(buf, offset: int, receiver: int, counter: int) -> None:
    _TRANSPORT_HEADER.pack_into(buf, offset, TRANSPORT_TYPE, receiver, counter)


def initiation_sender(datagram) -> int:
    return _INITIATION_HEAD.unpack_from(datagram)[1]


def response_indices(datagram) -> tuple[int, int]:
    """(sender, receiver) of a response."""
    _kind, sender, receiver = _RESPONSE_HEAD.unpack_from(datagram)
    return sender, receiver


def cookie_reply_receiver(datagram) -> int:
    return _COOKIE_HEAD.unpack_from(datagram)[1]


def receiver_index(datagram) -> int:
    """The receiver index of a response, cookie reply or transport message."""
    kind = datagram[0]
    return _U32.unpack_from(datagram, 8 if kind == RESPONSE_TYPE else 4)[0]


def pack_initiation(sender: int, body: bytes) -> bytearray:
    """Message 1 without MACs (zeros): ``body`` is the Noise part (32 + 48 + 28 bytes)."""
    out = bytearray(INITIATION_LEN)
    _INITIATION_HEAD.pack_into(out, 0, INITIATION_TYPE, sender)
    out[8:116] = body
    return out


def initiation_body(datagram) -> bytes:
    return bytes(datagram[8:116])


def pack_response(sender: int, receiver: int, body: bytes) -> bytearray:
    """Message 2 without MACs: ``body`` is the Noise part (32 + 16 bytes)."""
    out = bytearray(RESPONSE_LEN)
    _RESPONSE_HEAD.pack_into(out, 0, RESPONSE_TYPE, sender, receiver)
    out[12:60] = body
    return out


def response_body(datagram) -> bytes:
    return bytes(datagram[12:60])


def pack_cookie_reply(receiver: int, nonce24: bytes, sealed_cookie: bytes) -> bytes:
    return _COOKIE_HEAD.pack(COOKIE_REPLY_TYPE, receiver) + nonce24 + sealed_cookie


def cookie_reply_fields(datagram) -> tuple[int, bytes, bytes]:
    """(receiver, nonce, sealed cookie) of a cookie reply."""
    return cookie_reply_receiver(datagram), bytes(datagram[8:32]), bytes(datagram[32:64])
