"""Attestation without running a system: measurement, the report format, signature and
freshness checks, the attester's answers to any request, and `capnet attest` bad input.

The helpers at the top (``write_system``, ``wg_pubkey``) also serve test_attest_system.py.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nacl.signing import SigningKey

from gateway import attest
from gateway.attest_cli import main
from gateway.attester import Attester
from harness import ProtectedCallError
from harness.description import load
from harness.runtime import Channel, Device

SYSTEM = """\
[system]
name = "attested"

[regions.data]
size = "256 KiB"

[components.src]
program = "drivers.synthetic:Source"
priority = 100
config = {{ count = 0, size = 64 }}
maps = [{{ region = "data", perms = "rw" }}]

[components.stage]
program = "mystage:Stage"
priority = 110
maps = [{{ region = "data", perms = "r" }}]

[components.sink]
program = "drivers.synthetic:Sink"
priority = 120
maps = [{{ region = "data", perms = "r" }}]
devices = [{{ kind = "file", path = "wg0.conf", mode = "r" }}]

[components.attester]
program = "gateway.attester:Attester"
priority = 254
devices = [{{ kind = "file", path = "keys/attest.key", mode = "r" }}]
{extra}
[[queues]]
name = "in"
producer = "src"
consumer = "stage"
data = "data"
capacity = {capacity}

[[queues]]
name = "out"
producer = "stage"
consumer = "sink"
data = "data"
capacity = 64
"""

STAGE = '''"""A local stage: a Forward that uses a local helper."""
from harness.forward import Forward
from myhelper import LABEL


class Stage(Forward):
    label = LABEL
'''

HELPER = '''"""A helper module the stage imports."""
LABEL = "stage"
'''

# throwaway X25519 private keys (base64), as `wg genkey` prints them
WG_PRIVATE = ("yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=",
              "QF2pJ5n9YgJzQv0m2A0fKqvZ4v9n4mJjQ0m9xGqkq1E=")
NONCE = bytes(range(16))


def write_system(folder: Path, *, capacity: int = 64, wg_key: str = WG_PRIVATE[0],
                 keys: Path | None = None, extra: str = "") -> Path:
    """Write the attested test system into ``folder``; ``keys``: copy this key folder
    (attest.key, attest.pub) instead of making a new pair."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "mystage.py").write_text(STAGE)
    (folder / "myhelper.py").write_text(HELPER)
    (folder / "wg0.conf").write_text(f"[Interface]\nPrivateKey = {wg_key}\nListenPort = 51820\n")
    if keys is None:
        attest.keygen(folder / "keys")
    else:
        shutil.copytree(keys, folder / "keys")
    path = folder / "system.toml"
    path.write_text(SYSTEM.format(capacity=capacity, extra=extra))
    return path


def need_tool(name: str) -> None:
    """Skip without the tool, except under CI=true, where a missing tool is a failure."""
    if shutil.which(name) is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} is not installed")
        pytest.skip(f"{name} is not installed")


def wg_pubkey(private_b64: str) -> str:
    """The public key as the real ``wg`` tool derives it."""
    need_tool("wg")
    done = subprocess.run(["wg", "pubkey"], input=private_b64 + "\n", capture_output=True,
                          text=True, check=True)
    return done.stdout.strip()


def signing_key(folder: Path) -> SigningKey:
    return SigningKey(attest.read_key((folder / "keys" / "attest.key").read_text(), "key"))


def public_key(folder: Path) -> bytes:
    return attest.read_key((folder / "keys" / "attest.pub").read_text(), "pub")


@pytest.fixture
def system_dir(tmp_path: Path) -> Path:
    write_system(tmp_path / "a")
    return tmp_path / "a"


def measured(folder: Path) -> dict:
    return attest.measure(load(folder / "system.toml"))


def signed(folder: Path, nonce: bytes = NONCE) -> bytes:
    return attest.sign_report(signing_key(folder), nonce,
                              attest.encode_measurement(measured(folder)))


# -- keys and nonces ----------------------------------------------------------------------------

