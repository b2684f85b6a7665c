"""Two capnet stacks over drivers.wire:Wire (examples/stack-wire.toml) with seeded loss (1%, 5%,
10%), duplication, reordering and corruption: a bulk transfer arrives intact, both stacks and
the wire count every frame. The three systems run side by side (three processes each). Stack
`a` is `Fetch`, a Stack subclass whose own asyncio `main()` fetches a page from `b` meanwhile."""

from __future__ import annotations

import asyncio
import hashlib
import json

import pytest

from harness.control import ControlError, request
from netstack.apps.pattern import pattern_sha256
from netstack.stack import Stack
from tests.capnet_run import ROOT, start, wait_for

SIZE = 600_000
FETCH = 200_000
SEND = f"bulk-send:10.78.0.2:5001:{SIZE}"
LEVELS = (0.01, 0.05, 0.10)


class Fetch(Stack):
    """A user's own asyncio program in a Stack subclass: fetch /bytes/N from the peer's HTTP."""

    async def main(self) -> dict:
        for _ in range(100):                    # the peer may not be listening yet
            try:
                reader, writer = await asyncio.open_connection("10.78.0.2", 80)
                break
            except ConnectionRefusedError:
                await asyncio.sleep(0.1)
        writer.write(b"GET /bytes/%d HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n" % FETCH)
        await writer.drain()
        response = await reader.read()          # to EOF: Connection: close
        writer.close()
        head, _, body = response.partition(b"\r\n\r\n")
        return {"status": head.split(b"\r\n")[0].decode(), "bytes": len(body),
                "sha256": hashlib.sha256(body).hexdigest()}


def _links(loss: float) -> str:
    faults = f"loss = {loss}, duplicate = 0.02, reorder = 0.02, corrupt = 0.01"
    return (f'[{{ from = "a_tx", to = "b_rx", {faults} }}, '
            f'{{ from = "b_tx", to = "a_rx", {faults} }}]')


def _components(reply: dict) -> dict:
    return {name: info["stats"] for name, info in reply["ok"]["components"].items()}


@pytest.fixture(scope="module")
def transfers(tmp_path_factory):
    """Start one system per loss level, wait until every sender is done; yields their stats."""
    runs = {}
    try:
        for i, loss in enumerate(LEVELS):
            tmp = tmp_path_factory.mktemp(f"wire{i}")
            control = str(tmp / "ctl" / "w.sock")
            text = (ROOT / "examples" / "stack-wire.toml").read_text()
            assert text.count('program = "netstack:Stack"') == 2
            description = tmp / "stack-wire.toml"       # stack a runs Fetch, a Stack subclass
            description.write_text(text.replace('program = "netstack:Stack"',
                                                'program = "tests.test_stack_wire:Fetch"', 1))
            proc = start("run", str(description),
                         "--control", control, "--set", f"wire.seed={11 + i}",
                         "--set", f"wire.links={_links(loss)}", "--set", f'a.apps=["{SEND}"]',
                         "--set", 'b.apps=["bulk-recv:5001", "http:80"]', cwd=ROOT)
            runs[loss] = (proc, control)

        def stats(loss: float) -> dict | None:
            proc, control = runs[loss]
            if proc.poll() is not None:
                raise AssertionError(proc.communicate())
            try:
                return _components(request(control, {"op": "stats"}))
            except (ControlError, KeyError):
                return None

        def all_done() -> bool:
            for loss in LEVELS:
                now = stats(loss)
                apps = ((now or {}).get("a") or {}).get("extra", {}).get("apps", {})
                for name in (SEND, "main"):
                    if not apps.get(name, {}).get("done") and not apps.get(name, {}).get("error"):
                        return False
            return True

        wait_for(all_done, timeout=120, what="the three transfers")
        yield {loss: stats(loss) for loss in LEVELS}
    finally:
        for proc, control in runs.values():
            try:
                request(control, {"op": "stop"})
                proc.wait(timeout=30)
            except (ControlError, OSError, Exception):
                proc.kill()
                proc.wait()


@pytest.mark.parametrize("loss", LEVELS)
def test_bulk_transfer_arrives_intact_through_faults(transfers, loss):
    comps = transfers[loss]
    sent = comps["a"]["extra"]["apps"][SEND]
    assert "error" not in sent, sent
    assert sent["sha256"] == pattern_sha256(SIZE)
    assert sent["answer"] == f"{SIZE} {pattern_sha256(SIZE)}"      # what b digested
    received = comps["b"]["extra"]["apps"]["bulk-recv:5001"]["last"]
    assert (received["bytes"], received["sha256"]) == (SIZE, pattern_sha256(SIZE))
    wire = comps["wire"]["counters"]
    assert wire.get("dropped.loss", 0) > 0 and wire.get("duplicated", 0) > 0
    assert wire.get("corrupted", 0) > 0 and wire.get("reordered", 0) > 0
    tcp = comps["a"]["extra"]["tcp"]
    assert tcp.get("retransmitted_segments", 0) > 0


@pytest.mark.parametrize("loss", LEVELS)
def test_a_stack_subclass_runs_its_own_asyncio_program(transfers, loss):
    main = transfers[loss]["a"]["extra"]["apps"]["main"]
    assert main.get("result") == {"status": "HTTP/1.1 200 OK", "bytes": FETCH,
                                  "sha256": pattern_sha256(FETCH)}, main


@pytest.mark.parametrize("loss", LEVELS)
def test_every_frame_is_counted(transfers, loss):
    for name in ("a", "b"):
        c = transfers[loss][name]["counters"]
        dropped = sum(v for k, v in c.items() if k.startswith("dropped."))
        assert c["in"] == c["out"] + dropped + c.get("pending", 0), (name, c)
    # corrupted frames die at the first check that catches them (Ethernet/IP in the interface,
    # counted as the stack's drops; TCP's checksum in the TCP core), each counted by reason
    caught = sum(v for name in ("a", "b")
                 for k, v in transfers[loss][name]["counters"].items() if k.startswith("dropped."))
    caught += sum(transfers[loss][name]["extra"]["tcp"].get("dropped.bad_checksum", 0)
                  for name in ("a", "b"))
    assert caught > 0, json.dumps(transfers[loss]["b"]["counters"])
