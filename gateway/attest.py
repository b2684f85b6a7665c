"""Attestation: what the harness measures, the signed report's format, and its verification.

A verifier sends a fresh nonce; the attester (``gateway.attester``) answers with a report signed
with Ed25519 over the nonce and the *measurement* of the running system. The harness (trusted)
measures before any component starts and hands the measurement to the attester as its config;
the attester only adds the nonce and signs. It never sees the WireGuard private key.

**The measurement** (``measure(system)``):

- ``description_sha256``: SHA-256 of the system description's bytes, exactly as read.
- per component: its name, program (``module:Class``), priority, the SHA-256 of its *program
  code*, the SHA-256 of its ``config`` (canonical JSON: sorted keys, no spaces) and its
  capability table (``harness.captable.capabilities``: regions + perms, queues +
  roles and peers, channels + who may call whom, devices + modes), as ``capnet check`` prints it.
- *program code* of a component: the set of source files made of (1) its program's module and
  every module it imports, transitively, found statically (every ``import``/``from``
  statement that starts a line, anywhere in the file: lazy ones inside functions too; every
  parent package's ``__init__.py``), and (2) the same closure of ``harness.pd``, the bootstrap
  every component runs on (the runtime, sandbox, ``shmring``). Modules are resolved where a
  component's interpreter finds them (the description's folder, the working directory, the
  project); a file is measured when it lies in the description's folder (labelled
  ``system:PATH``), the project (``project:PATH``) or the working directory (``cwd:PATH``),
  labelled by the first of these that holds it, so that a copy of a system elsewhere measures
  the same. The standard library and installed third-party packages (numpy, msgpack, PyNaCl)
  belong to the platform and are not measured. The code digest is the SHA-256 of the sorted
  lines ``LABEL<TAB>SHA256-HEX<LF>``; each file's own digest is in the report too, so that a
  verifier names the file that differs.
- ``wireguard``: for each file device (mode ``r``) that is a ``wg``-format configuration with an
  ``[Interface] PrivateKey``, the component, the device's path and the public key, derived here
  (X25519 base-point multiplication) by the harness. The private key stays with the key
  component; the attester holds only the public key.
- Not measured: the contents of other devices (rule files, captures: data, not code), the
  platform (kernel, interpreter, installed packages). Files are measured when ``capnet attest``
  starts the system, just before the components import them.

**The report** (binary, big-endian; ``construct`` definitions ``REPORT``, ``HEADER``,
``MEASUREMENT``): ``b"CNATTEST"``, version 1, the nonce (1-byte length, 16..64 bytes), the
signer's Ed25519 public key (32 bytes), the measurement (4-byte length, then ``MEASUREMENT``:
strings are length-prefixed UTF-8, digests 32 bytes, arrays count-prefixed), and a 64-byte
Ed25519 signature over every byte before it. Nothing may follow.

**Keys** (``capnet attest --keygen DIR``): ``DIR/attest.key`` holds the 32-byte Ed25519 seed,
``DIR/attest.pub`` the 32-byte public key, each as one line of standard base64 (44 characters,
the format of ``wg genkey``/``wg pubkey``); the key file is created mode 0600.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
import sysconfig
from dataclasses import dataclass, field
from importlib.machinery import PathFinder
from pathlib import Path

from construct import (
    Bytes,
    Const,
    ConstructError,
    GreedyBytes,
    Int8ub,
    Int16ub,
    Int32ub,
    PascalString,
    Prefixed,
    PrefixedArray,
    Struct,
    Terminated,
)
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from harness.captable import capabilities
from harness.description import System, program_paths

MAGIC = b"CNATTEST"
VERSION = 1
NONCE_MIN, NONCE_MAX = 16, 64
ATTESTER_PROGRAM = "gateway.attester:Attester"
RUNTIME_MODULE = "harness.pd"          # every component's bootstrap: measured with each one
PROJECT_ROOT = Path(__file__).resolve().parent.parent

# -- the report's format --------------------------------------------------------------------------

Digest = Bytes(32)
Text8 = PascalString(Int8ub, "utf8")
Text16 = PascalString(Int16ub, "utf8")

CAPABILITY = Struct("kind" / Text8, "name" / Text8, "detail" / Text16)
COMPONENT = Struct(
    "name" / Text8,
    "program" / Text16,
    "priority" / Int8ub,
    "code" / Digest,
    "config" / Digest,                                   # SHA-256 of its canonical config
    "files" / PrefixedArray(Int16ub, Int16ub),          # indices into MEASUREMENT.files
    "capabilities" / PrefixedArray(Int16ub, CAPABILITY),
)
SOURCE_FILE = Struct("path" / Text16, "sha256" / Digest)
WG_KEY = Struct("component" / Text8, "device" / Text16, "public_key" / Bytes(32))
MEASUREMENT = Struct(
    "system" / Text8,
    "description_sha256" / Digest,
    "components" / PrefixedArray(Int16ub, COMPONENT),
    "files" / PrefixedArray(Int16ub, SOURCE_FILE),
    "wireguard" / PrefixedArray(Int8ub, WG_KEY),
    Terminated,
)
HEADER = Struct(
    "magic" / Const(MAGIC),
    "version" / Const(VERSION, Int8ub),
    "nonce" / Prefixed(Int8ub, GreedyBytes),
    "signer" / Bytes(32),
)
REPORT = Struct(
    "header" / HEADER,
    "measurement" / Prefixed(Int32ub, GreedyBytes),
    "signature" / Bytes(64),
    Terminated,
)


class AttestError(Exception):
    """Bad input to attestation: a key, a nonce or a system that cannot be measured."""


# -- keys ----------------------------------------------------------------------------------------

def read_key(text: str | bytes, what: str) -> bytes:
    """A 32-byte key from one line of base64 (or 64 hex digits)."""
    if isinstance(text, bytes):
        text = text.decode("ascii", "replace")
    text = text.strip()
    try:
        raw = bytes.fromhex(text) if len(text) == 64 else base64.b64decode(text, validate=True)
    except (ValueError, binascii.Error):
        raw = b""
    if len(raw) != 32:
        raise AttestError(f"{what}: not a 32-byte key in base64 (44 characters) or hex")
    return raw


def keygen(directory: str | os.PathLike) -> tuple[Path, Path]:
    """Write a fresh Ed25519 key pair: ``attest.key`` (0600) and ``attest.pub``."""
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    key, pub = folder / "attest.key", folder / "attest.pub"
    signing = SigningKey.generate()
    fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(base64.b64encode(bytes(signing)).decode() + "\n")
    pub.write_text(base64.b64encode(bytes(signing.verify_key)).decode() + "\n")
    return key, pub


def parse_nonce(text: str) -> bytes:
    try:
        nonce = bytes.fromhex(text)
    except ValueError:
        raise AttestError(f"nonce {text!r}: not hexadecimal") from None
    check_nonce(nonce)
    return nonce


def check_nonce(nonce: bytes) -> None:
    if not NONCE_MIN <= len(nonce) <= NONCE_MAX:
        raise AttestError(f"a nonce is {NONCE_MIN}..{NONCE_MAX} bytes "
                          f"({2 * NONCE_MIN}..{2 * NONCE_MAX} hex digits), got {len(nonce)}")


# -- measuring program code ----------------------------------------------------------------------

def _platform_dirs() -> tuple[str, ...]:
    keys = ("stdlib", "platstdlib", "purelib", "platlib")
    return tuple(sorted({os.path.realpath(sysconfig.get_paths()[k]) for k in keys}))


class CodeScanner:
    """Resolves modules as a component's interpreter would and collects their source files."""

    def __init__(self, system_path: str) -> None:
        self.search = program_paths(system_path)
        # labels name files independently of where the verifier's copy lives: the
        # description's folder first, then the project, then the working directory
        self.labels = [(os.path.realpath(Path(system_path).resolve().parent), "system"),
                       (os.path.realpath(PROJECT_ROOT), "project"),
                       (os.path.realpath(os.getcwd()), "cwd")]
        self.platform = _platform_dirs()
        self.files: dict[str, str] = {}            # label/path -> sha256 hex
        self._closures: dict[str, frozenset[str]] = {}
        self._specs: dict[str, str | None] = {}

    def _label(self, origin: str) -> str | None:
        real = os.path.realpath(origin)
        if any(real == d or real.startswith(d + os.sep) for d in self.platform):
            return None
        for root, label in self.labels:
            if real.startswith(root + os.sep):
                return f"{label}:{os.path.relpath(real, root)}"
        return None

    def _origin(self, module: str) -> str | None:
        """The source file of ``module`` (a package's ``__init__.py``), or None."""
        if module in self._specs:
            return self._specs[module]
        origin, path = None, self.search
        parts = module.split(".")
        for i in range(len(parts)):
            name = ".".join(parts[: i + 1])
            try:
                spec = PathFinder.find_spec(name, path)
            except (ImportError, ValueError):
                spec = None
            if spec is None:
                origin = None
                break
            origin = spec.origin if spec.has_location else None
            path = list(spec.submodule_search_locations or [])
            if i < len(parts) - 1 and not path:
                origin = None
                break
        self._specs[module] = origin if origin and origin.endswith(".py") else None
        return self._specs[module]

    def _imports(self, module: str, origin: str) -> set[str]:
        try:
            text = Path(origin).read_text("utf-8", "replace")
        except OSError:
            return set()
        package = module if origin.endswith("__init__.py") else module.rpartition(".")[0]
        names: set[str] = set()
        for match in _IMPORT.finditer(text):
            for item in _names(match.group(1)):
                names.add(item.split(" as ")[0].strip())
        for match in _FROM.finditer(text):
            base, level = match.group(1).lstrip("."), len(match.group(1)) - \
                len(match.group(1).lstrip("."))
            if level:
                anchor = package.split(".") if package else []
                anchor = anchor[: len(anchor) - level + 1] if level > 1 else anchor
                base = ".".join([*anchor, base] if base else anchor)
            if not base:
                continue
            names.add(base)
            names.update(f"{base}.{item.split(' as ')[0].strip()}"
                         for item in _names(match.group(2)) if item != "*")
        out = set()
        for name in names:
            if not _DOTTED.match(name):
                continue
            parts = name.split(".")
            out.update(".".join(parts[: i + 1]) for i in range(len(parts)))
        return out

    def closure(self, module: str) -> frozenset[str]:
        """Labels of every project source file ``module`` runs, transitively."""
        if module in self._closures:
            return self._closures[module]
        seen: set[str] = set()
        files: set[str] = set()
        todo = [".".join(module.split(".")[: i + 1]) for i in range(module.count(".") + 1)]
        while todo:
            name = todo.pop()
            if name in seen:
                continue
            seen.add(name)
            origin = self._origin(name)
            label = self._label(origin) if origin else None
            if label is None:
                continue
            if label not in self.files:
                self.files[label] = hashlib.sha256(Path(origin).read_bytes()).hexdigest()
            files.add(label)
            todo.extend(self._imports(name, origin) - seen)
        self._closures[module] = frozenset(files)
        return self._closures[module]


