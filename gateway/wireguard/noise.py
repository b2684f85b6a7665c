"""Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s as WireGuard uses it (whitepaper §5.4).

Primitives (§5.4 "Protocol & Cryptography"): HASH = BLAKE2s-256, HMAC over BLAKE2s, KDF1..3 =
HKDF with that HMAC, DH = X25519, AEAD = ChaCha20-Poly1305 with a 64-bit little-endian counter
nonce, XAEAD = XChaCha20-Poly1305, TAI64N timestamps.

``Initiation`` and ``Response`` carry one handshake from first message to the transport keys
("Split": ``(T_send, T_recv) = KDF2(C, ε)``). They take the prologue, the ephemeral keys and
the payloads as arguments so that the published Noise test vectors (cacophony's
``Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s``) exercise exactly the code WireGuard runs. No I/O here.
"""

from __future__ import annotations

import hashlib
import os
import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from nacl.bindings import (
    crypto_aead_xchacha20poly1305_ietf_decrypt,
    crypto_aead_xchacha20poly1305_ietf_encrypt,
    crypto_scalarmult,
    crypto_scalarmult_base,
)
from nacl.exceptions import CryptoError

CONSTRUCTION = b"Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s"
IDENTIFIER = b"WireGuard v1 zx2c4 Jason@zx2c4.com"
KEY_LEN = 32
TAG_LEN = 16
ZERO_KEY = bytes(32)


class HandshakeError(ValueError):
    """A handshake message failed to authenticate or decode."""


# -- primitives (§5.4) -------------------------------------------------------------------------
def hash_(*parts: bytes) -> bytes:
    """HASH(input): BLAKE2s with a 32-byte digest over the concatenation of ``parts``."""
    h = hashlib.blake2s()
    for p in parts:
        h.update(p)
    return h.digest()


_BLOCK = 64                                          # BLAKE2s's block size
_IPAD = bytes(x ^ 0x36 for x in range(256))
_OPAD = bytes(x ^ 0x5C for x in range(256))


def hmac(key: bytes, data: bytes) -> bytes:
    """HMAC(key, input): HMAC-BLAKE2s-256, RFC 2104 §2: H(K ^ opad, H(K ^ ipad, text)), K
    padded with zeros to the block (hashed first if longer). Written out: the standard
    library's ``hmac`` takes a pure-Python path for BLAKE2s, three times slower."""
    if len(key) > _BLOCK:
        key = hashlib.blake2s(key).digest()
    key = key.ljust(_BLOCK, b"\0")
    inner = hashlib.blake2s(key.translate(_IPAD))
    inner.update(data)
    return hashlib.blake2s(key.translate(_OPAD) + inner.digest()).digest()


def kdf(key: bytes, data: bytes, n: int) -> list[bytes]:
    """KDFn(key, input): HKDF (RFC 5869) with HMAC-BLAKE2s, returning ``n`` 32-byte outputs."""
    prk = hmac(key, data)
    out, prev = [], b""
    for i in range(1, n + 1):
        prev = hmac(prk, prev + bytes([i]))
        out.append(prev)
    return out


def mac(key: bytes, data: bytes) -> bytes:
    """MAC(key, input): keyed BLAKE2s with a 16-byte digest."""
    return hashlib.blake2s(data, key=key, digest_size=16).digest()


def dh(private: bytes, public: bytes) -> bytes:
    """DH(private, public): X25519 (libsodium: half the time of the ``cryptography`` object
    path here). An all-zero result (a low-order point) or a key of the wrong size is rejected."""
    try:
        return crypto_scalarmult(bytes(private), bytes(public))
    except CryptoError:                     # libsodium refuses an all-zero shared secret
        raise HandshakeError("X25519: low-order point or bad key") from None


def public_key(private: bytes) -> bytes:
    """DH-PUBKEY(private): the fixed-base X25519 multiplication (clamping included)."""
    try:
        return crypto_scalarmult_base(bytes(private))
    except CryptoError:
        raise ValueError("X25519 private key must be 32 bytes") from None


def generate_private_key() -> bytes:
    """DH-GENERATE(): 32 random bytes, clamped as wireguard-go's newPrivateKey does (RFC 7748
    §5: clear bits 0-2 and 255, set bit 254)."""
    key = bytearray(os.urandom(32))
    key[0] &= 248
    key[31] = (key[31] & 127) | 64
    return bytes(key)


def nonce(counter: int) -> bytes:
    """The AEAD nonce: 32 zero bits then the 64-bit little-endian counter."""
    return b"\0\0\0\0" + struct.pack("<Q", counter)


