"""The component API, mirroring seL4 Microkit: entry points, channels, protected calls, timers.

A component is a subclass of `Component` living alone in its own process (protection domain).
The runtime calls one entry point at a time:

- ``init()`` once, after every grant is in place and the process is confined;
- ``notified(channel)`` when a peer notified ``channel`` (a queue's channel is named after the
  queue; notifications coalesce, as on seL4), or when a TAP device has frames to read (the
  channel is named after the interface, ``channel.kind == "device"``);
- ``protected(channel, msg)`` for a synchronous call from a lower-priority component, or from the
  operator through the control socket (``channel.name == "control"``); its return value is the
  reply;
- ``timeout(token)`` when a timer set with ``set_timer`` expires;
- ``stop()`` once, during an orderly shutdown, before the final counters are taken.

Services: ``self.queues[name]`` (``shmring.QueueEnd``), ``self.regions[name]`` (``shmring.Region``),
``self.pools[region]`` (free buffers of regions this component originates), ``self.devices``
(descriptors the harness opened for it: files, later TAP and AF_PACKET), ``self.config``,
``self.now()`` (monotonic ns), ``self.ppcall(channel, msg)``, ``channel.notify()`` (deferred until
the entry point returns, like ``microkit_notify``), ``self.set_timer(deadline_ns, token)``,
``self.count(name, n)`` / ``self.drop(reason, n)`` for the frame counters that prove conservation
(in = out + dropped), and ``self.finish()`` to declare that this component will produce no more
input (end of input: the supervisor then stops the system in order).

Programs must import what they need at module level: once confined, a component cannot open
files, so a lazy import inside an entry point fails.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harness.eventloop import Runtime


@dataclass(frozen=True)
class Device:
    """A granted device: the descriptor the harness opened for this component."""

    kind: str
    mode: str
    path: str
    fd: int
    name: str = ""          # a tap's interface name: also the name of its channel


class ProtectedCallError(Exception):
    """A protected call could not be made or the callee failed to answer."""


class Channel:
    """A local, unforgeable name for a communication path granted to this component."""

    __slots__ = ("name", "kind", "peer", "_runtime", "notify_fd", "call_sock")

    def __init__(self, name: str, kind: str, peer: str, runtime: Runtime | None = None,
                 notify_fd: int | None = None, call_sock: Any = None) -> None:
        self.name = name
        self.kind = kind            # "queue", "channel" or "control"
        self.peer = peer
        self._runtime = runtime
        self.notify_fd = notify_fd
        self.call_sock = call_sock

    def notify(self) -> None:
        """Wake the peer once this entry point returns (notifications coalesce)."""
        if self._runtime is None:
            raise ProtectedCallError(f"channel '{self.name}' is not bound to a running component")
        self._runtime.defer_notify(self)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Channel):
            return self.name == other.name
        if isinstance(other, str):
            return self.name == other
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.name)

    def __repr__(self) -> str:
        return f"Channel({self.name!r}, {self.kind}, peer={self.peer!r})"


class Component:
    """Base class of every capnet component. Override the entry points you need."""

    name: str
    config: dict
    priority: int
    incarnation: int                 # 0 at first launch, n after the n-th restart
    regions: dict
    queues: dict
    channels: dict
    pools: dict
    devices: list[Device]
    counters: dict[str, int]
    _runtime: Runtime

    # -- entry points -------------------------------------------------------------------------
    def init(self) -> None:
        """Called once, after every grant is in place."""

    def notified(self, channel: Channel) -> None:
        """A peer notified ``channel``."""

    def protected(self, channel: Channel, msg: object) -> object:
        """A synchronous call; the return value (msgpack-able) is the reply."""
        raise ProtectedCallError(f"component '{self.name}' offers no protected calls")

    def timeout(self, token: object) -> None:
        """A timer set with ``set_timer`` expired."""

    def stop(self) -> None:
        """Orderly shutdown: the last entry point before the final counters are taken."""

    # -- services -----------------------------------------------------------------------------
    def now(self) -> int:
        """Monotonic time in nanoseconds."""
        return time.monotonic_ns()

    def ppcall(self, channel: Channel | str, msg: object) -> object:
        """Call the (strictly higher priority) component at the other end of ``channel``."""
        return self._runtime.ppcall(channel, msg)

    def set_timer(self, deadline_ns: int, token: object = None) -> None:
        """Call ``timeout(token)`` at ``deadline_ns`` (monotonic); replaces a timer with that token."""
        self._runtime.set_timer(deadline_ns, token)

    def cancel_timer(self, token: object = None) -> None:
        self._runtime.cancel_timer(token)

    def pause_device(self, name: str) -> None:
        """Stop being woken when network device ``name`` is readable (say, no buffer to read
        into: a level-triggered descriptor would otherwise wake the component every turn)."""
        self._runtime.watch_device(name, False)

    def resume_device(self, name: str) -> None:
        """Be woken again when network device ``name`` is readable."""
        self._runtime.watch_device(name, True)

    def finish(self) -> None:
        """Declare end of input: this component will produce nothing more."""
        self._runtime.finish()

    def count(self, name: str, n: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + n

    def drop(self, reason: str, n: int = 1) -> None:
        """Count ``n`` frames dropped for ``reason`` (they still must be returned to their owner)."""
        key = "dropped." + reason
        self.counters[key] = self.counters.get(key, 0) + n

    def stats(self) -> dict:
        """Extra statistics for the operator; counters and queue stats are added by the runtime."""
        return {}
