"""CPU time by process, read from /proc (Linux): the three services (by pid), PostgreSQL (the
postmaster, its live backends and those that exited meanwhile, which the postmaster has reaped)
and RabbitMQ (beam.smp). `make bench` turns the difference over a phase into milliseconds of CPU
per referral: on a machine the whole pipeline shares, that is what bounds the steady rate."""
from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

COMPONENTS = ("intake", "escalation", "notifier", "postgres", "rabbitmq")
_TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> tuple[str, list[str]]:
    raw = Path(f"/proc/{pid}/stat").read_text()
    name = raw[raw.index("(") + 1:raw.rindex(")")]
    return name, raw[raw.rindex(")") + 2:].split()


def process_cpu_s(pid: int, *, reaped: bool = False) -> float:
    """utime + stime of `pid` (with `reaped`, plus its waited-for children's) in seconds."""
    _name, f = _stat(pid)  # fields after the name: f[11] utime, f[12] stime, f[13] cutime, f[14] cstime
    ticks = int(f[11]) + int(f[12]) + (int(f[13]) + int(f[14]) if reaped else 0)
    return ticks / _TICK


def _servers_cpu_s() -> dict[str, float]:
    """PostgreSQL and RabbitMQ on this machine, by process name."""
    totals = {"postgres": 0.0, "rabbitmq": 0.0}
    names: dict[int, tuple[str, int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                name, f = _stat(int(entry))
            except (OSError, ValueError):
                continue  # exited meanwhile
            names[int(entry)] = (name, int(f[1]))
    for pid, (name, ppid) in names.items():
        try:
            if name == "postgres":  # the postmaster's parent is not postgres: count what it reaped
                totals["postgres"] += process_cpu_s(pid, reaped=names.get(ppid, ("",))[0] != "postgres")
            elif name.startswith("beam"):
                totals["rabbitmq"] += process_cpu_s(pid)
        except (OSError, ValueError):
            continue
    return totals


def snapshot(service_pids: Mapping[str, int | None]) -> dict[str, float]:
    """CPU seconds so far per component; a service without a pid of its own (run in this
    process, as in the harness's smoke test) counts 0."""
    out = {name: (process_cpu_s(pid) if pid else 0.0) for name, pid in service_pids.items()}
    return out | _servers_cpu_s()


def per_item_ms(before: Mapping[str, float], after: Mapping[str, float], items: int) -> dict[str, float]:
    """Milliseconds of CPU per item for each component, and their total."""
    spent = {k: max(0.0, after[k] - before[k]) * 1000 / max(items, 1) for k in before}
    return spent | {"total": sum(spent.values())}
