"""`capnet attest` against real running systems: a good report, each kind of tampering named,
nonce replay refused, a running system queried through its control socket, the attester reached
by protected call, and the signing key out of every other component's reach."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import pytest

from gateway.attest_cli import main as attest_main
from harness.cli import main as capnet_main
from tests.capnet_run import start, wait_for
from tests.test_attest import HELPER, WG_PRIVATE, wg_pubkey, write_system


def nonce() -> str:
    return secrets.token_hex(16)


def attest_cli(capsys, *argv: str) -> tuple[int, str, str]:
    """`capnet attest ARGV` in this process (the components still run as their own processes)."""
    capsys.readouterr()
    code = attest_main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def attest_report(capsys, system: Path, n: str, out: Path, *extra: str) -> None:
    code, stdout, stderr = attest_cli(capsys, "--system", str(system), "--nonce", n,
                                      "-o", str(out), *extra)
    assert code == 0, stderr + stdout
    assert f"over nonce {n}" in stdout


def verify(capsys, report: Path, expect: Path, n: str, pubkey: Path) -> tuple[int, dict]:
    code, out, err = attest_cli(capsys, "--verify", str(report), "--pubkey", str(pubkey),
                                "--expect", str(expect), "--nonce", n, "--json")
    assert code in (0, 1), err
    return code, json.loads(out)


@pytest.fixture(scope="module")
def original(tmp_path_factory) -> Path:
    return write_system(tmp_path_factory.mktemp("attest") / "a")


def pub(system: Path) -> Path:
    return system.parent / "keys" / "attest.pub"


def test_good_report_verifies(original, tmp_path, capsys):
    n = nonce()
    attest_report(capsys, original, n, tmp_path / "r.bin")
    code, verdict = verify(capsys, tmp_path / "r.bin", original, n, pub(original))
    assert (code, verdict) == (0, {"ok": True, "problems": [], "components": []})
    # the same report does not answer another challenge: a replayed report fails
    code, verdict = verify(capsys, tmp_path / "r.bin", original, nonce(), pub(original))
    assert code == 1 and verdict["problems"][0].startswith("nonce: the report answers")
    # nor does it verify under another key
    other = tmp_path / "other"
    assert attest_cli(capsys, "--keygen", str(other))[0] == 0
    code, verdict = verify(capsys, tmp_path / "r.bin", original, n, other / "attest.pub")
    assert code == 1 and verdict["problems"][0].startswith("signature:")


def _tamper_code(folder: Path) -> None:
    (folder / "mystage.py").write_text((folder / "mystage.py").read_text() + "# patched\n")


def _tamper_helper(folder: Path) -> None:
    (folder / "myhelper.py").write_text(HELPER + "import os  # a new import\n")


def _tamper_capability(folder: Path) -> None:
    text = (folder / "system.toml").read_text()
    old = '[components.stage]\nprogram = "mystage:Stage"\npriority = 110\n' \
          'maps = [{ region = "data", perms = "r" }]'
    assert old in text
    (folder / "system.toml").write_text(text.replace(old, old.replace('"r"', '"rw"')))


def _tamper_wg(folder: Path) -> None:
    (folder / "wg0.conf").write_text(f"[Interface]\nPrivateKey = {WG_PRIVATE[1]}\n")


@pytest.mark.parametrize("tamper, components, expected", [
    (_tamper_code, ["stage"], ["component 'stage': program code differs "
                               "(changed system:mystage.py)"]),
    (_tamper_helper, ["stage"], ["component 'stage': program code differs "
                                 "(changed system:myhelper.py)"]),
    (_tamper_capability, ["stage"], ["description: sha256",
                                     "component 'stage': capabilities differ: granted region "
                                     "data rw 256 KiB"]),
    (_tamper_wg, ["sink"], [lambda: "component 'sink': WireGuard public key of wg0.conf is "
                            + wg_pubkey(WG_PRIVATE[1])]),
], ids=["program", "imported-module", "capability", "wireguard-key"])
def test_tampering_is_detected_and_named(original, tmp_path, capsys, tamper, components,
                                        expected):
    copy = write_system(tmp_path / "b", keys=original.parent / "keys")
    tamper(copy.parent)
    n = nonce()
    attest_report(capsys, copy, n, tmp_path / "r.bin")
    code, verdict = verify(capsys, tmp_path / "r.bin", original, n, pub(original))
    assert code == 1
    assert verdict["components"] == components
    assert len(verdict["problems"]) == len(expected)
    for problem, start_text in zip(verdict["problems"], expected, strict=True):
        start_text = start_text() if callable(start_text) else start_text
        assert problem.startswith(start_text), problem
    # the verifier also accepts a saved measurement instead of the description (no secrets)
    saved = tmp_path / "expected.msr"
    assert attest_cli(capsys, "--measure", str(original), "-o", str(saved))[0] == 0
    assert verify(capsys, tmp_path / "r.bin", saved, n, pub(original))[1] == verdict


SPY = '''"""Another component: tries to read the signing key, then asks the attester."""
import errno

from harness import Component, ProtectedCallError


class Spy(Component):
    def init(self) -> None:
        try:
            with open(self.config["key"], "rb") as fh:
                print("SPY read the key", fh.read(8), flush=True)
        except OSError as exc:
            print(f"SPY open refused {errno.errorcode.get(exc.errno, exc.errno)}", flush=True)
        nonce = bytes.fromhex(self.config["nonce"])
        print(f"SPY report {self.ppcall('attest', {'nonce': nonce})['report'].hex()}",
              flush=True)
        try:
            self.ppcall("attest", {"nonce": nonce})
            print("SPY replay answered", flush=True)
        except ProtectedCallError as exc:
            print(f"SPY replay refused: {exc}", flush=True)
'''


def test_running_system_answers_by_protected_call_and_control_socket(tmp_path, capsys):
    spy_nonce, n = nonce(), nonce()
    folder = tmp_path / "s"
    key = (folder / "keys" / "attest.key").resolve()
    extra = (f'\n[components.spy]\nprogram = "spy:Spy"\npriority = 100\n'
             f'config = {{ key = "{key}", nonce = "{spy_nonce}" }}\n\n'
             f'[[channels]]\nname = "attest"\nends = ["spy", "attester"]\npp = "spy"\n')
    system = write_system(folder, extra=extra)
    (folder / "spy.py").write_text(SPY)
    control = tmp_path / "ctl" / "s.sock"
    proc = start("attest", "--run", str(system), "--control", str(control), "--duration", "60")
    try:
        wait_for(control.exists, what="the control socket")
        attest_report(capsys, system, n, tmp_path / "r.bin", "--control", str(control))
        code, _, err = attest_cli(capsys, "--system", str(system), "--nonce", n, "--control",
                                  str(control))
        assert code == 1 and "nonce already answered" in err
        # `capnet call` (JSON): a hex nonce is answered with a hex report
        n2 = nonce()
        capsys.readouterr()
        assert capnet_main(["call", "attested", "attester", json.dumps({"nonce": n2}),
                            "--control", str(control)]) == 0
        reply = json.loads(capsys.readouterr().out)
        (tmp_path / "r2.bin").write_bytes(bytes.fromhex(reply["report"]))
        assert capnet_main(["stop", "--control", str(control)]) == 0
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert verify(capsys, tmp_path / "r.bin", system, n, pub(system))[0] == 0
    assert verify(capsys, tmp_path / "r2.bin", system, n2, pub(system)) == \
        (0, {"ok": True, "problems": [], "components": []})
    # the sandbox denies another component every open of the key file ...
    assert "[spy] SPY open refused EPERM" in out or "[spy] SPY open refused EACCES" in out
    assert "SPY read the key" not in out
    # ... while it gets a signed report through its protected call, once per nonce
    line = next(x for x in out.splitlines() if x.startswith("[spy] SPY report "))
    (tmp_path / "spy.bin").write_bytes(bytes.fromhex(line.split()[-1]))
    assert verify(capsys, tmp_path / "spy.bin", system, spy_nonce, pub(system))[0] == 0
    assert "[spy] SPY replay refused: 'attester': nonce already answered" in out


def test_plain_run_gives_the_attester_no_measurement(tmp_path, capsys):
    system = write_system(tmp_path / "p")
    control = tmp_path / "ctl" / "p.sock"
    proc = start("run", str(system), "--control", str(control), "--duration", "60")
    try:
        wait_for(control.exists, what="the control socket")
        code, _, err = attest_cli(capsys, "--system", str(system), "--nonce", nonce(),
                                  "--control", str(control))
        assert code == 1 and "no measurement" in err
        assert capnet_main(["stop", "--control", str(control)]) == 0
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
