"""System descriptions: TOML files loaded and checked the way the Microkit tool checks its own.

Shape (see README): ``[system]``, ``[regions.NAME]``, ``[components.NAME]``, ``[[queues]]``,
``[[channels]]``. Every problem is collected (not just the first) and names the file, the line
and column where it can be located, the key path (``components.fw.maps[0].perms``) and what
would be valid. Warnings (an unused region, an idle component) do not stop a system.

Buffers: a data region is cut into ``size // buffer_size`` buffers. Its *origins* are the
producers of queues on it that consume no queue on it; they must map it ``rw`` (they write the
frames) and start out holding its buffers, split evenly in name order.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import sys
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from harness.problems import DescriptionError, Problem

PAGE = 4096
MAX_REGION = 1 << 30
IDENT = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,62}$")
PROGRAM = re.compile(r"[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_]\w*$")
_UNITS = {"": 1, "b": 1, "k": 1 << 10, "kib": 1 << 10, "m": 1 << 20, "mib": 1 << 20,
          "g": 1 << 30, "gib": 1 << 30}
SIZE_TEXT = re.compile(r"\s*(\d+)\s*([A-Za-z]*)\s*$")

SYSTEM_KEYS = ("name", "description")
REGION_KEYS = ("size", "buffer_size")
MAX_BUFFER = 262144     # libpcap's largest snapshot length: any captured frame fits one buffer
COMPONENT_KEYS = ("program", "priority", "config", "maps", "restart", "max_restarts", "limits",
                  "devices", "wait")
DEVICE_KEYS = ("kind", "path", "mode", "name", "netns", "address", "offload")
NETWORK_DEVICE_KINDS = ("tap", "tun", "afpacket")   # interfaces: read and written, both ways
DEVICE_KINDS = ("file", *NETWORK_DEVICE_KINDS)
DEVICE_MODES = ("r", "w", "rw")
IFNAME = re.compile(r"[A-Za-z0-9_.-]{1,15}$")
NETNS = re.compile(r"[A-Za-z0-9_.-]{1,64}$")
CIDR = re.compile(r"\d{1,3}(\.\d{1,3}){3}/\d{1,2}$")
MAP_KEYS = ("region", "perms")
LIMIT_KEYS = ("memory", "cpu_seconds", "open_files")
QUEUE_KEYS = ("name", "producer", "consumer", "data", "capacity", "kind")
CHANNEL_KEYS = ("name", "ends", "pp")
TOP_KEYS = ("system", "regions", "components", "queues", "channels")
RESTART = ("never", "on-failure", "always")
WAIT = ("block", "poll")     # spin-then-block (the default), or busy-poll (harness.eventloop)
QUEUE_KINDS = ("pair", "diode")


@dataclass(frozen=True)
class RegionSpec:
    name: str
    size: int
    buffer_size: int = 2048


@dataclass(frozen=True)
class MapSpec:
    region: str
    perms: str


@dataclass(frozen=True)
class Limits:
    memory: int | None = None
    cpu_seconds: int | None = None
    open_files: int | None = None


@dataclass(frozen=True)
class DeviceSpec:
    """Something outside the system that the harness opens and grants as a descriptor.

    ``file``: a file opened read-only (``r``) or created/truncated for writing (``w``); a relative
    path is relative to the description's folder. ``tap``: a Linux TAP interface ``name``
    created in network namespace ``netns`` (the current one if empty), its kernel side given
    ``address`` (CIDR) and brought up; frames flow both ways (mode ``rw``). ``tun``: the same
    with a TUN interface, which carries bare IP packets (no Ethernet header, no ARP). A
    component's ``netns`` config value, when set, overrides its network devices' ``netns``.
    ``offload = true`` (tap only): the TAP carries a virtio-net header before each frame and
    the kernel exchanges checksum-offloaded TCP segments of up to 64 KiB with it (GSO/GRO;
    ``drivers.tap:Tap`` handles the header; the regions need ``buffer_size = 65536``)."""

    kind: str
    mode: str
    path: str = ""
    name: str = ""
    netns: str = ""
    address: str = ""
    offload: bool = False


@dataclass(frozen=True)
class ComponentSpec:
    name: str
    program: str
    priority: int = 100
    config: dict = field(default_factory=dict, hash=False, compare=False)
    maps: tuple[MapSpec, ...] = ()
    restart: str = "never"
    max_restarts: int = 3
    limits: Limits = Limits()
    devices: tuple[DeviceSpec, ...] = ()
    wait: str = "block"

    @property
    def module(self) -> str:
        return self.program.partition(":")[0]

    @property
    def classname(self) -> str:
        return self.program.partition(":")[2]

    def perms_for(self, region: str) -> str | None:
        return next((m.perms for m in self.maps if m.region == region), None)


@dataclass(frozen=True)
class QueueSpec:
    name: str
    producer: str
    consumer: str
    data: str
    capacity: int = 1024
    kind: str = "pair"


@dataclass(frozen=True)
class ChannelSpec:
    name: str
    ends: tuple[str, str]
    pp: str | None = None


@dataclass(frozen=True)
class System:
    name: str
    description: str
    path: str
    text: str
    sha256: str
    regions: dict[str, RegionSpec]
    components: dict[str, ComponentSpec]
    queues: dict[str, QueueSpec]
    channels: dict[str, ChannelSpec]
    warnings: tuple[Problem, ...] = ()

    def queues_of(self, component: str) -> list[QueueSpec]:
        return [q for q in self.queues.values() if component in (q.producer, q.consumer)]

    def channels_of(self, component: str) -> list[ChannelSpec]:
        return [c for c in self.channels.values() if component in c.ends]

    def origins(self, region: str) -> list[str]:
        on_region = [q for q in self.queues.values() if q.data == region and q.kind == "pair"]
        consumers = {q.consumer for q in on_region}
        return sorted({q.producer for q in on_region if q.producer not in consumers})

    def initial_buffers(self, region: str) -> dict[str, tuple[int, int]]:
        """Origin -> (first buffer, count): the region's buffers split evenly among origins."""
        origins = self.origins(region)
        if not origins:
            return {}
        spec = self.regions[region]
        nbuf = spec.size // spec.buffer_size
        share, extra = divmod(nbuf, len(origins))
        out, first = {}, 0
        for i, name in enumerate(origins):
            count = share + (extra if i == 0 else 0)
            out[name] = (first, count)
            first += count
        return out