def aead_encrypt(key: bytes, counter: int, plaintext: bytes, ad: bytes) -> bytes:
    return ChaCha20Poly1305(key).encrypt(nonce(counter), plaintext, ad)


def aead_decrypt(key: bytes, counter: int, ciphertext: bytes, ad: bytes) -> bytes:
    try:
        return ChaCha20Poly1305(key).decrypt(nonce(counter), ciphertext, ad)
    except InvalidTag:
        raise HandshakeError("AEAD authentication failed") from None


def xaead_encrypt(key: bytes, nonce24: bytes, plaintext: bytes, ad: bytes) -> bytes:
    return crypto_aead_xchacha20poly1305_ietf_encrypt(plaintext, ad, nonce24, key)


def xaead_decrypt(key: bytes, nonce24: bytes, ciphertext: bytes, ad: bytes) -> bytes:
    try:
        return crypto_aead_xchacha20poly1305_ietf_decrypt(ciphertext, ad, nonce24, key)
    except (CryptoError, ValueError, TypeError):
        raise HandshakeError("XAEAD authentication failed") from None


TAI64_BASE = 0x400000000000000A


def tai64n(unix_ns: int) -> bytes:
    """TAI64N(): 8-byte big-endian seconds since 1970 + 2^62 + 10, 4-byte nanoseconds."""
    seconds, nanos = divmod(unix_ns, 1_000_000_000)
    return struct.pack(">QI", TAI64_BASE + seconds, nanos)


# -- the handshake (§5.4.2, §5.4.3, §5.4.5) ---------------------------------------------------
def initial_state(prologue: bytes = IDENTIFIER) -> tuple[bytes, bytes]:
    """``C = HASH(CONSTRUCTION)``, ``H = HASH(C || IDENTIFIER)``: the chaining key and hash."""
    c = hash_(CONSTRUCTION)
    return c, hash_(c, prologue)


@dataclass(frozen=True)
class TransportKeys:
    """The outcome of a handshake: (T_send, T_recv) for this side and the final hash H."""

    send: bytes
    recv: bytes
    handshake_hash: bytes


class Initiation:
    """The initiator's side: ``create`` message 1's Noise body, ``consume_response`` message 2's.

    Message 1 body: ``ephemeral (32) || AEAD(static) (48) || AEAD(payload)``;
    message 2 body: ``ephemeral (32) || AEAD(payload)``.
    """

    def __init__(self, static_private: bytes, remote_static: bytes, psk: bytes = ZERO_KEY,
                 ephemeral_private: bytes | None = None, prologue: bytes = IDENTIFIER, *,
                 static_public: bytes | None = None, static_static: bytes | None = None) -> None:
        """``static_public`` and ``static_static`` (= DH(S_priv_i, S_pub_r)) may be given
        precomputed: both are constant for a pair of peers (wireguard-go keeps them too)."""
        self.s = static_private
        self.s_pub = static_public or public_key(static_private)
        self.ss = static_static
        self.rs = remote_static
        self.psk = psk
        self.e = ephemeral_private if ephemeral_private is not None else generate_private_key()
        self.c, self.h = initial_state(prologue)
        self.h = hash_(self.h, remote_static)            # H = HASH(H || S_pub_r)
        self._prefix: bytes | None = None
        self._k: bytes | None = None

    def prepare(self) -> None:
        """Everything of message 1 before its payload: the ephemeral key, both DHs and the
        encrypted static key. Independent of the payload (the timestamp), so a key holder may
        do it ahead of time; ``create`` then only seals the payload."""
        if self._prefix is not None:
            return
        e_pub = public_key(self.e)
        self.c = kdf(self.c, e_pub, 1)[0]                 # C = KDF1(C, E_pub_i)
        self.h = hash_(self.h, e_pub)                     # H = HASH(H || msg.ephemeral)
        self.c, k = kdf(self.c, dh(self.e, self.rs), 2)   # (C, κ) = KDF2(C, DH(E_priv_i, S_pub_r))
        static = aead_encrypt(k, 0, self.s_pub, self.h)   # msg.static = AEAD(κ, 0, S_pub_i, H)
        self.h = hash_(self.h, static)
        ss = self.ss or dh(self.s, self.rs)
        self.c, self._k = kdf(self.c, ss, 2)              # (C, κ) = KDF2(C, DH(S_priv_i, S_pub_r))
        self._prefix = e_pub + static

    def create(self, payload: bytes) -> bytes:
        self.prepare()
        sealed = aead_encrypt(self._k, 0, payload, self.h)  # msg.timestamp = AEAD(κ, 0, TAI64N, H)
        self.h = hash_(self.h, sealed)
        self._k = None
        return self._prefix + sealed

    def consume_response(self, body: bytes) -> tuple[bytes, TransportKeys]:
        """Process message 2's body; returns (payload, transport keys). Raises HandshakeError."""
        if len(body) < 32 + TAG_LEN:
            raise HandshakeError("response too short")
        e_r, sealed = body[:32], body[32:]
        c = kdf(self.c, e_r, 1)[0]                        # C = KDF1(C, E_pub_r)
        h = hash_(self.h, e_r)
        c = kdf(c, dh(self.e, e_r), 1)[0]                 # C = KDF1(C, DH(E_priv_i, E_pub_r))
        c = kdf(c, dh(self.s, e_r), 1)[0]                 # C = KDF1(C, DH(S_priv_i, E_pub_r))
        c, tau, k = kdf(c, self.psk, 3)                   # (C, τ, κ) = KDF3(C, Q)
        h = hash_(h, tau)
        payload = aead_decrypt(k, 0, sealed, h)           # msg.empty = AEAD(κ, 0, ε, H)
        h = hash_(h, sealed)
        send, recv = kdf(c, b"", 2)                       # (T_send_i, T_recv_i) = KDF2(C, ε)
        return payload, TransportKeys(send, recv, h)