def test_keygen_writes_a_secret_key_and_its_public_key(tmp_path):
    key, pub = attest.keygen(tmp_path / "k")
    assert (key.stat().st_mode & 0o777) == 0o600
    seed = attest.read_key(key.read_text(), "key")
    assert bytes(SigningKey(seed).verify_key) == attest.read_key(pub.read_text(), "pub")
    assert len(key.read_text().strip()) == 44        # one line of base64, like wg genkey
    with pytest.raises(FileExistsError):              # never overwrites a signing key
        attest.keygen(tmp_path / "k")


@pytest.mark.parametrize("text", ["", "abc", "zz" * 32, base64.b64encode(bytes(31)).decode()])
def test_bad_keys_are_refused(text):
    with pytest.raises(attest.AttestError, match="32-byte key"):
        attest.read_key(text, "k")


@pytest.mark.parametrize("text", ["00" * 15, "00" * 65, "xyz", "0" * 33])
def test_bad_nonces_are_refused(text):
    with pytest.raises(attest.AttestError):
        attest.parse_nonce(text)


# -- the measurement ----------------------------------------------------------------------------

def test_measurement_covers_code_description_capabilities_and_wg_key(system_dir):
    m = measured(system_dir)
    system = load(system_dir / "system.toml")
    assert m["description_sha256"].hex() == system.sha256
    paths = [f["path"] for f in m["files"]]
    by_name = {c["name"]: c for c in m["components"]}
    stage = {paths[i] for i in by_name["stage"]["files"]}
    # the program's module, what it imports (transitively), and the runtime under every PD
    assert {"system:mystage.py", "system:myhelper.py", "project:harness/forward.py",
            "project:harness/pd.py", "project:harness/eventloop.py",
            "project:shmring/ring.py"} <= stage
    src = {paths[i] for i in by_name["src"]["files"]}
    assert "project:drivers/synthetic.py" in src and "system:mystage.py" not in src
    assert not any("site-packages" in p or p.startswith("numpy") for p in paths)
    caps = {(c["kind"], c["name"]) for c in by_name["stage"]["capabilities"]}
    assert caps == {("region", "data"), ("queue", "in"), ("queue", "out")}
    assert [(k["component"], k["device"]) for k in m["wireguard"]] == [("sink", "wg0.conf")]


def test_wireguard_public_key_is_derived_as_wg_derives_it(system_dir):
    (key,) = measured(system_dir)["wireguard"]
    assert base64.b64encode(key["public_key"]).decode() == wg_pubkey(WG_PRIVATE[0])


def test_a_copy_elsewhere_measures_the_same(tmp_path, system_dir):
    write_system(tmp_path / "b", keys=system_dir / "keys")
    assert measured(tmp_path / "b") == measured(system_dir)


def test_changing_an_imported_helper_changes_only_its_importer(tmp_path, system_dir):
    write_system(tmp_path / "b", keys=system_dir / "keys")
    (tmp_path / "b" / "myhelper.py").write_text(HELPER + "LABEL = 'evil'\n")
    verdict = attest.Verdict()
    attest.compare(measured(tmp_path / "b"), measured(system_dir), verdict)
    assert verdict.components == ["stage"]
    assert verdict.problems == ["component 'stage': program code differs "
                                "(changed system:myhelper.py)"]


def test_measurement_encoding_round_trips(system_dir):
    m = measured(system_dir)
    data = attest.encode_measurement(m)
    assert attest.decode_measurement(data) == m
    assert attest.load_measurement(attest.save_measurement(m)) == m
    assert attest.load_measurement(b"[system]\n") is None


# -- signing and verifying ----------------------------------------------------------------------

def test_good_report_verifies(system_dir):
    verdict = attest.verify(signed(system_dir), public_key(system_dir), NONCE,
                            measured(system_dir))
    assert verdict.ok, verdict.problems
    assert verdict.report["nonce"] == NONCE


def test_wrong_nonce_is_a_replay(system_dir):
    verdict = attest.verify(signed(system_dir), public_key(system_dir), bytes(16),
                            measured(system_dir))
    assert not verdict.ok
    assert any(p.startswith("nonce:") for p in verdict.problems)