# import statements at the start of a line, anywhere in a file (inside functions too; one in a
# docstring counts as well: measuring a file too many is harmless, one too few is not)
_IMPORT = re.compile(r"^[ \t]*import[ \t]+([^\n#;]*)", re.M)
_FROM = re.compile(r"^[ \t]*from[ \t]+(\.*[\w.]*)[ \t]+import[ \t]+(\([^)]*\)|[^\n#;]*)", re.M)
_DOTTED = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")


def _names(text: str) -> list[str]:
    """The comma-separated names of an import statement (parentheses, continuations)."""
    text = text.strip().strip("()").replace("\\\n", " ")
    return [" ".join(item.split()) for item in text.split(",") if item.strip()]


def code_digest(files: dict[str, str], labels) -> bytes:
    lines = "".join(f"{label}\t{files[label]}\n" for label in sorted(labels))
    return hashlib.sha256(lines.encode()).digest()


def config_digest(config: dict) -> bytes:
    """SHA-256 of a component's config as canonical JSON (sorted keys, no spaces)."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).digest()


# -- WireGuard public keys -----------------------------------------------------------------------

def wg_private_key(text: str) -> bytes | None:
    """The ``[Interface] PrivateKey`` of a ``wg``-format configuration, or None."""
    section = None
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1].strip().lower()
        elif section == "interface" and "=" in line:
            key, _, value = line.partition("=")
            if key.strip().lower() == "privatekey":
                try:
                    raw_key = base64.b64decode(value.strip(), validate=True)
                except (ValueError, binascii.Error):
                    return None
                return raw_key if len(raw_key) == 32 else None
    return None


def wg_public_key(private: bytes) -> bytes:
    return X25519PrivateKey.from_private_bytes(private).public_key().public_bytes_raw()


def _wireguard_keys(system: System) -> list[dict]:
    base = Path(system.path).resolve().parent
    out = []
    for name, comp in system.components.items():
        for dev in comp.devices:
            if dev.kind != "file" or dev.mode != "r":
                continue
            path = base / dev.path
            try:
                if path.stat().st_size > 65536:
                    continue
                text = path.read_text("utf-8")
            except (OSError, UnicodeDecodeError):
                continue
            private = wg_private_key(text)
            if private is not None:
                out.append({"component": name, "device": dev.path,
                            "public_key": wg_public_key(private)})
    return out


# -- the measurement -----------------------------------------------------------------------------

def key_holders(system: System, key_path: Path) -> list[str]:
    """Components granted the file at ``key_path`` (any mode)."""
    base = Path(system.path).resolve().parent
    target = key_path.resolve()
    return sorted(name for name, comp in system.components.items()
                  for dev in comp.devices
                  if dev.kind == "file" and (base / dev.path).resolve() == target)


def attester_of(system: System) -> str:
    """The one attester component of ``system``; AttestError if there is none or several."""
    names = [n for n, c in system.components.items() if c.program == ATTESTER_PROGRAM]
    if len(names) != 1:
        raise AttestError(f"{system.path}: needs exactly one component with program "
                          f"'{ATTESTER_PROGRAM}', found {len(names)}")
    comp = system.components[names[0]]
    files = [d for d in comp.devices if d.kind == "file"]
    if len(files) != 1 or files[0].mode != "r" or len(comp.devices) != 1:
        raise AttestError(f"{system.path}: components.{names[0]}.devices: the attester is granted "
                          "exactly one device, its signing key file, mode 'r'")
    key = Path(system.path).resolve().parent / files[0].path
    holders = key_holders(system, key)
    if holders != [names[0]]:
        others = ", ".join(h for h in holders if h != names[0])
        raise AttestError(f"{system.path}: the signing key {files[0].path} is also granted to "
                          f"{others}; only the attester may hold it")
    return names[0]


def measure(system: System) -> dict:
    """The measurement of ``system`` (see the module docstring), as ``MEASUREMENT`` values."""
    scanner = CodeScanner(system.path)
    runtime = scanner.closure(RUNTIME_MODULE)
    per_component = {}
    for name, comp in system.components.items():
        per_component[name] = scanner.closure(comp.module) | runtime
    labels = sorted(scanner.files)
    index = {label: i for i, label in enumerate(labels)}
    components = []
    for name, comp in sorted(system.components.items()):
        files = per_component[name]
        components.append({
            "name": name, "program": comp.program, "priority": comp.priority,
            "code": code_digest(scanner.files, files),
            "config": config_digest(comp.config),
            "files": sorted(index[f] for f in files),
            "capabilities": [{"kind": k, "name": n, "detail": d}
                             for k, n, d in capabilities(system, name)],
        })
    return {
        "system": system.name,
        "description_sha256": bytes.fromhex(system.sha256),
        "components": components,
        "files": [{"path": label, "sha256": bytes.fromhex(scanner.files[label])}
                  for label in labels],
        "wireguard": _wireguard_keys(system),
    }


def encode_measurement(measurement: dict) -> bytes:
    return MEASUREMENT.build(measurement)


def decode_measurement(data: bytes) -> dict:
    return _plain(MEASUREMENT.parse(data))


MEASUREMENT_FILE = b"CNMEASURE1\n"     # heads a measurement saved by `capnet attest --measure`


def save_measurement(measurement: dict) -> bytes:
    """An expected measurement as a file: a verifier needs no secrets (no WireGuard private
    key) and no copy of the system to check a report against it."""
    return MEASUREMENT_FILE + encode_measurement(measurement)


def load_measurement(data: bytes) -> dict | None:
    """The measurement saved in ``data``; None if it is not a measurement file."""
    if not data.startswith(MEASUREMENT_FILE):
        return None
    try:
        return decode_measurement(data[len(MEASUREMENT_FILE):])
    except (ConstructError, UnicodeDecodeError):
        raise AttestError("a damaged measurement file") from None


def _plain(value):
    """construct containers -> plain dicts and lists (no private '_io' keys)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if not k.startswith("_")}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


