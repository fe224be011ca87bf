"""Benchmark 6 — soak: a million endpoint changes through the real CLI; RSS must stay flat.

Method.  The parent starts the Kubernetes API emulator (``tests/emulators/kubeapi.py``, HTTP on
127.0.0.1, a bounded watch history) and seeds S Services with E ready endpoints each (one
EndpointSlice per Service) and S TargetBindings on in-memory targets.  It then runs
``python -m negsync controller --provider memory --memory-no-health-check`` — the CLI as the
Deployment runs it, default sync settings — and, once every binding reports ``Synced``, churns:
Services in turn, each step first turns ``replace`` ready endpoints *terminating* (``replace``
endpoint changes), then replaces them with as many new pods (2 × ``replace`` changes: gone + new),
at ``rate`` slice updates per second, until ``changes`` endpoint changes have been made (or the
time bound ends the run, reported).  Every ``sample`` seconds the parent reads the child's
``VmRSS`` from ``/proc/<pid>/status``.  The first ``warmup`` share of the changes is warm-up
(caches, thread stacks, allocator arenas and the in-memory cloud's bounded call record fill);
the verdict compares the samples after it: (max − min) / min ≤ 5 %.  At the end every binding
must report ``Synced`` with every serving endpoint registered — a controller that fell behind and
stopped doing the work would otherwise look flat too.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from benchmarks import Row

DEFAULTS: dict[str, Any] = {"services": 200, "endpoints": 100, "replace": 25, "changes": 1_000_000,
                            "rate": 150.0, "sample": 2.0, "warmup": 0.25, "max_seconds": 900.0}
QUICK: dict[str, Any] = {**DEFAULTS, "services": 50, "endpoints": 40, "replace": 10, "changes": 60_000,
                         "max_seconds": 240.0}
NAMESPACE = "soak"


def _rss(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _slice(state: Any) -> dict[str, Any]:
    obj: dict[str, Any] = state.obj(1)
    for field in ("resourceVersion", "uid"):  # an unconditional update; the server owns both
        obj["metadata"].pop(field, None)
    return obj


def _all_synced(kube: Any, expected: dict[str, int]) -> bool:
    for obj in kube.list_objects("negsync.io/v1alpha1", "TargetBinding", NAMESPACE):
        status = obj.get("status") or {}
        synced = any(c.get("type") == "Synced" and c.get("status") == "True" for c in status.get("conditions") or ())
        counts = status.get("endpoints") or {}
        want = expected.get(obj["metadata"]["name"])
        if not synced or counts.get("desired") != want or counts.get("registered") != want:
            return False
    return True


def measure(params: dict[str, Any]) -> dict[str, Any]:
    from benchmarks.pipeline import SliceState, binding_obj, service_obj
    from tests.emulators.kubeapi import KubeApiEmulator
    from tests.telemetry.harness import ControllerProcess

    services, endpoints, replace = params["services"], params["endpoints"], params["replace"]
    kube = KubeApiEmulator(bookmark_interval=1.0, max_history=2_000)
    kube.start()
    samples: list[tuple[int, float, int]] = []  # (changes so far, seconds, RSS)
    try:
        kube.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
        states = [SliceState(NAMESPACE, f"svc-{s:04d}") for s in range(services)]
        counter = 0
        for state in states:
            for _ in range(endpoints):
                counter += 1
                state.endpoints[counter] = False
            kube.create(service_obj(NAMESPACE, state.service))
            kube.create(_slice(state))
            kube.create(binding_obj(NAMESPACE, state.service, finalizer=False))
        expected = {s.service: endpoints for s in states}
        ctl = ControllerProcess(kube, "--provider", "memory", "--memory-no-health-check", "--log-level", "warning")
        ctl.start()
        try:
            assert ctl.proc is not None
            pid = ctl.proc.pid
            deadline = time.monotonic() + 120
            while not _all_synced(kube, expected):
                if time.monotonic() > deadline or ctl.proc.poll() is not None:
                    raise RuntimeError(f"soak: initial sync not reached\n{ctl.tail()}")
                time.sleep(0.5)
            rss_synced = _rss(pid)
            started = time.monotonic()
            next_sample = started
            stop_at = started + params["max_seconds"]
            interval = 1.0 / params["rate"]
            changes = updates = 0
            index = 0
            due = started
            while changes < params["changes"] and time.monotonic() < stop_at:
                state = states[index % services]
                index += 1
                # Step 1: `replace` ready endpoints turn terminating.
                leaving = [n for n, t in state.endpoints.items() if not t][:replace]
                for n in leaving:
                    state.endpoints[n] = True
                kube.update(_slice(state))
                # Step 2 (the next tick): they leave, as many new pods arrive.
                due += interval
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                for n in leaving:
                    del state.endpoints[n]
                    counter += 1
                    state.endpoints[counter] = False
                kube.update(_slice(state))
                changes += 3 * replace
                updates += 2
                due += interval
                now = time.monotonic()
                if now >= next_sample:
                    samples.append((changes, now - started, _rss(pid)))
                    next_sample = now + params["sample"]
                    kube.clear_requests()  # the emulator's request log is the parent's, not the controller's
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            churn_seconds = time.monotonic() - started
            settle = time.monotonic() + 120
            while not _all_synced(kube, expected):
                if time.monotonic() > settle or ctl.proc.poll() is not None:
                    break
                time.sleep(0.5)
            converged = _all_synced(kube, expected)
            samples.append((changes, time.monotonic() - started, _rss(pid)))
            hwm = 0
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    hwm = int(line.split()[1]) * 1024
            code = ctl.terminate(timeout=20)
        finally:
            ctl.stop()
    finally:
        kube.stop()
    after = [rss for n, _, rss in samples if n >= params["warmup"] * changes]
    tail = [rss for n, _, rss in samples[:-1] if n >= 0.75 * changes]  # the churn's last quarter
    return {
        "tail": {"min": min(tail, default=0), "max": max(tail, default=0), "n": len(tail)},
        "changes": changes, "updates": updates, "seconds": churn_seconds, "converged": converged,
        "exit_code": code, "rss_synced": rss_synced, "samples": samples, "peak": hwm,
        "after_warmup": {"first": after[0] if after else 0, "last": after[-1] if after else 0,
                         "min": min(after, default=0), "max": max(after, default=0), "n": len(after)},
    }


def run(*, quick: bool = False, repeat: int = 1, **overrides: Any) -> list[Row]:
    params = {**(QUICK if quick else DEFAULTS), **overrides}
    # One soak is long; it runs once whatever --repeat says (a median of one).
    result = measure(params)
    after = result["after_warmup"]
    spread = (after["max"] - after["min"]) / after["min"] if after["min"] else float("nan")
    drift = (after["last"] - after["first"]) / after["first"] if after["first"] else float("nan")
    complete = result["changes"] >= params["changes"]
    mib = 2**20
    return [
        Row("scale", f"{params['services']} Services × {params['endpoints']} endpoints; "
            f"{params['replace']} replaced per step (terminating, then gone + new); target "
            f"{params['changes']:,} endpoint changes at {params['rate']:g} slice updates/s, "
            f"at most {params['max_seconds']:g} s; one run"),
        Row("endpoint changes made (slice updates)", f"{result['changes']:,} ({result['updates']:,}) in "
            f"{result['seconds']:.0f} s = {result['changes'] / max(result['seconds'], 1e-9):,.0f}/s",
            f"{params['changes']:,}", complete),
        Row("every binding Synced with every serving endpoint registered at the end; clean exit",
            f"{'yes' if result['converged'] else '**NO**'}; exit code {result['exit_code']}", "yes",
            bool(result["converged"]) and result["exit_code"] == 0),
        Row("controller RSS: synced / end of warm-up / last / peak (VmHWM)",
            f"{result['rss_synced'] / mib:.1f} / {after['first'] / mib:.1f} / {after['last'] / mib:.1f} / "
            f"{result['peak'] / mib:.1f} MiB"),
        Row(f"RSS after warm-up ({params['warmup']:.0%} of the changes, {after['n']} samples): (max − min) / min",
            f"{spread:.1%} (min {after['min'] / mib:.1f}, max {after['max'] / mib:.1f} MiB; first → last "
            f"{drift:+.1%})", "≤ 5%", spread <= 0.05),
        Row(f"RSS over the last quarter of the churn ({result['tail']['n']} samples): (max − min) / min",
            f"{(result['tail']['max'] - result['tail']['min']) / max(result['tail']['min'], 1):.1%} "
            f"(min {result['tail']['min'] / mib:.1f}, max {result['tail']['max'] / mib:.1f} MiB)"),
    ]


def rss_series(result: dict[str, Any]) -> list[tuple[int, float]]:
    """(changes, MiB) pairs, for a plot or the doc."""
    return [(n, rss / 2**20) for n, _, rss in result["samples"]]


__all__ = ["measure", "rss_series", "run"]