# -- locating keys in the text -------------------------------------------------------------------

class _Locator:
    """Best-effort line/column of a key path in TOML text (tables, arrays of tables, keys)."""

    HEADER = re.compile(r"\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
    KEY = re.compile(r"\s*([A-Za-z0-9_\-\"']+)\s*=")

    def __init__(self, text: str) -> None:
        self.where: dict[str, tuple[int, int]] = {}
        counts: dict[str, int] = {}
        prefix = ""
        for lineno, line in enumerate(text.splitlines(), 1):
            header = self.HEADER.match(line)
            if header:
                name = ".".join(p.strip().strip("\"'") for p in header.group(2).split("."))
                if header.group(1) == "[[":
                    index = counts.get(name, 0)
                    counts[name] = index + 1
                    name = f"{name}[{index}]"
                prefix = name
                self.where.setdefault(prefix, (lineno, line.index("[") + 1))
                continue
            key = self.KEY.match(line)
            if key:
                path = f"{prefix}.{key.group(1).strip(chr(34) + chr(39))}" if prefix else \
                    key.group(1)
                self.where.setdefault(path, (lineno, line.index(key.group(1)) + 1))

    def find(self, key: str) -> tuple[int | None, int | None]:
        while key:
            if key in self.where:
                return self.where[key]
            key = re.sub(r"(\[\d+\]|\.[^.\[]+)$", "", key) if re.search(r"[.\[]", key) else ""
        return None, None


# -- the checker ---------------------------------------------------------------------------------

class _Checker:
    def __init__(self, path: str, text: str) -> None:
        self.path = path
        self.locator = _Locator(text)
        self.problems: list[Problem] = []
        self.warnings: list[Problem] = []

    def error(self, key: str, message: str, hint: str = "") -> None:
        line, col = self.locator.find(key)
        self.problems.append(Problem(self.path, key, message, hint, line, col))

    def warn(self, key: str, message: str, hint: str = "") -> None:
        line, col = self.locator.find(key)
        self.warnings.append(Problem(self.path, key, message, hint, line, col, "warning"))

    def table(self, value, key: str) -> dict:
        if not isinstance(value, dict):
            self.error(key, f"must be a table, got {_kind(value)}")
            return {}
        return value

    def keys(self, table: dict, key: str, valid: Sequence[str]) -> None:
        for k in table:
            if k not in valid:
                self.error(f"{key}.{k}" if key else k, f"unknown key '{k}'",
                           "valid: " + ", ".join(valid))

    def ident(self, value, key: str) -> bool:
        if not isinstance(value, str) or not IDENT.match(value):
            self.error(key, f"must be a name of letters, digits, '_' and '-' starting with a "
                            f"letter (at most 63), got {value!r}")
            return False
        return True

    def integer(self, value, key: str, lo: int, hi: int) -> int | None:
        if isinstance(value, bool) or not isinstance(value, int):
            self.error(key, f"must be an integer {lo}..{hi}, got {_kind(value)} {value!r}")
            return None
        if not lo <= value <= hi:
            self.error(key, f"must be an integer {lo}..{hi}, got {value}")
            return None
        return value

    def size(self, value, key: str, lo: int, hi: int) -> int | None:
        if isinstance(value, str):
            m = SIZE_TEXT.match(value)
            unit = m.group(2).lower() if m else None
            if not m or unit not in _UNITS:
                self.error(key, f"cannot read size {value!r}",
                           "write bytes as an integer or e.g. \"4 MiB\", \"64 KiB\", \"1 GiB\"")
                return None
            value = int(m.group(1)) * _UNITS[unit]
        return self.integer(value, key, lo, hi)

    def choice(self, value, key: str, valid: Sequence[str]) -> str | None:
        if value not in valid:
            self.error(key, f"must be one of {', '.join(repr(v) for v in valid)}, got {value!r}")
            return None
        return value

    def ref(self, value, key: str, names, what: str) -> bool:
        end = key.rsplit(".", 1)[-1]
        if isinstance(value, list) and end in ("producer", "consumer"):
            self.error(key, f"a ring has exactly one {end}, got a list {value!r}",
                       "use one queue per producer/consumer pair")
            return False
        if not isinstance(value, str):
            self.error(key, f"must be the name of a {what}, got {_kind(value)}",
                       f"{what}s: {', '.join(sorted(names)) or 'none defined'}")
            return False
        if value not in names:
            self.error(key, f"no {what} named {value!r}",
                       f"{what}s: {', '.join(sorted(names)) or 'none defined'}")
            return False
        return True


def _kind(value) -> str:
    return {dict: "a table", list: "an array", str: "a string", bool: "a boolean",
            int: "an integer", float: "a float"}.get(type(value), type(value).__name__)


def _regions(ck: _Checker, doc: dict) -> dict[str, RegionSpec]:
    out = {}
    for name, raw in ck.table(doc.get("regions", {}), "regions").items():
        key = f"regions.{name}"
        ck.ident(name, key)
        raw = ck.table(raw, key)
        ck.keys(raw, key, REGION_KEYS)
        if "size" not in raw:
            ck.error(key, "missing 'size'", 'e.g. size = "4 MiB"')
            continue
        size = ck.size(raw["size"], f"{key}.size", 1, MAX_REGION)
        buf = ck.size(raw.get("buffer_size", 2048), f"{key}.buffer_size", 64, MAX_BUFFER)
        if buf is not None and buf & (buf - 1):
            ck.error(f"{key}.buffer_size", f"must be a power of two, got {buf}")
            buf = None
        if size is None or buf is None:
            continue
        size = (size + PAGE - 1) // PAGE * PAGE
        if buf > size:
            ck.error(f"{key}.buffer_size", f"buffer size {buf} exceeds the region's {size} bytes")
            continue
        out[name] = RegionSpec(name, size, buf)
    return out


def _components(ck: _Checker, doc: dict, regions: dict,
                defined_regions: set) -> dict[str, ComponentSpec]:
    """Valid components only: one with any error is reported and left out, so that later
    checks do not repeat its problem in other words."""
    out = {}
    for name, raw in ck.table(doc.get("components", {}), "components").items():
        key = f"components.{name}"
        ok = ck.ident(name, key)
        raw = ck.table(raw, key)
        ck.keys(raw, key, COMPONENT_KEYS)
        program = raw.get("program")
        if program is None:
            ck.error(key, "missing 'program'", 'e.g. program = "drivers.synthetic:Source"')
            ok = False
        elif not isinstance(program, str) or not PROGRAM.match(program):
            ck.error(f"{key}.program", f"must be \"module.path:ClassName\", got {program!r}")
            ok = False
        elif not _module_exists(program.partition(":")[0], program_paths(ck.path)):
            ck.error(f"{key}.program", f"module '{program.partition(':')[0]}' not found",
                     "it must be importable from the project, the working directory or the "
                     "description's folder")
            ok = False
        priority = ck.integer(raw.get("priority", 100), f"{key}.priority", 0, 254)
        config = raw.get("config", {})
        if not isinstance(config, dict):
            ck.error(f"{key}.config", f"must be a table, got {_kind(config)}")
            config = {}
        maps = []
        raw_maps = raw.get("maps", [])
        if not isinstance(raw_maps, list):
            ck.error(f"{key}.maps", f"must be an array of {{ region, perms }}, got "
                                    f"{_kind(raw_maps)}")
            raw_maps, ok = [], False
        seen = set()
        for i, m in enumerate(raw_maps):
            mkey = f"{key}.maps[{i}]"
            m = ck.table(m, mkey)
            ck.keys(m, mkey, MAP_KEYS)
            region, perms = m.get("region"), m.get("perms", "r")
            good = ck.ref(region, f"{mkey}.region", defined_regions, "region")
            if perms == "w":
                ck.error(f"{mkey}.perms", "write-only mappings are not supported", "use 'rw'")
                good = False
            elif isinstance(perms, str) and "x" in perms:
                ck.error(f"{mkey}.perms", "executable mappings are not supported",
                         "valid: 'r', 'rw'")
                good = False
            elif perms not in ("r", "rw"):
                ck.error(f"{mkey}.perms", f"must be 'r' or 'rw', got {perms!r}")
                good = False
            if good and region in seen:
                ck.error(f"{mkey}.region", f"region '{region}' is mapped twice by '{name}'")
                good = False
            if good:
                seen.add(region)
                maps.append(MapSpec(region, perms))
            ok &= good and region in regions
        restart = ck.choice(raw.get("restart", "never"), f"{key}.restart", RESTART)
        max_restarts = ck.integer(raw.get("max_restarts", 3), f"{key}.max_restarts", 0, 100)
        limits = _limits(ck, raw.get("limits", {}), f"{key}.limits")
        devices = _devices(ck, _netns_from_config(raw, config), f"{key}.devices")
        wait = ck.choice(raw.get("wait", "block"), f"{key}.wait", WAIT)
        if ok and None not in (priority, restart, max_restarts, limits, devices, wait):
            out[name] = ComponentSpec(name, program, priority, config, tuple(maps), restart,
                                      max_restarts, limits, devices, wait)
    return out


def _netns_from_config(raw: dict, config) -> object:
    """A component's ``netns`` config value names the namespace of its network devices, so
    ``--set nic.netns=NAME`` moves them (the value in a device entry is the default)."""
    devices = raw.get("devices", [])
    netns = config.get("netns") if isinstance(config, dict) else None
    if not isinstance(netns, str) or not isinstance(devices, list):
        return devices
    return [{**dev, "netns": netns} if isinstance(dev, dict)
            and dev.get("kind") in NETWORK_DEVICE_KINDS else dev for dev in devices]


def _devices(ck: _Checker, raw, key: str) -> tuple[DeviceSpec, ...] | None:
    if not isinstance(raw, list):
        ck.error(key, f"must be an array of {{ kind, ... }}, got {_kind(raw)}")
        return None
    out, good = [], True
    for i, dev in enumerate(raw):
        dkey = f"{key}[{i}]"
        dev = ck.table(dev, dkey)
        ck.keys(dev, dkey, DEVICE_KEYS)
        kind = ck.choice(dev.get("kind"), f"{dkey}.kind", DEVICE_KINDS)
        if kind in NETWORK_DEVICE_KINDS:
            spec = _tap_device(ck, dev, dkey, kind)
        elif kind == "file":
            spec = _file_device(ck, dev, dkey)
        else:
            spec = None
        if spec is None:
            good = False
        else:
            out.append(spec)
    return tuple(out) if good else None


def _file_device(ck: _Checker, dev: dict, dkey: str) -> DeviceSpec | None:
    mode = ck.choice(dev.get("mode", "r"), f"{dkey}.mode", ("r", "w"))
    path = dev.get("path")
    if not isinstance(path, str) or not path:
        ck.error(f"{dkey}.path", f"a file device needs a path, got {path!r}")
        return None
    if mode == "r":
        full = Path(ck.path).resolve().parent / path
        if not full.is_file():
            ck.error(f"{dkey}.path", f"no such file: {full}")
            return None
    return DeviceSpec("file", mode, path) if mode else None


def _tap_device(ck: _Checker, dev: dict, dkey: str, kind: str) -> DeviceSpec | None:
    """A TAP interface to create, or (``afpacket``) an existing interface to bind to."""
    good = ck.choice(dev.get("mode", "rw"), f"{dkey}.mode", ("rw",)) is not None
    name, netns, address = dev.get("name"), dev.get("netns", ""), dev.get("address", "")
    if not isinstance(name, str) or not IFNAME.match(name):
        ck.error(f"{dkey}.name", f"an interface name of 1..15 letters, digits, '_', '.', '-', "
                                 f"got {name!r}")
        good = False
    if not isinstance(netns, str) or (netns and not NETNS.match(netns)):
        ck.error(f"{dkey}.netns", f"a network namespace name, got {netns!r}")
        good = False
    elif netns and not Path("/run/netns", netns).exists():
        ck.error(f"{dkey}.netns", f"no network namespace '{netns}'",
                 f"create it with: ip netns add {netns}")
        good = False
    if address and kind == "afpacket":
        ck.error(f"{dkey}.address", "an afpacket device binds to an existing interface; "
                                    "configure its address with iproute2")
        good = False
    elif address and (not isinstance(address, str) or not CIDR.match(address)):
        ck.error(f"{dkey}.address", f"an IPv4 address with prefix (10.77.0.1/24), got "
                                    f"{address!r}")
        good = False
    offload = dev.get("offload", False)
    if not isinstance(offload, bool) or (offload and kind != "tap"):
        ck.error(f"{dkey}.offload", f"true or false, and only for a tap device, got {offload!r}")
        good = False
    return DeviceSpec(kind, "rw", "", name, netns, address, offload) if good else None


def _limits(ck: _Checker, raw, key: str) -> Limits | None:
    raw = ck.table(raw, key)
    ck.keys(raw, key, LIMIT_KEYS)
    memory = ck.size(raw["memory"], f"{key}.memory", 64 << 20, 1 << 40) \
        if "memory" in raw else None
    cpu = ck.integer(raw["cpu_seconds"], f"{key}.cpu_seconds", 1, 10**7) \
        if "cpu_seconds" in raw else None
    files = ck.integer(raw["open_files"], f"{key}.open_files", 16, 65536) \
        if "open_files" in raw else None
    if any(k in raw and v is None for k, v in
           (("memory", memory), ("cpu_seconds", cpu), ("open_files", files))):
        return None
    return Limits(memory, cpu, files)


def _module_exists(module: str, paths: Sequence[str] = ()) -> bool:
    """Whether ``module`` can be found where a component will look for it (no import of the
    module itself; its parent packages are imported)."""
    added = [p for p in paths if p not in sys.path]
    sys.path[:0] = added
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False
    finally:
        for p in added:
            sys.path.remove(p)


def program_paths(path: str) -> list[str]:
    """Where a component's program is looked up: the description's folder, the working
    directory, then the project itself."""
    root = str(Path(__file__).resolve().parent.parent)
    return list(dict.fromkeys([str(Path(path).resolve().parent), os.getcwd(), root]))


def _names(doc: dict, section: str) -> list[str]:
    table = doc.get(section, {})
    return list(table) if isinstance(table, dict) else []


def _array(ck: _Checker, doc: dict, key: str) -> list:
    value = doc.get(key, [])
    if not isinstance(value, list):
        ck.error(key, f"must be an array of tables ([[{key}]]), got {_kind(value)}")
        return []
    return value


def _queues(ck: _Checker, doc: dict, regions: dict, defined_regions: set, components: dict,
            all_components: set, names: dict) -> dict[str, QueueSpec]:
    out: dict[str, QueueSpec] = {}
    for i, raw in enumerate(_array(ck, doc, "queues")):
        key = f"queues[{i}]"
        raw = ck.table(raw, key)
        ck.keys(raw, key, QUEUE_KEYS)
        missing = [k for k in ("name", "producer", "consumer", "data") if k not in raw]
        if missing:
            ck.error(key, f"missing {', '.join(repr(m) for m in missing)}")
            continue
        name = raw["name"]
        if not ck.ident(name, f"{key}.name"):
            continue
        if name in out:
            ck.error(f"{key}.name", f"ring '{name}' already has producer '{out[name].producer}' "
                                    f"and consumer '{out[name].consumer}' (queues[{names[name]}])",
                     "a ring has exactly one producer and one consumer; name this queue "
                     "differently")
            continue
        if name in names:
            ck.error(f"{key}.name", f"name '{name}' is already used by another queue or channel")
            continue
        names[name] = i
        good = ck.ref(raw["producer"], f"{key}.producer", all_components, "component")
        good &= ck.ref(raw["consumer"], f"{key}.consumer", all_components, "component")
        good &= ck.ref(raw["data"], f"{key}.data", defined_regions, "region")
        capacity = ck.integer(raw.get("capacity", 1024), f"{key}.capacity", 2, 1 << 20)
        if capacity is not None and capacity & (capacity - 1):
            ck.error(f"{key}.capacity", f"must be a power of two, got {capacity}")
            capacity = None
        kind = ck.choice(raw.get("kind", "pair"), f"{key}.kind", QUEUE_KINDS)
        if not good or capacity is None or kind is None or raw["data"] not in regions:
            continue
        if raw["producer"] == raw["consumer"]:
            ck.error(f"{key}.consumer", f"producer and consumer are both '{raw['producer']}'",
                     "a queue joins two different components")
            continue
        q = QueueSpec(name, raw["producer"], raw["consumer"], raw["data"], capacity, kind)
        for end in ("producer", "consumer"):
            comp = components.get(getattr(q, end))
            if comp is not None and comp.perms_for(q.data) is None:
                ck.error(f"{key}.{end}", f"'{comp.name}' does not map the queue's data region "
                                         f"'{q.data}'",
                         f"add {{ region = \"{q.data}\", perms = \"r\" }} to "
                         f"components.{comp.name}.maps")
        out[name] = q
    return out


def _channels(ck: _Checker, doc: dict, components: dict, all_components: set,
              names: dict) -> dict[str, ChannelSpec]:
    out: dict[str, ChannelSpec] = {}
    for i, raw in enumerate(_array(ck, doc, "channels")):
        key = f"channels[{i}]"
        raw = ck.table(raw, key)
        ck.keys(raw, key, CHANNEL_KEYS)
        if "name" not in raw or "ends" not in raw:
            ck.error(key, "missing 'name' or 'ends'", 'e.g. name = "ctl", ends = ["a", "b"]')
            continue
        name, ends = raw["name"], raw["ends"]
        if not ck.ident(name, f"{key}.name"):
            continue
        if name in names:
            ck.error(f"{key}.name", f"name '{name}' is already used by another queue or channel")
            continue
        names[name] = i
        if not (isinstance(ends, list) and len(ends) == 2 and ends[0] != ends[1]):
            ck.error(f"{key}.ends", f"must list exactly two different components, got {ends!r}")
            continue
        if not all([ck.ref(e, f"{key}.ends[{j}]", all_components, "component")
                    for j, e in enumerate(ends)]):
            continue
        pp = raw.get("pp")
        if pp is not None:
            if pp not in ends:
                ck.error(f"{key}.pp", f"must be one of the channel's ends {ends}, got {pp!r}")
                continue
            callee = ends[1] if pp == ends[0] else ends[0]
            if pp in components and callee in components:
                lo, hi = components[pp].priority, components[callee].priority
                if hi <= lo:
                    ck.error(f"{key}.pp", f"'{pp}' (priority {lo}) may not call '{callee}' "
                                          f"(priority {hi})",
                             "a protected call goes to a strictly higher priority")
                    continue
        out[name] = ChannelSpec(name, (ends[0], ends[1]), pp)
    return out


def _whole(ck: _Checker, regions, components, queues, channels) -> None:
    for region in regions:
        if not any(c.perms_for(region) for c in components.values()):
            ck.warn(f"regions.{region}", f"region '{region}' is not mapped by any component")
        pairs = [q for q in queues.values() if q.data == region and q.kind == "pair"]
        if pairs:
            origins = [q.producer for q in pairs
                       if q.producer not in {x.consumer for x in pairs}]
            if not origins:
                ck.error(f"regions.{region}", f"no component originates buffers of '{region}'",
                         "one producer of a queue on it must consume no queue on it")
            for name in sorted(set(origins)):
                if components[name].perms_for(region) != "rw":
                    ck.error(f"components.{name}.maps",
                             f"'{name}' originates frames in '{region}' and must map it 'rw'")
    _check_diodes(ck, regions, components, queues)
    for name in components:
        if not (components[name].maps or any(name in (q.producer, q.consumer)
                                             for q in queues.values())
                or any(name in c.ends for c in channels.values())):
            ck.warn(f"components.{name}", f"component '{name}' has no regions, queues or "
                                          "channels")
    _check_call_cycles(ck, components, channels)


def _check_diodes(ck: _Checker, regions, components, queues) -> None:
    """A diode owns its data region outright: the producer writes it, the consumer only reads
    it, and no other queue uses it (buffers are reused by position, never returned)."""
    keys = {name: f"queues[{i}]" for i, name in enumerate(queues)}
    for q in queues.values():
        if q.kind != "diode":
            continue
        key = keys[q.name]
        others = [x.name for x in queues.values() if x.data == q.data and x.name != q.name]
        if others:
            ck.error(f"{key}.data", f"the diode's data region '{q.data}' is also used by "
                                    f"{', '.join(others)}", "give the diode a region of its own")
        if components[q.producer].perms_for(q.data) != "rw":
            ck.error(f"{key}.producer", f"'{q.producer}' writes the diode's frames and must map "
                                        f"'{q.data}' 'rw'")
        if components[q.consumer].perms_for(q.data) != "r":
            ck.error(f"{key}.consumer", f"'{q.consumer}' must map the diode's region "
                                        f"'{q.data}' 'r' (a writable mapping is a way back)")
        region = regions[q.data]
        if q.capacity * region.buffer_size > region.size:
            ck.error(f"{key}.capacity", f"{q.capacity} buffers of {region.buffer_size} B do not "
                                        f"fit in '{q.data}' ({region.size} B)")


def _check_call_cycles(ck: _Checker, components, channels) -> None:
    edges: dict[str, list[tuple[str, str]]] = {}
    for c in channels.values():
        if c.pp:
            callee = c.ends[1] if c.pp == c.ends[0] else c.ends[0]
            edges.setdefault(c.pp, []).append((callee, c.name))
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt, _ch in edges.get(node, []):
            if state.get(nxt) == 1:
                ck.error("channels", "protected calls form a cycle: " + " -> ".join(path + [nxt]))
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])