# -- signing and verifying -----------------------------------------------------------------------

def sign_report(signing: SigningKey, nonce: bytes, measurement: bytes) -> bytes:
    """The signed report: header, measurement (length-prefixed), signature over both."""
    check_nonce(nonce)
    MEASUREMENT.parse(measurement)                   # only a well-formed measurement is signed
    header = {"nonce": nonce, "signer": bytes(signing.verify_key)}
    body = HEADER.build(header) + len(measurement).to_bytes(4, "big") + measurement
    return body + signing.sign(body).signature


@dataclass
class Verdict:
    """The outcome of verifying a report: ``ok`` when nothing differs."""

    problems: list[str] = field(default_factory=list)
    components: list[str] = field(default_factory=list)     # components whose measurement differs
    report: dict | None = None

    @property
    def ok(self) -> bool:
        return not self.problems


def parse_report(data: bytes) -> dict:
    """Header, measurement and signature of a report; ``ValueError`` if malformed."""
    try:
        parsed = REPORT.parse(data)
        measurement = decode_measurement(parsed.measurement)
    except (ConstructError, UnicodeDecodeError) as exc:
        raise ValueError(f"malformed report ({type(exc).__name__})") from None
    return {"nonce": parsed.header.nonce, "signer": parsed.header.signer,
            "measurement": measurement, "signature": parsed.signature,
            "body": data[:-64]}


