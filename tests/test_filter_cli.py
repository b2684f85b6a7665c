"""``capnet filter``: check reports errors with carets and exit 2; load refuses a bad file
before contacting anything; unreachable systems are exit 1."""

from __future__ import annotations

from filter.cli import main
from tests.capnet_run import ROOT, capnet


def test_check_a_good_file(capsys):
    assert main(["check", str(ROOT / "examples" / "rules" / "firewall.rules")]) == 0
    out = capsys.readouterr().out
    assert "ok: 12 rules in 2 chains" in out and "policy drop" in out


def test_check_a_broken_file_through_capnet(tmp_path):
    bad = tmp_path / "bad.rules"
    bad.write_text("chain input {\n  policy drop\n  ip saddr 10.0.0.0/33 accept\n}\n")
    r = capnet("filter", "check", str(bad))
    assert r.returncode == 2
    lines = r.stderr.splitlines()
    assert lines[0] == f"{bad}:3:12: error: '10.0.0.0/33' is not a valid prefix"
    assert lines[1] == "  ip saddr 10.0.0.0/33 accept"
    assert lines[2] == " " * 11 + "^" + "~" * 10


def test_load_refuses_a_bad_file_before_contacting_the_system(tmp_path, capsys):
    bad = tmp_path / "bad.rules"
    bad.write_text("chain c {\n  policy drop\n  tcp dport 22 acept\n}\n")
    # the control socket does not exist: a bad file must fail first, with status 2
    assert main(["load", str(bad), "--control", str(tmp_path / "none.sock")]) == 2
    err = capsys.readouterr().err
    assert "bad.rules:3:16: error: unknown word 'acept'" in err and "none.sock" not in err


def test_unreachable_system_is_status_1(tmp_path, capsys):
    good = ROOT / "examples" / "rules" / "firewall.rules"
    assert main(["load", str(good), "--control", str(tmp_path / "none.sock")]) == 1
    assert "no running system" in capsys.readouterr().err
    assert main(["set", "add", "blocked", "10.0.0.1", "--control",
                 str(tmp_path / "none.sock")]) == 1


def test_bad_arguments_are_status_2(tmp_path, capsys):
    assert main(["load", "x.rules"]) == 2                      # neither --system nor --control
    assert main(["set", "replace", "s", "1", "--system", "x"]) == 2
    assert main(["check", str(tmp_path / "missing.rules")]) == 2
    err = capsys.readouterr().err
    assert "missing.rules: No such file or directory" in err
    assert main([]) == 2