def parse_override(text: str) -> tuple[str, list[str], object]:
    """``COMPONENT.KEY=VALUE`` (KEY may be dotted) -> (component, key path, value).

    VALUE is read as a TOML value when it is one (numbers, booleans, quoted strings, arrays,
    inline tables), else taken as a plain string."""
    target, sep, raw = text.partition("=")
    parts = target.strip().split(".")
    if not sep or len(parts) < 2 or not all(parts):
        raise ValueError(f"--set {text!r}: expected COMPONENT.KEY=VALUE")
    try:
        value = raw if "\n" in raw else tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return parts[0], parts[1:], value


def _apply_overrides(ck: _Checker, doc: dict, overrides: Sequence[str]) -> None:
    components = doc.get("components") if isinstance(doc.get("components"), dict) else {}
    for text in overrides:
        try:
            comp, keys, value = parse_override(text)
        except ValueError as exc:
            ck.problems.append(Problem(ck.path, "--set", str(exc)))
            continue
        if comp not in components or not isinstance(components[comp], dict):
            ck.problems.append(Problem(ck.path, "--set", f"{text!r}: no component '{comp}'",
                                       f"components: {', '.join(sorted(components)) or 'none'}"))
            continue
        if keys == ["wait"]:            # the component's own key, not one of its config's
            components[comp]["wait"] = value
            continue
        table = components[comp].setdefault("config", {})
        for k in keys[:-1]:
            table = table.setdefault(k, {}) if isinstance(table, dict) else None
            if table is None:
                break
        if not isinstance(table, dict):
            ck.problems.append(Problem(ck.path, "--set", f"{text!r}: {'.'.join(keys[:-1])} "
                                                         "is not a table"))
            continue
        table[keys[-1]] = value


