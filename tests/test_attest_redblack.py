"""The red/black gateway example: `capnet check --policy` shows every path from red to the black
NIC passing through the gateway, the signing key is granted to the attester alone, and the
example, run for real (its TUN in a namespace of the test's own), attests and verifies with the
WireGuard public key `wg pubkey` derives from its configuration."""

from __future__ import annotations

import base64
import json
import re
import secrets
import shutil
from pathlib import Path

from gateway import attest
from gateway.attest_cli import main as attest_main
from harness import flows
from harness.captable import capabilities
from harness.cli import main as capnet_main
from harness.description import load
from tests.capnet_run import ROOT
from tests.test_attest import wg_pubkey

EXAMPLE = ROOT / "examples" / "redblack-gateway.toml"
POLICY = ROOT / "examples" / "redblack-gateway.policy.toml"
RED = ("red", "redsink")


def check(capsys, system: Path, *paths: str) -> tuple[int, str]:
    capsys.readouterr()
    argv = ["check", str(system), "--policy", str(POLICY)]
    for p in paths:
        argv += ["--path", p]
    code = capnet_main(argv)
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_every_path_from_red_to_the_black_nic_passes_through_the_gateway(capsys):
    code, out = check(capsys, EXAMPLE, "red:nic", "redsink:nic", "keys:nic", "attester:nic")
    assert code == 0, out
    assert "every flow is allowed by the policy" in out
    for source in (*RED, "keys"):
        count = re.search(rf"paths {source} -> nic: (\d+)\n", out)
        assert count and int(count.group(1)) >= 1, out
        section = out[count.end():].split("paths ", 1)[0]
        assert re.findall(r"^\s+\d+\. ", section, re.M), section
        for line in re.findall(r"^\s+\d+\. (.*)$", section, re.M):
            assert " -> gw " not in line and "-> gw -" in line, line
        assert "every path passes through: gw" in section
    assert "paths attester -> nic: no path" in out
    # the same through the API: gw cuts every red component off the black NIC
    derived = flows.derive(load(EXAMPLE))
    for source in RED:
        assert "gw" in flows.passes_through(derived, source, "nic")


def test_a_red_component_writing_outside_is_a_bypass_the_check_rejects(capsys, tmp_path):
    shutil.copytree(ROOT / "examples" / "redblack-gateway", tmp_path / "redblack-gateway")
    text = EXAMPLE.read_text().replace(
        'config = { verify = false }\n',
        'config = { verify = false }\n'
        'devices = [{ kind = "file", path = "leak.pcap", mode = "w" }]\n')
    bypass = tmp_path / "redblack-gateway.toml"
    bypass.write_text(text)
    code, out = check(capsys, bypass, "redsink:nic")
    out = " ".join(out.split())                    # rich wraps long lines
    assert code == 2
    assert "flow redsink (red) -> outside (outside) is not allowed by the policy" in out
    assert "redsink -[device]-> outside -[device]-> nic" in out
    assert "every path passes through: gw" not in out


def test_only_the_attester_is_granted_the_signing_key():
    system = load(EXAMPLE)
    key = ROOT / "examples" / "redblack-gateway" / "attest.key"
    assert attest.attester_of(system) == "attester"
    assert attest.key_holders(system, key) == ["attester"]
    for name in system.components:
        granted = any("attest.key" in detail for _, _, detail in capabilities(system, name))
        assert granted == (name == "attester"), name


def test_the_example_runs_attests_and_verifies(tmp_path, netns, capsys):
    shutil.copytree(ROOT / "examples" / "redblack-gateway", tmp_path / "redblack-gateway")
    system = tmp_path / "redblack-gateway.toml"
    system.write_text(EXAMPLE.read_text().replace('name = "cnblack0", ',
                                                  f'name = "cnblack0", netns = "{netns}", '))
    n = secrets.token_hex(16)
    report = tmp_path / "r.bin"
    assert attest_main(["--system", str(system), "--nonce", n, "-o", str(report)]) == 0, \
        capsys.readouterr().err
    pub = str(tmp_path / "redblack-gateway" / "attest.pub")
    capsys.readouterr()
    assert attest_main(["--verify", str(report), "--pubkey", pub, "--expect", str(system),
                        "--nonce", n, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["ok"]
    # against the published example, only the namespace the test added differs
    assert attest_main(["--verify", str(report), "--pubkey", pub, "--expect", str(EXAMPLE),
                        "--nonce", n, "--json"]) == 1
    verdict = json.loads(capsys.readouterr().out)
    assert verdict["components"] == ["nic"]
    assert verdict["problems"][0].startswith("description: sha256")
    assert f"in netns {netns}" in verdict["problems"][1]
    # the report carries the key store's WireGuard public key, as `wg pubkey` derives it
    (key,) = attest.parse_report(report.read_bytes())["measurement"]["wireguard"]
    conf = (tmp_path / "redblack-gateway" / "wg-gateway.conf").read_text()
    private = re.search(r"^PrivateKey = (\S+)$", conf, re.M).group(1)
    assert (key["component"], key["device"]) == ("keys", "redblack-gateway/wg-gateway.conf")
    assert base64.b64encode(key["public_key"]).decode() == wg_pubkey(private)
