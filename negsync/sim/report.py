"""Turning sweep summaries into a recommendation, a table, a JSON document and a plot.

The recommendation rule is the issue's, applied literally: among the sweep points whose failed
requests at ``objective.quantile`` are ``<= objective.failed_requests``, take the smallest swept
value (lexicographically by sweep order when several fields are swept).  Its grace period is the
preStop sleep plus the time to finish in-flight requests (the p99.9 request duration) plus a
fixed margin, rounded up to whole seconds.  When no point qualifies, every recommended value is
``None`` (JSON ``null``) and the reason says which point came closest: a value is never invented.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from negsync.sim.scenario import CAUSES, Study
from negsync.sim.sweep import PointSummary, plain

GRACE_MARGIN = 5.0  # seconds added to sleep + in-flight time in the recommended grace period
SLEEP = "drain.pre_stop_sleep"
GRACE = "drain.termination_grace_period"


def recommend(study: Study, summaries: list[PointSummary]) -> dict[str, Any]:
    base = study.base
    goal, q = base.objective.failed_requests, base.objective.quantile
    qname = f"p{q * 100:g}"
    runs = base.runs
    keys = [*study.swept, *(k for k in (SLEEP, GRACE) if k not in study.swept)]
    passing = [
        (point, summary) for point, summary in zip(study.points, summaries, strict=True)
        if summary.failed_at_objective <= goal
    ]
    if not passing:
        best = min(zip(study.points, summaries, strict=True), key=lambda ps: ps[1].failed_at_objective)
        where = ", ".join(f"{k}={v}" for k, v in best[1].params.items()) or "the scenario as written"
        reason = (
            f"no swept value meets the objective ({qname} failed requests <= {goal:g} over {runs} runs): "
            f"the best point, {where}, has {qname} = {best[1].failed_at_objective}; "
            "extend the sweep or change the scenario"
        )
        return {**dict.fromkeys(keys), "reason": reason}
    point, summary = min(passing, key=lambda ps: tuple(v for _, v in ps[0].params))
    s = point.scenario
    inflight = s.traffic.request_duration.quantile(0.999)
    sleep = s.drain.pre_stop_sleep
    serve = s.drain.health_check_drain  # the app keeps serving this long after SIGTERM
    grace = math.ceil(sleep + serve + inflight + GRACE_MARGIN)
    out: dict[str, Any] = {path: plain(value) for path, value in point.params}
    out[SLEEP] = plain(sleep)
    out[GRACE] = grace
    if study.swept:
        what = "smallest swept value" if len(study.swept) == 1 else "first sweep point (in sweep order)"
    else:
        what = "the scenario as written (no sweep)"
    out["reason"] = (
        f"{what} with {qname} failed requests <= {goal:g} over {runs} runs "
        f"({qname} = {summary.failed_at_objective}, mean {summary.failed_mean:.3g}); "
        f"grace = preStop sleep {sleep:g} s + "
        + (f"health-check drain {serve:g} s + " if serve else "")
        + f"{inflight:.2g} s to finish in-flight requests "
        f"(p99.9 request duration) + {GRACE_MARGIN:g} s margin, rounded up"
    )
    return out


def to_json(study: Study, summaries: list[PointSummary], recommendation: dict[str, Any]) -> dict[str, Any]:
    points = []
    for summary in summaries:
        points.append({
            "params": summary.params,
            "failed_requests": {
                "mean": round(summary.failed_mean, 4),
                "p50": summary.failed_p50,
                "p99": summary.failed_p99,
                "at_objective_quantile": summary.failed_at_objective,
                "expected_mean": round(summary.expected_mean, 4),
                "by_cause": {c: round(summary.by_cause[c], 4) for c in CAUSES},
            },
            "duration_seconds": {
                "mean": round(summary.duration_mean, 3), "p99": round(summary.duration_p99, 3)
            },
            "min_capacity": {"mean": round(summary.min_capacity_mean, 3), "min": summary.min_capacity_min},
            # failed attempts that an LB or client retry absorbed: counted apart from failed_requests
            "absorbed_by_retry": {
                "mean": round(summary.absorbed_mean, 4),
                "by_path": {k: round(v, 4) for k, v in summary.absorbed_by.items()},
            },
        })
    base = study.base
    return {
        "scenario": base.kind,
        "runs": base.runs,
        "seed": base.seed,
        "objective": {"failed_requests": base.objective.failed_requests, "quantile": base.objective.quantile},
        "points": points,
        "recommendation": recommendation,
    }


def _fmt(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 100:
        return f"{value:.0f}"
    return f"{value:.3g}"


def table(study: Study, summaries: list[PointSummary]) -> str:
    duration = "rollout s" if study.base.kind == "rolling-update" else "event s"
    header = [
        *study.swept, "failed mean", "p50", "p99", *CAUSES, "absorbed",
        f"{duration} mean", f"{duration} p99", "min capacity",
    ]
    rows = []
    for s in summaries:
        rows.append([
            *(_fmt(v) for v in s.params.values()),
            _fmt(s.failed_mean), str(s.failed_p50), str(s.failed_p99),
            *(_fmt(s.by_cause[c]) for c in CAUSES), _fmt(s.absorbed_mean),
            f"{s.duration_mean:.1f}", f"{s.duration_p99:.1f}", f"{s.min_capacity_mean:.3g}",
        ])
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(header, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines.extend("  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in rows)
    return "\n".join(lines)


def recommendation_line(recommendation: dict[str, Any]) -> str:
    values = {k: v for k, v in recommendation.items() if k != "reason"}
    if all(v is None for v in values.values()):
        return f"recommendation: none: {recommendation['reason']}"
    shown = ", ".join(f"{k}={v}" for k, v in values.items())
    return f"recommendation: {shown} ({recommendation['reason']})"


def plot(study: Study, summaries: list[PointSummary], path: Path) -> None:
    """PNG: failed requests (mean line, p50-p99 band) and duration (second axis) per sweep point."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if len(study.swept) == 1:
        xs: list[float] = [float(next(iter(s.params.values()))) for s in summaries]
        xlabel = study.swept[0]
    else:
        xs = [float(i) for i in range(len(summaries))]
        xlabel = "sweep point" if study.swept else "scenario"
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    ax.fill_between(xs, [s.failed_p50 for s in summaries], [s.failed_p99 for s in summaries],
                    alpha=0.3, color="tab:red", label="failed requests p50-p99")
    ax.plot(xs, [s.failed_mean for s in summaries], "o-", color="tab:red", label="failed requests mean")
    ax.set_yscale("symlog", linthresh=1)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("failed requests per event")
    ax2 = ax.twinx()
    ax2.plot(xs, [s.duration_mean for s in summaries], "s--", color="tab:blue", label="duration mean")
    ax2.set_ylabel("rollout / event duration (s)")
    lines = ax.get_legend_handles_labels()
    lines2 = ax2.get_legend_handles_labels()
    ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], loc="upper right")
    base = study.base
    ax.set_title(f"{base.kind}, {base.lb.preset or 'custom lb'}: {base.runs} runs per point")
    fig.tight_layout()
    try:
        fig.savefig(path, format="png")
    finally:
        plt.close(fig)
