"""Benchmark 7 — Kubernetes' own scale limits: 150,000 endpoints in 10,000 Services.

The upstream scalability thresholds (kubernetes/community, sig-scalability
``configs-and-limits/thresholds.md``) are 150,000 pods and 10,000 Services per cluster; this
benchmark puts every one of those pods behind a TargetBinding: 10,000 Services × 15 endpoints.
Objects are what the EndpointSlice controller writes (``benchmarks.pipeline.SliceState``: one
slice per Service, ``nodeName``, ``zone``, a Pod ``targetRef`` with name and UID on every endpoint,
the managed-by and service-name labels).

It reuses the other benchmarks' children at this size, each in a fresh interpreter:

* **churn** (:mod:`benchmarks.churn`): the load of all 10,000 slices through the real per-event
  path into a converged in-memory cloud (the "cold start" of the sync pipeline, with the caches
  already listed), RSS per tracked endpoint (controller only: the in-memory cloud's own pools are
  measured separately and subtracted), peak RSS, and the process CPU per endpoint change against
  the CPU of ``json.loads`` of the same stream in the same child (the floor: no controller can
  avoid decoding what the API server sends);
* **reaction** (:mod:`benchmarks.reaction`): 1,000 endpoint changes/s spread over the 10,000
  Services, terminating update → detach call, at ``--sync-min-interval`` 0 and at the default 0.5 s;
* **cold** (:mod:`benchmarks.cold`, optional, ``with_cold``): the real controller against the
  Kubernetes API emulator, process start → every target in sync.  Paced by the status PATCH of
  every binding until status writes leave the reconcile path (issue 18 item 3).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from benchmarks import Row, median, run_child

DEFAULTS: dict[str, Any] = {"services": 10_000, "endpoints": 15, "rounds": 2, "replace": 3, "limit": 500,
                            "rate": 1000.0, "duration": 10.0, "min_intervals": [0.0, 0.5], "with_cold": False}
QUICK: dict[str, Any] = {**DEFAULTS, "services": 1_000, "duration": 3.0}


def run(*, quick: bool = False, repeat: int = 3, **overrides: Any) -> list[Row]:
    params = {**(QUICK if quick else DEFAULTS), **overrides}
    services, endpoints = params["services"], params["endpoints"]
    tracked = services * endpoints
    from benchmarks import churn

    with tempfile.TemporaryDirectory(prefix="negsync-scale-") as tmp:
        churn.generate(Path(tmp), **{k: params[k] for k in ("services", "endpoints", "rounds", "replace", "limit")})
        size = (Path(tmp) / "stream.jsonl").stat().st_size
        results = [run_child("churn", {**params, "dir": tmp}, timeout=3600) for _ in range(repeat)]
        clouds = [run_child("churn", {**params, "mode": "cloud"}, timeout=900)["cloud_bytes"] for _ in range(repeat)]
    cloud_bpe = median([c / tracked for c in clouds])
    bpe = median([r["bytes_per_endpoint"] for r in results]) - cloud_bpe
    cpu_ratio = median([r["cpu"]["total"] / r["floor"]["cpu"] for r in results])
    changes = results[0]["changes"]["load"] + results[0]["changes"]["churn"]
    ok = all(r["converged"] for r in results)
    rows = [
        Row("scale", f"{services:,} Services × {endpoints} endpoints = {tracked:,} endpoints (the upstream "
            f"thresholds: 150,000 pods, 10,000 Services); {params['rounds']} churn rounds × {params['replace']} "
            f"replaced per Service; {changes:,} endpoint changes; stream {size / 1e6:.0f} MB; median of {repeat}"),
        Row("every target converged", "yes" if ok else "**NO**", "yes", ok),
        Row("sync pipeline cold start: all slices decoded → every target in sync (caches listed, in-memory cloud)",
            f"{median([r['wall']['load'] for r in results]):.2f} s "
            f"({median([r['cpu']['load'] / r['changes']['load'] * 1e6 for r in results]):.1f} µs CPU per endpoint)"),
        Row("RSS per tracked endpoint, controller only", f"{bpe:,.0f} B (with the in-memory cloud "
            f"{bpe + cloud_bpe:,.0f} B)", "≤ 500 B", bpe <= 500),
        Row("RSS: synced (steady, all tracked) / peak (VmHWM, whole child)",
            f"{median([r['rss']['loaded'] for r in results]) / 2**20:,.0f} / "
            f"{median([r['rss']['peak'] for r in results]) / 2**20:,.0f} MiB"),
        Row("CPU per endpoint change / json.loads floor of the same stream",
            f"{cpu_ratio:.1f}x ({median([r['cpu_us_per_change'] for r in results]):.1f} µs vs "
            f"{median([r['floor']['cpu'] / changes * 1e6 for r in results]):.1f} µs per change)",
            "≤ 3x", cpu_ratio <= 3.0),
    ]
    stages = [run_child("churn", {"mode": "stages", "endpoints": endpoints, "replace": params["replace"]},
                        timeout=600) for _ in range(repeat)]
    stage = {name: median([s[name] for s in stages]) for name in stages[0]}
    floor = stage["json_loads"]
    rows.append(Row(
        f"CPU per slice event by stage, µs (× json.loads), one {endpoints}-endpoint event, {params['replace']} replaced",
        f"json.loads {floor:.1f}; decode {stage['decode']:.1f} ({stage['decode'] / floor:.1f}×; "
        f"{stage['decode_fresh']:.1f} without the cached record); watch path {stage['handle_event']:.1f} "
        f"({stage['handle_event'] / floor:.1f}×); DesiredState.compute {stage['compute']:.1f} "
        f"({stage['compute'] / floor:.1f}×); targets_for {stage['targets_for']:.1f}; "
        f"reconcile, nothing to send {stage['reconcile']:.1f} ({stage['reconcile'] / floor:.1f}×)"))
    for interval in params["min_intervals"]:
        reaction_params = {"services": services, "endpoints": endpoints, "rate": params["rate"],
                           "duration": params["duration"], "min_interval": interval}
        runs = [run_child("reaction", reaction_params, timeout=1800) for _ in range(repeat)]
        fine = all(r["converged"] and r["missing"] == 0 for r in runs)
        p99 = median([r["p99_ms"] for r in runs])
        goal = "≤ 50 ms" if interval == 0 else "—"
        rows.append(Row(f"reaction at --sync-min-interval {interval:g}: terminating update → detach p50 / p99 (max); "
                        f"{params['rate']:,.0f} changes/s for {params['duration']:g} s",
                        f"{median([r['p50_ms'] for r in runs]):.1f} / {p99:.1f} ms "
                        f"({median([r['max_ms'] for r in runs]):.0f} ms); all detached and converged: "
                        f"{'yes' if fine else '**NO**'}", goal, (p99 <= 50 and fine) if interval == 0 else None))
    if params["with_cold"]:
        from benchmarks import cold

        rows += [Row(f"controller cold start (API emulator): {r.metric}", r.figure, r.goal, r.met)
                 for r in cold.run(repeat=1, bindings=services, endpoints=endpoints)
                 if not r.metric.startswith("scale")]
    return rows