def verify(data: bytes, public_key: bytes, nonce: bytes, expected: dict) -> Verdict:
    """Check signature, freshness and every measured value of a report against ``expected``."""
    verdict = Verdict()
    try:
        report = parse_report(data)
    except ValueError as exc:
        verdict.problems.append(str(exc))
        return verdict
    verdict.report = report
    try:
        VerifyKey(public_key).verify(report["body"], report["signature"])
    except BadSignatureError:
        verdict.problems.append("signature: not made by the given public key over this report "
                                "(wrong key, or the report was modified)")
        return verdict
    if report["signer"] != public_key:
        verdict.problems.append("signer: the report names another signing key")
    if report["nonce"] != nonce:
        verdict.problems.append(f"nonce: the report answers nonce {report['nonce'].hex()}, not "
                                f"{nonce.hex()} (a replayed or stale report)")
    compare(report["measurement"], expected, verdict)
    return verdict


def compare(got: dict, want: dict, verdict: Verdict) -> None:
    """Add every difference between measurements ``got`` and ``want`` to ``verdict``."""
    if got["system"] != want["system"]:
        verdict.problems.append(f"system: named '{got['system']}', expected '{want['system']}'")
    if got["description_sha256"] != want["description_sha256"]:
        verdict.problems.append(f"description: sha256 {got['description_sha256'].hex()[:16]}…, "
                                f"expected {want['description_sha256'].hex()[:16]}…")
    got_files = {f["path"]: f["sha256"] for f in got["files"]}
    want_files = {f["path"]: f["sha256"] for f in want["files"]}
    gc = {c["name"]: c for c in got["components"]}
    wc = {c["name"]: c for c in want["components"]}
    for name in sorted(set(gc) | set(wc)):
        if name not in gc or name not in wc:
            verdict.problems.append(f"component '{name}': "
                                    + ("not expected" if name not in wc else "missing"))
            verdict.components.append(name)
            continue
        why = _component_differences(gc[name], wc[name], got, want, got_files, want_files)
        if why:
            verdict.components.append(name)
            verdict.problems.extend(f"component '{name}': {w}" for w in why)
    got_wg = {(k["component"], k["device"]): k["public_key"] for k in got["wireguard"]}
    want_wg = {(k["component"], k["device"]): k["public_key"] for k in want["wireguard"]}
    for key in sorted(set(got_wg) | set(want_wg)):
        if got_wg.get(key) != want_wg.get(key):
            show = {k: (base64.b64encode(v[key]).decode() if key in v else "none")
                    for k, v in (("got", got_wg), ("want", want_wg))}
            verdict.problems.append(f"component '{key[0]}': WireGuard public key of {key[1]} is "
                                    f"{show['got']}, expected {show['want']}")
            if key[0] not in verdict.components:
                verdict.components.append(key[0])


