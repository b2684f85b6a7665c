"""The control socket: how CLI commands reach a running system.

A SOCK_SEQPACKET Unix socket, owner-only (mode 0600 inside a 0700 directory), and every client's
credentials are checked (SO_PEERCRED: same user or root). One request per connection, msgpack:
``{"op": "stats"}``, ``{"op": "call", "component": NAME, "msg": ...}`` (a protected call into a
component's ``protected(channel, msg)`` with ``channel.name == "control"``), ``{"op": "stop"}``.
"""

from __future__ import annotations

import os
import socket
import stat
import struct
from pathlib import Path

from harness import messages

CLIENT_TIMEOUT_S = 10.0


class ControlError(Exception):
    """The control socket could not be opened or reached."""


def default_path(system_name: str) -> str:
    if os.geteuid() == 0:
        base = Path("/run/capnet")
    elif os.environ.get("XDG_RUNTIME_DIR"):
        base = Path(os.environ["XDG_RUNTIME_DIR"]) / "capnet"
    else:
        base = Path(f"/tmp/capnet-{os.getuid()}")
    return str(base / f"{system_name}.sock")


class ControlServer:
    def __init__(self, path: str | None, system_name: str) -> None:
        self.path = path or default_path(system_name)
        self.sock: socket.socket | None = None

    def check_free(self) -> None:
        """Fail early (before anything starts) if another system holds this path."""
        if os.path.exists(self.path):
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            try:
                probe.connect(self.path)
            except OSError:
                return
            finally:
                probe.close()
            raise ControlError(f"{self.path}: a system is already running there "
                               "(stop it, or choose another path with --control)")

    def open(self) -> None:
        self.check_free()
        directory = Path(self.path).parent
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = directory.stat()
        if info.st_uid != os.geteuid() or stat.S_IMODE(info.st_mode) & 0o077:
            raise ControlError(f"{directory}: must be owned by you and not accessible to others")
        if os.path.exists(self.path):
            os.unlink(self.path)        # left behind by a system that died
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        old = os.umask(0o177)
        try:
            sock.bind(self.path)
        finally:
            os.umask(old)
        os.chmod(self.path, 0o600)
        sock.listen(8)
        sock.setblocking(False)
        self.sock = sock

    def serve_one(self, supervisor) -> None:
        try:
            conn, _ = self.sock.accept()
        except BlockingIOError:
            return
        with conn:
            conn.settimeout(CLIENT_TIMEOUT_S)
            try:
                pid, uid, gid = struct.unpack("3i", conn.getsockopt(
                    socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
                if uid not in (0, os.geteuid()):
                    messages.send(conn, {"error": "permission denied"})
                    return
                request = messages.recv(conn)
                messages.send(conn, self._answer(supervisor, request))
            except (OSError, EOFError, messages.MessageError):
                return

    @staticmethod
    def _answer(supervisor, request) -> dict:
        if not isinstance(request, dict):
            return {"error": "a request is a map with an 'op' key"}
        op = request.get("op")
        if op == "stats":
            return {"ok": {"system": supervisor.system.name, "components": supervisor.stats()}}
        if op == "call":
            return supervisor.call(str(request.get("component")), request.get("msg"))
        if op == "stop":
            supervisor.request_stop("stopped through the control socket")
            return {"ok": "stopping"}
        return {"error": f"unknown op {op!r} (valid: stats, call, stop)"}

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass


def request(path: str, obj: dict) -> dict:
    """One request to a running system's control socket."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
    sock.settimeout(CLIENT_TIMEOUT_S + 5)
    try:
        sock.connect(path)
        messages.send(sock, obj)
        reply = messages.recv(sock)
    except FileNotFoundError:
        raise ControlError(f"{path}: no running system (no control socket)") from None
    except (ConnectionRefusedError, EOFError, OSError) as exc:
        raise ControlError(f"{path}: cannot reach the system ({exc})") from None
    finally:
        sock.close()
    return reply if isinstance(reply, dict) else {"error": "malformed reply"}