def test_wrong_public_key_fails(system_dir, tmp_path):
    _, other = attest.keygen(tmp_path / "other")
    verdict = attest.verify(signed(system_dir), attest.read_key(other.read_text(), "k"), NONCE,
                            measured(system_dir))
    assert [p.split(":")[0] for p in verdict.problems] == ["signature"]


def test_every_modified_byte_breaks_the_signature(system_dir):
    report, key, expected = signed(system_dir), public_key(system_dir), measured(system_dir)
    for position in [*range(0, len(report), 53), len(report) - 1]:
        tampered = bytearray(report)
        tampered[position] ^= 0x01
        verdict = attest.verify(bytes(tampered), key, NONCE, expected)
        assert not verdict.ok, position


@pytest.mark.parametrize("cut", [0, 1, 10, 64, -1, -64])
def test_truncated_or_extended_reports_are_malformed(system_dir, cut):
    report = signed(system_dir)
    data = report[:cut] if cut else report + b"\0"
    verdict = attest.verify(data, public_key(system_dir), NONCE, measured(system_dir))
    assert not verdict.ok


# -- the attester's entry points, with a real key file ------------------------------------------

def _attester(system_dir: Path, measurement: bytes | None) -> Attester:
    fd = os.open(system_dir / "keys" / "attest.key", os.O_RDONLY)
    component = Attester.__new__(Attester)
    component.name, component.counters = "attester", {}
    component.config = {} if measurement is None else {"measurement": measurement}
    component.devices = [Device("file", "r", "keys/attest.key", fd)]
    try:
        component.init()
    finally:
        os.close(fd)
    return component


CONTROL = Channel("control", "control", "operator")


def test_attester_signs_each_nonce_once(system_dir):
    expected = measured(system_dir)
    component = _attester(system_dir, attest.encode_measurement(expected))
    report = component.protected(CONTROL, {"nonce": NONCE})["report"]
    assert attest.verify(report, public_key(system_dir), NONCE, expected).ok
    with pytest.raises(ProtectedCallError, match="already answered"):
        component.protected(CONTROL, {"nonce": NONCE})
    as_hex = component.protected(CONTROL, {"nonce": "ab" * 16})["report"]
    assert attest.verify(bytes.fromhex(as_hex), public_key(system_dir), bytes([0xAB] * 16),
                         expected).ok
    assert component.counters == {"requests": 3, "signed": 2, "refused": 1}


def test_attester_without_measurement_refuses(system_dir):
    with pytest.raises(ProtectedCallError, match="no measurement"):
        _attester(system_dir, None).protected(CONTROL, {"nonce": NONCE})


@pytest.fixture(scope="module")
def any_attester(tmp_path_factory) -> Attester:
    folder = tmp_path_factory.mktemp("any")
    write_system(folder)
    return _attester(folder, attest.encode_measurement(measured(folder)))


REQUESTS = st.one_of(
    st.binary(), st.text(), st.integers(), st.none(),
    st.dictionaries(st.sampled_from(["nonce", "op", ""]),
                    st.one_of(st.binary(max_size=80), st.text(max_size=160), st.integers(),
                              st.none(), st.lists(st.integers(), max_size=3)), max_size=3))


@settings(max_examples=300, deadline=None)
@given(msg=REQUESTS)
def test_attester_answers_any_request_without_failing(any_attester, msg):
    before = dict(any_attester.counters)
    try:
        reply = any_attester.protected(CONTROL, msg)
    except ProtectedCallError:
        assert any_attester.counters["refused"] == before.get("refused", 0) + 1
        return
    assert set(reply) == {"report"}
    assert any_attester.counters["signed"] == before.get("signed", 0) + 1


# -- capnet attest: bad input (exit 2, nothing started) -----------------------------------------

