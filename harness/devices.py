"""Opening devices for components: the harness holds the authority, components get descriptors.

- ``file``: opened read-only, or created/truncated for writing.
- ``afpacket``: a raw AF_PACKET socket bound to interface ``name`` (in ``netns``), every
  protocol, non-blocking.
- ``tap``: a TAP interface (``IFF_TAP | IFF_NO_PI``, non-blocking) created inside the named
  network namespace. A forked helper enters the namespace (setns), opens ``/dev/net/tun``,
  attaches it, gives the kernel side its address with iproute2, brings it up, and passes the
  descriptor back over a socketpair (SCM_RIGHTS); the interface lives as long as the descriptor.
- ``tun``: the same with ``IFF_TUN``: bare IP packets, no Ethernet header.
- ``offload = true`` on a tap: ``IFF_VNET_HDR`` with a 10-byte virtio-net header per frame
  (TUNSETVNETHDRSZ), TUNSETOFFLOAD with checksum and TCP segmentation offload (IPv4, IPv6),
  and the interface's ``gso_max_size`` lowered so a frame fits a 64 KiB buffer.
"""

from __future__ import annotations

import array
import ctypes
import fcntl
import os
import socket
import struct
import subprocess
from pathlib import Path

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
IFF_VNET_HDR = 0x4000
TUNSETOFFLOAD = 0x400454D0
TUNSETVNETHDRSZ = 0x400454D8
TUN_F_CSUM, TUN_F_TSO4, TUN_F_TSO6 = 0x01, 0x02, 0x04
VNET_HDR_LEN = 10                    # struct virtio_net_hdr (no num_buffers)
GSO_MAX_SIZE = 65536 - 14 - VNET_HDR_LEN - 512   # an offloaded frame fits a 64 KiB buffer
CLONE_NEWNET = 0x40000000
ETH_P_ALL = 0x0003


class DeviceError(OSError):
    """A device could not be opened for a component."""


def open_device(base: Path, dev) -> int:
    if dev.kind == "file":
        path = base / dev.path
        if dev.mode == "r":
            return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    if dev.kind in ("tap", "tun"):
        flags = IFF_TAP if dev.kind == "tap" else IFF_TUN
        offload = bool(getattr(dev, "offload", False)) and dev.kind == "tap"
        return _in_netns(dev.netns, lambda: _tap_here(dev.name, dev.address, flags, offload),
                         f"{dev.kind} '{dev.name}'")
    if dev.kind == "afpacket":
        return _in_netns(dev.netns, lambda: _packet_socket_here(dev.name),
                         f"afpacket on '{dev.name}'")
    raise DeviceError(f"unknown device kind {dev.kind!r}")


def _in_netns(netns: str, opener, what: str) -> int:
    """Run ``opener`` (which returns an fd) in a forked helper inside ``netns``."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    pid = os.fork()
    if pid == 0:                                    # the helper: never returns
        status = 1
        try:
            ours.close()
            _enter(netns)
            fd = opener()
            theirs.sendmsg([b"ok"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                      array.array("i", [fd]))])
            status = 0
        except BaseException as exc:               # reported to the parent, then exit
            try:
                theirs.send(f"error: {exc}".encode()[:4000])
            except OSError:
                pass
        finally:
            os._exit(status)
    theirs.close()
    try:
        fds = array.array("i")
        msg, anc, _flags, _addr = ours.recvmsg(4096, socket.CMSG_LEN(fds.itemsize))
        for level, kind, data in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(data[:fds.itemsize])
    finally:
        ours.close()
        os.waitpid(pid, 0)
    if not fds:
        raise DeviceError(f"{what}{' in netns ' + netns if netns else ''}: "
                          f"{msg.decode(errors='replace') or 'helper failed'}")
    return fds[0]


def _enter(netns: str) -> None:
    if netns:
        libc = ctypes.CDLL(None, use_errno=True)
        nsfd = os.open(f"/run/netns/{netns}", os.O_RDONLY | os.O_CLOEXEC)
        if libc.setns(nsfd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns({netns})")
        os.close(nsfd)


def _packet_socket_here(interface: str) -> int:
    """A raw AF_PACKET socket for every protocol, bound to ``interface``, non-blocking."""
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.bind((interface, 0))
    sock.setblocking(False)
    return sock.detach()


def _tap_here(name: str, address: str, flags: int, offload: bool = False) -> int:
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC | os.O_NONBLOCK)
    flags |= IFF_NO_PI | (IFF_VNET_HDR if offload else 0)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), flags))
    commands = [["ip", "link", "set", name, "up"]]
    if offload:
        fcntl.ioctl(fd, TUNSETVNETHDRSZ, struct.pack("i", VNET_HDR_LEN))
        fcntl.ioctl(fd, TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6)
        commands.insert(0, ["ip", "link", "set", name, "gso_max_size", str(GSO_MAX_SIZE)])
    if address:
        commands.insert(0, ["ip", "addr", "add", address, "dev", name])
    for cmd in commands:
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise OSError(f"{' '.join(cmd)}: {done.stderr.strip()}")
    return fd