def load(path: str | os.PathLike, overrides: Sequence[str] = (),
         patch: Callable[[dict], None] | None = None) -> System:
    """Load and check a description. ``overrides`` are ``--set C.K=V`` texts; ``patch`` may
    edit the parsed document before it is checked (a tool fitting a user's system to its job,
    e.g. ``capnet replay --system`` granting its capture file to the system's replay)."""
    path = str(path)
    try:
        data = Path(path).read_bytes()
        text = data.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DescriptionError([Problem(path, "", f"cannot read the description: {exc}")]) \
            from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"\(at line (\d+), column (\d+)\)", str(exc))
        line, col = (int(m.group(1)), int(m.group(2))) if m else (None, None)
        message = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(exc))
        raise DescriptionError([Problem(path, "", f"not valid TOML: {message}",
                                        line=line, column=col)]) from None
    ck = _Checker(path, text)
    _apply_overrides(ck, doc, overrides)
    if patch is not None:
        patch(doc)
    ck.keys(doc, "", TOP_KEYS)
    system = ck.table(doc.get("system", {}), "system")
    ck.keys(system, "system", SYSTEM_KEYS)
    if "name" not in system:
        ck.error("system", "missing 'name'", 'e.g. [system] name = "firewall"')
    else:
        ck.ident(system["name"], "system.name")
    description = system.get("description", "")
    regions = _regions(ck, doc)
    defined_regions = set(_names(doc, "regions"))
    components = _components(ck, doc, regions, defined_regions)
    all_components = set(_names(doc, "components"))
    names: dict[str, int] = {}
    queues = _queues(ck, doc, regions, defined_regions, components, all_components, names)
    channels = _channels(ck, doc, components, all_components, names)
    if not all_components:
        ck.error("components", "no components defined",
                 "add at least one [components.NAME] with a program")
    if not ck.problems:
        _whole(ck, regions, components, queues, channels)
    if ck.problems:
        raise DescriptionError(ck.problems)
    return System(str(system["name"]), str(description), path, text,
                  hashlib.sha256(data).hexdigest(), regions, components, queues, channels,
                  tuple(ck.warnings))
