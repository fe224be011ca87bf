"""Benchmark 1 — churn: S services × E endpoints of EndpointSlice watch events, replayed at full speed.

Method.  The parent generates a *recorded* watch stream (JSON lines, one ``{"type", "object"}``
event per line, as the API server sends them) into a temporary file:

* **load** — one ``ADDED`` EndpointSlice per Service, E ready endpoints each (S × E endpoints);
* **churn** — ``rounds`` rounds, interleaved across all Services; in each round every Service's
  slice is ``MODIFIED`` twice: first ``replace`` endpoints turn terminating (→ detaches), then
  they disappear and as many new pods (new IPs) appear (→ attaches).

A fresh child interpreter (see :mod:`benchmarks`) seeds Services and TargetBindings straight into
the caches, starts the :class:`~benchmarks.pipeline.Pipeline` (real decode path, caches, handlers,
work queue, 4 workers, reconciler, 8 call threads, ``MemoryProvider`` with zero latency,
the controller's default ``--sync-min-interval`` of 0.5 s) and reads the file line by line through
``Watcher.handle_event`` as fast as it can.
The replay pauses once, after the load events, until every target holds its 50 members: that is
where RSS is read (``VmRSS`` after − before, divided by S × E).  Then the churn events, then
again until converged.  Figures:

* CPU µs per endpoint change — process CPU time (all threads) of replay + convergence / changes;
* calls vs the lower bound — per phase, Σ over targets of ⌈attaches/limit⌉ + ⌈detaches/limit⌉
  (attach and detach cannot share a call; the load must be in sync before the churn starts);
  the "no coalescing" figure is the same sum taken per event instead of per target;
* total time vs the decode floor — wall time of replay + convergence against the time to read the
  same file and ``json.loads`` every line (measured afterwards, in the same child);
* bytes per tracked endpoint — with and without the in-memory cloud's own state (the
  ``MemoryProvider`` pools stand in for the cloud and would not live in the controller; their
  footprint is measured in a separate child that builds the same pools directly).
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import Row, child_main, median, proc_status_bytes, run_child

DEFAULTS: dict[str, Any] = {"services": 2000, "endpoints": 50, "rounds": 2, "replace": 5, "limit": 500}
QUICK: dict[str, Any] = {"services": 200, "endpoints": 50, "rounds": 2, "replace": 5, "limit": 500}


def _ceil(n: int, limit: int) -> int:
    return -(-n // limit)


def generate(directory: Path, *, services: int, endpoints: int, rounds: int, replace: int, limit: int) -> Path:
    """Write ``stream.jsonl`` and ``meta.json`` (phases, bounds, expected members) into ``directory``."""
    from benchmarks.pipeline import SliceState, event_line

    states = [SliceState("bench", f"svc-{s:05d}") for s in range(services)]
    counter = 0
    for state in states:
        for _ in range(endpoints):
            counter += 1
            state.endpoints[counter] = False
    rv = 1000
    stream = directory / "stream.jsonl"
    no_coalesce = {"load": 0, "churn": 0}
    with stream.open("w") as out:
        for state in states:
            rv += 1
            out.write(event_line("ADDED", state.obj(rv)) + "\n")
            no_coalesce["load"] += _ceil(endpoints, limit)
        load_lines = services
        expected_load = {state.service: sorted(m.ip for m in state.members()) for state in states}
        for _ in range(rounds):
            leaving: list[list[int]] = []
            for state in states:
                ready = [n for n, t in state.endpoints.items() if not t][:replace]
                for n in ready:
                    state.endpoints[n] = True
                leaving.append(ready)
                rv += 1
                out.write(event_line("MODIFIED", state.obj(rv)) + "\n")
                no_coalesce["churn"] += _ceil(len(ready), limit)
            for state, gone in zip(states, leaving, strict=True):
                for n in gone:
                    del state.endpoints[n]
                for _ in gone:
                    counter += 1
                    state.endpoints[counter] = False
                rv += 1
                out.write(event_line("MODIFIED", state.obj(rv)) + "\n")
                no_coalesce["churn"] += _ceil(len(gone), limit)
    churn_each = rounds * replace
    meta = {
        "services": services, "endpoints": endpoints, "rounds": rounds, "replace": replace, "limit": limit,
        "load_lines": load_lines,
        "changes": {"load": services * endpoints, "churn": services * 2 * churn_each},
        "members_changed": {"attach": services * (endpoints + churn_each), "detach": services * churn_each},
        "lower_bound": {"load": services * _ceil(endpoints, limit),
                        "churn": services * 2 * _ceil(churn_each, limit) if churn_each else 0,
                        # A controller that acts within its min interval, not at the end of the stream:
                        # each round's detaches and attaches leave before the next round arrives.
                        "churn_rounds": services * rounds * 2 * _ceil(replace, limit) if replace else 0},
        "no_coalesce": no_coalesce,
        "expected_load": expected_load,
        "expected_final": {state.service: sorted(m.ip for m in state.members()) for state in states},
    }
    (directory / "meta.json").write_text(json.dumps(meta))
    return directory


def _expected(raw: dict[str, list[str]]) -> dict[Any, set[Any]]:
    from benchmarks.pipeline import PORT, target_ref
    from negsync.core.model import TargetEndpoint

    return {target_ref("bench", svc): {TargetEndpoint(ip, PORT) for ip in ips} for svc, ips in raw.items()}


def _measure_cloud(params: dict[str, Any]) -> dict[str, Any]:
    """RSS of the in-memory cloud alone: the same pools and members, attached directly."""
    from benchmarks.pipeline import PORT, pod_ip, target_ref
    from negsync.core.bindings import MemoryTarget
    from negsync.core.model import BindingKey, TargetEndpoint
    from negsync.providers.memory import MemoryProvider

    services, endpoints, limit = params["services"], params["endpoints"], params["limit"]
    before = proc_status_bytes("VmRSS")
    provider = MemoryProvider(health_checking=False, max_batch_size=limit)
    n = 0
    for s in range(services):
        name = f"svc-{s:05d}"
        ref = target_ref("bench", name)
        provider.ensure_target(ref, binding=BindingKey("bench", name), spec=MemoryTarget(f"bench-{name}"))
        members = []
        for _ in range(endpoints):
            n += 1
            members.append(TargetEndpoint(pod_ip(n), PORT))
        provider.attach(ref, members)
    provider.calls.clear()
    after = proc_status_bytes("VmRSS")
    return {"cloud_bytes": after - before}


def measure(params: dict[str, Any]) -> dict[str, Any]:
    """One replay in this (fresh) interpreter."""
    if params.get("mode") == "cloud":
        return _measure_cloud(params)
    if params.get("mode") == "stages":
        from benchmarks.pipeline import stage_costs

        return stage_costs(endpoints=params["endpoints"], replace=params["replace"])
    from benchmarks.pipeline import Pipeline, binding_obj, service_obj
    from negsync.providers.memory import MemoryProvider

    directory = Path(params["dir"])
    meta = json.loads((directory / "meta.json").read_text())
    expected_load = _expected(meta.pop("expected_load"))
    expected_final = _expected(meta.pop("expected_final"))
    provider = MemoryProvider(health_checking=False, max_batch_size=meta["limit"], max_recorded_calls=None)
    # The controller's default --sync-min-interval: what a production deployment coalesces with.
    pipeline = Pipeline(provider=provider, workers=params.get("workers", 4), min_interval=params.get("min_interval", 0.5))
    names = [ref.name.removeprefix("bench-") for ref in expected_final]
    pipeline.seed([service_obj("bench", n) for n in names], [binding_obj("bench", n) for n in names])
    pipeline.start()
    pipeline.wait_converged({}, timeout=10.0)
    rss_before = proc_status_bytes("VmRSS")
    timeout = params.get("timeout", 600.0)

    with (directory / "stream.jsonl").open("rb") as stream:
        wall0, cpu0 = time.perf_counter(), time.process_time()
        for index, line in enumerate(stream):
            pipeline.feed(line)
            if index + 1 == meta["load_lines"]:
                load_ok = pipeline.wait_converged(expected_load, timeout=timeout)
                wall1, cpu1 = time.perf_counter(), time.process_time()
                rss_loaded = proc_status_bytes("VmRSS")
                calls_load = len(provider.calls)
        final_ok = pipeline.wait_converged(expected_final, timeout=timeout)
        wall2, cpu2 = time.perf_counter(), time.process_time()
    peak = proc_status_bytes("VmHWM")
    calls = list(provider.calls)
    pipeline.stop()

    # The floor: the same file, read and json-decoded, nothing else (after the RSS readings).
    with (directory / "stream.jsonl").open("rb") as stream:
        f_wall0, f_cpu0 = time.perf_counter(), time.process_time()
        for line in stream:
            json.loads(line)
        floor_wall, floor_cpu = time.perf_counter() - f_wall0, time.process_time() - f_cpu0

    calls_churn = len(calls) - calls_load
    changes = meta["changes"]["load"] + meta["changes"]["churn"]
    return {
        "converged": bool(load_ok and final_ok),
        "tracked": meta["changes"]["load"],
        "changes": meta["changes"], "members_changed": meta["members_changed"],
        "lower_bound": meta["lower_bound"], "no_coalesce": meta["no_coalesce"],
        "calls": {"load": calls_load, "churn": calls_churn},
        "max_call_size": max((c.size for c in calls), default=0),
        "members_sent": {op: sum(c.size for c in calls if c.operation == op) for op in ("attach", "detach")},
        "wall": {"load": wall1 - wall0, "churn": wall2 - wall1, "total": wall2 - wall0},
        "cpu": {"load": cpu1 - cpu0, "churn": cpu2 - cpu1, "total": cpu2 - cpu0},
        "cpu_us_per_change": (cpu2 - cpu0) / changes * 1e6,
        "floor": {"wall": floor_wall, "cpu": floor_cpu},
        "time_over_floor": (wall2 - wall0) / floor_wall,
        "rss": {"before": rss_before, "loaded": rss_loaded, "peak": peak},
        "bytes_per_endpoint": (rss_loaded - rss_before) / meta["changes"]["load"],
    }


def run(*, quick: bool = False, repeat: int = 3, **overrides: Any) -> list[Row]:
    params = {**(QUICK if quick else DEFAULTS), **overrides}
    with tempfile.TemporaryDirectory(prefix="negsync-churn-") as tmp:
        generate(Path(tmp), **{k: params[k] for k in ("services", "endpoints", "rounds", "replace", "limit")})
        size = (Path(tmp) / "stream.jsonl").stat().st_size
        child = {**params, "dir": tmp}
        results = [run_child("churn", child, timeout=1800) for _ in range(repeat)]
        clouds = [run_child("churn", {**params, "mode": "cloud"}, timeout=600)["cloud_bytes"] for _ in range(repeat)]
    return rows(params, results, clouds, size)


def rows(params: dict[str, Any], results: list[dict[str, Any]], clouds: list[int], size: int) -> list[Row]:
    first = results[0]
    tracked = first["tracked"]
    lb = first["lower_bound"]
    lower = lb["load"] + lb["churn"]
    calls = [r["calls"]["load"] + r["calls"]["churn"] for r in results]
    ratio = median([c / lower for c in calls])
    per_change = median([r["cpu_us_per_change"] for r in results])
    over_floor = median([r["time_over_floor"] for r in results])
    bpe = median([r["bytes_per_endpoint"] for r in results])
    cloud_bpe = median([c / tracked for c in clouds])
    n = len(results)
    scale = f"{params['services']:,} × {params['endpoints']} = {tracked:,} endpoints"
    return [
        Row("scale", f"{scale}; {params['rounds']} churn rounds × {params['replace']} replaced per service; "
            f"{first['changes']['load'] + first['changes']['churn']:,} endpoint changes; stream {size / 1e6:.0f} MB; "
            f"median of {n}"),
        Row("everything converged (every target == desired)", "yes" if all(r["converged"] for r in results) else "**NO**",
            "yes", all(r["converged"] for r in results)),
        Row("CPU per endpoint change (all threads)", f"{per_change:.1f} µs "
            f"(load {median([r['cpu']['load'] / r['changes']['load'] * 1e6 for r in results]):.1f}, "
            f"churn {median([r['cpu']['churn'] / max(1, r['changes']['churn']) * 1e6 for r in results]):.1f})"),
        Row("cloud calls / lower bound", f"{ratio:.2f}x ({median(calls):,.0f} calls vs {lower:,}: "
            f"load {median([r['calls']['load'] for r in results]):,.0f} vs {lb['load']:,}, "
            f"churn {median([r['calls']['churn'] for r in results]):,.0f} vs {lb['churn']:,}; "
            f"no coalescing would be {first['no_coalesce']['load'] + first['no_coalesce']['churn']:,}; "
            f"largest call {max(r['max_call_size'] for r in results)})",
            "≤ 1.05x", ratio <= 1.05),
        Row("churn calls / per-round lower bound (each round's detaches and attaches in their own calls)",
            f"{median([r['calls']['churn'] for r in results]) / max(1, lb.get('churn_rounds', 0)):.2f}x "
            f"({median([r['calls']['churn'] for r in results]):,.0f} vs {lb.get('churn_rounds', 0):,})"),
        Row("total time / json-decode floor", f"{over_floor:.1f}x "
            f"({median([r['wall']['total'] for r in results]):.2f} s vs {median([r['floor']['wall'] for r in results]):.2f} s)",
            "≤ 3x", over_floor <= 3.0),
        Row("RSS per tracked endpoint (controller + in-memory cloud)", f"{bpe:,.0f} B"),
        Row(f"RSS per tracked endpoint, controller only (minus cloud {cloud_bpe:,.0f} B)", f"{bpe - cloud_bpe:,.0f} B",
            "≤ 500 B at 100k", (bpe - cloud_bpe) <= 500 if tracked >= 100_000 else None),
        Row("peak RSS (whole child, incl. interpreter)", f"{median([r['rss']['peak'] for r in results]) / 2**20:,.0f} MiB"),
    ]


if __name__ == "__main__":
    raise SystemExit(child_main(measure))