def test_cli_bad_input(system_dir, tmp_path, capsys):
    s = str(system_dir / "system.toml")
    pub = str(system_dir / "keys" / "attest.pub")
    report = tmp_path / "r.bin"
    report.write_bytes(signed(system_dir))
    cases = [
        ([], "one of the arguments"),
        (["--system", s], "--system needs --nonce"),
        (["--system", s, "--nonce", "xyz"], "not hexadecimal"),
        (["--system", s, "--nonce", "00"], "16..64 bytes"),
        (["--system", str(tmp_path / "none.toml"), "--nonce", NONCE.hex()], "cannot read"),
        (["--verify", str(report), "--pubkey", pub, "--expect", s], "needs --nonce"),
        (["--verify", str(report), "--pubkey", s, "--expect", s, "--nonce", NONCE.hex()],
         "32-byte key"),
        (["--verify", str(tmp_path / "no.bin"), "--pubkey", pub, "--expect", s,
          "--nonce", NONCE.hex()], "No such file"),
        (["--measure", s], "needs -o EXPECTED"),
        (["--measure", s, "-o", str(tmp_path / "no" / "m.msr")], "no such directory"),
        (["--system", s, "--nonce", NONCE.hex(), "-o", str(tmp_path / "no" / "r.bin")],
         "no such directory"),
        (["--run", str(tmp_path / "none.toml")], "cannot read"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        assert message in capsys.readouterr().err, argv


def test_cli_refuses_a_key_granted_to_another_component(tmp_path, capsys):
    shared = '\n[components.spy]\nprogram = "drivers.synthetic:Sink"\npriority = 90\n' \
             'devices = [{ kind = "file", path = "keys/attest.key", mode = "r" }]\n'
    path = write_system(tmp_path / "s", extra=shared)
    assert main(["--system", str(path), "--nonce", NONCE.hex()]) == 2
    assert "also granted to spy; only the attester may hold it" in capsys.readouterr().err


def test_cli_refuses_a_measurement_in_the_description(tmp_path, capsys):
    path = write_system(tmp_path / "s")
    text = path.read_text().replace('priority = 254\n',
                                    'priority = 254\nconfig = { measurement = "x" }\n')
    path.write_text(text)
    assert main(["--system", str(path), "--nonce", NONCE.hex()]) == 2
    err = capsys.readouterr().err
    assert "components.attester.config" in err and "set by the harness" in err


def test_cli_verify_and_measure_files(system_dir, tmp_path, capsys):
    report = tmp_path / "r.bin"
    report.write_bytes(signed(system_dir))
    expected = tmp_path / "expected.msr"
    assert main(["--measure", str(system_dir / "system.toml"), "-o", str(expected)]) == 0
    pub = str(system_dir / "keys" / "attest.pub")
    for expect in (str(system_dir / "system.toml"), str(expected)):
        assert main(["--verify", str(report), "--pubkey", pub, "--expect", expect,
                     "--nonce", NONCE.hex()]) == 0
        assert "attestation verified" in capsys.readouterr().out
    report.write_bytes(b"garbage")
    assert main(["--verify", str(report), "--pubkey", pub, "--expect", str(expected),
                 "--nonce", NONCE.hex()]) == 1
    assert "malformed report" in capsys.readouterr().out


@pytest.fixture(scope="module")
def good_report(tmp_path_factory) -> tuple[bytes, bytes, dict]:
    folder = tmp_path_factory.mktemp("fuzz")
    write_system(folder)
    return signed(folder), public_key(folder), measured(folder)


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_verify_never_raises_on_any_bytes(good_report, data):
    report, key, expected = good_report
    kind = data.draw(st.sampled_from(["random", "mutated", "spliced"]))
    if kind == "random":
        blob = data.draw(st.binary(max_size=600))
    elif kind == "mutated":
        blob = bytearray(report)
        for _ in range(data.draw(st.integers(1, 8))):
            blob[data.draw(st.integers(0, len(blob) - 1))] = data.draw(st.integers(0, 255))
        blob = bytes(blob)
    else:
        cut = data.draw(st.integers(0, len(report)))
        blob = report[:cut] + data.draw(st.binary(max_size=40))
    verdict = attest.verify(blob, key, NONCE, expected)
    assert verdict.ok == (blob == report)