def _component_differences(g: dict, w: dict, got: dict, want: dict, got_files: dict,
                           want_files: dict) -> list[str]:
    why = []
    if g["program"] != w["program"]:
        why.append(f"program is {g['program']}, expected {w['program']}")
    if g["priority"] != w["priority"]:
        why.append(f"priority is {g['priority']}, expected {w['priority']}")
    if g["config"] != w["config"]:
        why.append("config differs")
    if g["code"] != w["code"]:
        gl = {got["files"][i]["path"] for i in g["files"] if i < len(got["files"])}
        wl = {want["files"][i]["path"] for i in w["files"]}
        changed = sorted(p for p in gl & wl if got_files[p] != want_files[p])
        detail = [f"changed {', '.join(changed)}"] if changed else []
        detail += [f"added {', '.join(sorted(gl - wl))}"] if gl - wl else []
        detail += [f"missing {', '.join(sorted(wl - gl))}"] if wl - gl else []
        why.append("program code differs" + (f" ({'; '.join(detail)})" if detail else ""))
    gcaps = [(c["kind"], c["name"], c["detail"]) for c in g["capabilities"]]
    wcaps = [(c["kind"], c["name"], c["detail"]) for c in w["capabilities"]]
    if gcaps != wcaps:
        extra = [" ".join(c) for c in gcaps if c not in wcaps]
        lost = [" ".join(c) for c in wcaps if c not in gcaps]
        parts = [f"granted {'; '.join(extra)}"] if extra else []
        parts += [f"not granted {'; '.join(lost)}"] if lost else []
        why.append("capabilities differ: " + (" / ".join(parts) or "order"))
    return why