class Response:
    """The responder's side: ``consume`` message 1's body, then ``create`` message 2's."""

    def __init__(self, static_private: bytes, prologue: bytes = IDENTIFIER, *,
                 static_public: bytes | None = None,
                 static_static: dict[bytes, bytes] | None = None) -> None:
        """``static_static`` maps a peer's public key to DH(S_priv_r, S_pub_i), precomputed."""
        self.s = static_private
        self.s_pub = static_public or public_key(static_private)
        self.ss = static_static or {}
        self.c, self.h = initial_state(prologue)
        self.h = hash_(self.h, self.s_pub)
        self.remote_static = b""
        self.remote_ephemeral = b""

    def consume(self, body: bytes) -> bytes:
        """Process message 1's body; returns its payload (the TAI64N timestamp in WireGuard).

        Afterwards ``remote_static`` names the initiator; the caller looks it up and refuses
        unknown peers before creating a response.
        """
        if len(body) < 32 + 32 + TAG_LEN + TAG_LEN:
            raise HandshakeError("initiation too short")
        e_i, static, sealed = body[:32], body[32:80], body[80:]
        c = kdf(self.c, e_i, 1)[0]
        h = hash_(self.h, e_i)
        c, k = kdf(c, dh(self.s, e_i), 2)
        rs = aead_decrypt(k, 0, static, h)
        h = hash_(h, static)
        c, k = kdf(c, self.ss.get(rs) or dh(self.s, rs), 2)
        payload = aead_decrypt(k, 0, sealed, h)
        self.h = hash_(h, sealed)
        self.c = c
        self.remote_static, self.remote_ephemeral = rs, e_i
        return payload

    def create(self, payload: bytes, psk: bytes = ZERO_KEY,
               ephemeral_private: bytes | None = None) -> tuple[bytes, TransportKeys]:
        """Message 2's body and this side's transport keys (send = T_recv_i, recv = T_send_i)."""
        e = ephemeral_private if ephemeral_private is not None else generate_private_key()
        e_pub = public_key(e)
        c = kdf(self.c, e_pub, 1)[0]
        h = hash_(self.h, e_pub)
        c = kdf(c, dh(e, self.remote_ephemeral), 1)[0]    # C = KDF1(C, DH(E_priv_r, E_pub_i))
        c = kdf(c, dh(e, self.remote_static), 1)[0]       # C = KDF1(C, DH(E_priv_r, S_pub_i))
        c, tau, k = kdf(c, psk, 3)
        h = hash_(h, tau)
        sealed = aead_encrypt(k, 0, payload, h)
        h = hash_(h, sealed)
        recv, send = kdf(c, b"", 2)                       # (T_recv_r, T_send_r) = KDF2(C, ε)
        return e_pub + sealed, TransportKeys(send, recv, h)


def _warm_up() -> None:
    """Run each primitive once at import: their backends load lazily, and a confined
    component cannot import anything later."""
    k = public_key(bytes(range(32)))
    aead_decrypt(k, 0, aead_encrypt(k, 0, b"", b""), b"")
    xaead_decrypt(k, bytes(24), xaead_encrypt(k, bytes(24), b"", b""), b"")
    generate_private_key()


_warm_up()
