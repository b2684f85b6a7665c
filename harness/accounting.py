"""Frame conservation: in = out + dropped (by reason), per component and for the whole system.

Each component counts ``in`` (frames it received or, for a source, created), ``out`` (frames it
passed on or, for a sink, delivered) and ``dropped.<reason>``; a component that still holds frames
when stopped reports them as ``pending``; one that makes frames up mid-pipeline (a wire that
duplicates) counts them in ``in`` and in ``created``, so for the system
in + created = out + dropped + pending. Descriptors a queue end refused (out of bounds,
duplicate, ...) never reach the component and are counted by the queue as ``rejected``; frames a
diode's producer overwrote before its consumer read them are counted by the consumer's end as
``overrun``. Frames cross the system's edge at its sources (``in``) and sinks (``out``), and at
components that talk to the outside world themselves (a NIC reading and writing a device), which
count what they took from it as ``entered`` and what they gave it as ``left``; for the system,
entered + created = left + dropped + pending. A sink that records frames already counted as
dropped upstream (the capture of
``capnet replay --dropped``) counts them in ``recorded_drops`` too; they are not system output.
"""

from __future__ import annotations

from harness.description import System

_REJECT_KEYS = ("bad_offset", "bad_alignment", "bad_length", "duplicate")


def _numbers(stats: dict | None) -> dict:
    counters = (stats or {}).get("counters", {})
    dropped = {k.split(".", 1)[1]: v for k, v in counters.items() if k.startswith("dropped.")}
    rejected = overrun = 0
    for q in (stats or {}).get("queues", {}).values():
        rejected += sum(int(q.get(k, 0)) for k in _REJECT_KEYS)
        overrun += int(q.get("overrun", 0))
    return {"in": int(counters.get("in", 0)), "out": int(counters.get("out", 0)),
            "dropped": dropped, "pending": int(counters.get("pending", 0)), "rejected": rejected,
            "overrun": overrun, "created": int(counters.get("created", 0)),
            "recorded_drops": int(counters.get("recorded_drops", 0)),
            "entered": counters.get("entered"), "left": counters.get("left")}


def conservation(system: System, components: dict) -> dict:
    """Check in = out + dropped + pending for every component and for the system as a whole."""
    per = {}
    for name, info in components.items():
        n = _numbers(info.get("stats"))
        n["balanced"] = n["in"] == n["out"] + sum(n["dropped"].values()) + n["pending"]
        per[name] = n
    sources = [n for n in system.components
               if not any(q.consumer == n for q in system.queues.values())]
    sinks = [n for n in system.components
             if not any(q.producer == n for q in system.queues.values())]

    def edge(name: str, key: str, default: int) -> int:
        return int(per[name][key]) if per[name][key] is not None else default

    frames_in = sum(edge(n, "entered", per[n]["in"] if n in sources else 0) for n in per)
    frames_out = sum(edge(n, "left", per[n]["out"] - per[n]["recorded_drops"] if n in sinks
                          else 0) for n in per)
    dropped: dict[str, int] = {}
    for n in per.values():
        for reason, count in n["dropped"].items():
            dropped[reason] = dropped.get(reason, 0) + count
        if n["rejected"]:
            dropped["rejected_descriptor"] = dropped.get("rejected_descriptor", 0) + n["rejected"]
        if n["overrun"]:
            dropped["diode_overrun"] = dropped.get("diode_overrun", 0) + n["overrun"]
    pending = sum(n["pending"] for n in per.values())
    created = sum(per[n]["created"] for n in per if n not in sources)
    return {"components": per, "in": frames_in, "out": frames_out, "dropped": dropped,
            "pending": pending, "created": created,
            "balanced": frames_in + created == frames_out + sum(dropped.values()) + pending
            and all(n["balanced"] for n in per.values())}
