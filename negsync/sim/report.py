"""Turning a simulated sweep and its decision into a table, a JSON document and a plot.

The decision itself (worst case over uncertain axes, refinement, the simulated pair, bootstrap,
warnings) is :mod:`negsync.sim.decision`; this module only renders it.  The JSON document only
ever gains keys: a point's ``failed_requests`` gained ``p_any`` (share of runs with any failure)
and ``max`` (the worst run) next to ``at_objective_quantile``; the recommendation gained
``simulated`` (the recommended pair's own result), ``refinement``, ``uncertainty`` (with the
points simulated to pin its interval),
``worst_case`` and ``warnings``.

Plots: the format comes from the file's suffix (``.png``, ``.svg``, ``.pdf``); a sweep over two
paths is drawn as a heatmap of the objective quantile, anything else as curves against the
(first) decision axis.  Matplotlib is imported only here, only when a plot is asked for, so that
``negsync simulate`` starts fast and matplotlib can be an optional extra.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from negsync.core.latency import Empirical
from negsync.errors import ConfigError
from negsync.sim.decision import GRACE, SLEEP, Decision, decide, unit
from negsync.sim.scenario import CAUSES
from negsync.sim.study import Study
from negsync.sim.sweep import PointSummary, plain

if TYPE_CHECKING:
    from matplotlib.figure import Figure

PLOT_FORMATS = ("png", "svg", "pdf")

__all__ = ["GRACE", "PLOT_FORMATS", "SLEEP", "figure", "plot", "recommend", "table", "to_json"]


def recommend(study: Study, summaries: list[PointSummary]) -> dict[str, Any]:
    """The recommendation as a JSON-ready mapping (runs the decision's extra simulations)."""
    return recommendation(study, decide(study, summaries))


def _failed(s: PointSummary) -> dict[str, Any]:
    return {
        "mean": round(s.failed_mean, 4),
        "p50": s.failed_p50,
        "p99": s.failed_p99,
        "at_objective_quantile": s.failed_at_objective,
        "p_any": round(s.p_any, 4),
        "max": s.failed_max,
        "expected_mean": round(s.expected_mean, 4),
        "by_cause": {c: round(s.by_cause[c], 4) for c in CAUSES},
    }


def _point(s: PointSummary, goal: float) -> dict[str, Any]:
    return {
        "params": s.params,
        "failed_requests": _failed(s),
        "meets_objective": s.failed_at_objective <= goal,
        "duration_seconds": {"mean": round(s.duration_mean, 3), "p99": round(s.duration_p99, 3)},
        "min_capacity": {"mean": round(s.min_capacity_mean, 3), "min": s.min_capacity_min},
        # failed attempts that an LB or client retry absorbed: counted apart from failed_requests
        "absorbed_by_retry": {
            "mean": round(s.absorbed_mean, 4),
            "by_path": {k: round(v, 4) for k, v in s.absorbed_by.items()},
        },
    }


def recommendation(study: Study, decision: Decision) -> dict[str, Any]:
    goal = study.base.objective.failed_requests
    out: dict[str, Any] = dict(decision.values)
    out["reason"] = decision.reason
    out["simulated"] = None if decision.pair is None else {
        "params": decision.pair.params, "failed_requests": _failed(decision.pair),
        "meets_objective": decision.pair.failed_at_objective <= goal,
    }
    out["worst_case"] = decision.worst_case
    out["refinement"] = None if decision.refined_axis is None else {
        "axis": decision.refined_axis,
        "resolution": decision.resolution,
        "bracket": list(decision.bracket) if decision.bracket else None,
        "grid_choice": decision.grid_choice,
        "points": [_point(s, goal) for s in sorted(decision.refined, key=lambda s: tuple(s.params.values()))],
    }
    out["uncertainty"] = None if decision.same_value_share is None else {
        "method": "bootstrap over runs (joint across points, common random numbers kept)",
        "resamples": decision.resamples,
        "same_value_share": round(decision.same_value_share, 4),
        "interval": list(decision.interval) if decision.interval else None,
        "interval_level": 0.9,
        "points": [_point(s, goal) for s in sorted(decision.interval_points, key=lambda s: tuple(s.params.values()))],
    }
    out["warnings"] = [{"code": c.code, "message": c.message} for c in decision.cautions]
    return out


def to_json(study: Study, summaries: list[PointSummary], recommendation: dict[str, Any]) -> dict[str, Any]:
    base = study.base
    goal = base.objective.failed_requests
    return {
        "scenario": base.kind,
        "runs": base.runs,
        "seed": base.seed,
        "objective": {"failed_requests": goal, "quantile": base.objective.quantile},
        "uncertain": list(study.uncertain),
        "points": [_point(s, goal) for s in summaries],
        "recommendation": recommendation,
    }


def _fmt(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 100:
        return f"{value:.0f}"
    return f"{value:.3g}"


def _qname(q: float) -> str:
    return f"p{q * 100:g}"


def table(study: Study, summaries: list[PointSummary], decision: Decision | None = None) -> str:
    """One row per grid point, plus the refinement's points (marked) when a decision is given."""
    base = study.base
    q, goal = base.objective.quantile, base.objective.failed_requests
    duration = "rollout s" if base.kind == "rolling-update" else "event s"
    objective_col = [] if q in (0.5, 0.99) else [_qname(q)]
    header = [
        *study.swept, "failed mean", "p50", "p99", *objective_col, "max", "p_any", *CAUSES, "absorbed",
        f"{duration} mean", f"{duration} p99", "min capacity", f"{_qname(q)}<={goal:g}",
    ]
    rows: list[tuple[str, PointSummary]] = [("", s) for s in summaries]
    if decision is not None:
        rows.extend(("refined", s) for s in decision.refined)
        rows.extend(("interval", s) for s in decision.interval_points)
        rows.sort(key=lambda r: tuple(float(v) for v in r[1].params.values()))
        header.append("point")
    lines_out = []
    for mark, s in rows:
        lines_out.append([
            *(_fmt(v) for v in s.params.values()),
            _fmt(s.failed_mean), str(s.failed_p50), str(s.failed_p99),
            *([str(s.failed_at_objective)] if objective_col else []),
            str(s.failed_max), f"{s.p_any:.1%}",
            *(_fmt(s.by_cause[c]) for c in CAUSES), _fmt(s.absorbed_mean),
            f"{s.duration_mean:.1f}", f"{s.duration_p99:.1f}", f"{s.min_capacity_mean:.3g}",
            "yes" if s.failed_at_objective <= goal else "no",
            *([mark or "grid"] if decision is not None else []),
        ])
    widths = [max(len(h), *(len(r[i]) for r in lines_out)) for i, h in enumerate(header)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(header, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines.extend("  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in lines_out)
    return "\n".join(lines)


def details(study: Study, decision: Decision) -> list[str]:
    """The lines between the table and the recommendation: refinement, pair, uncertainty, warnings."""
    q = study.base.objective.quantile
    out = []
    if decision.refined_axis is not None and decision.bracket is not None:
        chosen = decision.values.get(decision.refined_axis)
        res = f"{decision.resolution:g} {unit(decision.refined_axis)}"
        out.append(
            f"refined: {decision.refined_axis} between {decision.bracket[0]} (fails) and {decision.bracket[1]} "
            f"(passes) to {res}, common random numbers: {chosen} (grid alone: {decision.grid_choice})"
        )
    if decision.pair is not None:
        p = decision.pair
        shown = ", ".join(f"{k}={v}" for k, v in p.params.items())
        out.append(
            f"simulated pair: {shown}: {_qname(q)} {p.failed_at_objective}, mean {_fmt(p.failed_mean)}, "
            f"worst run {p.failed_max}, runs with any failure {p.p_any:.1%}"
        )
    if decision.same_value_share is not None:
        interval = ""
        if decision.interval is not None:
            lo, hi = decision.interval
            interval = (f"; 90% interval {lo if lo is not None else 'beyond the sweep'}"
                        f"–{hi if hi is not None else 'beyond the sweep'}")
        out.append(
            f"uncertainty: the same value in {decision.same_value_share:.0%} of {decision.resamples} "
            f"bootstrap resamples of the runs{interval}"
        )
    out.extend(f"warning ({c.code}): {c.message}" for c in decision.cautions)
    return out


def recommendation_line(recommendation: dict[str, Any]) -> str:
    skip = {"reason", "simulated", "worst_case", "refinement", "uncertainty", "warnings"}
    values = {k: v for k, v in recommendation.items() if k not in skip}
    if all(v is None for v in values.values()):
        return f"recommendation: none: {recommendation['reason']}"
    shown = ", ".join(f"{k}={v}" for k, v in values.items())
    return f"recommendation: {shown} ({recommendation['reason']})"


# --------------------------------------------------------------------------- plots


def plot_format(path: Path) -> str:
    """The image format named by the file's suffix; bad input is a ConfigError on ``--plot``."""
    suffix = path.suffix.lower().lstrip(".")
    if suffix not in PLOT_FORMATS:
        raise ConfigError(
            "--plot", f"cannot tell the format of {path.name!r} from its suffix: use .png, .svg or .pdf"
        )
    return suffix


def _label(path: str) -> str:
    return f"{path} ({unit(path)})"


def calibrated(study: Study) -> bool:
    """True when a delay comes from measurements (an empirical distribution), not a preset."""
    s = study.base
    return any(isinstance(d, Empirical) for d in (s.lb.attach_delay, s.lb.detach_delay, s.controller.reaction))


def title(study: Study) -> str:
    s = study.base
    lb = f"preset {s.lb.preset}" if s.lb.preset else "custom lb"
    where = "calibrated" if calibrated(study) else "not calibrated (preset delays)"
    return (f"{s.kind}: {s.workload.replicas} replicas, {s.traffic.rps:g} rps, {lb}, {where}\n"
            f"{s.runs} runs per point, objective {_qname(s.objective.quantile)} failed requests "
            f"<= {s.objective.failed_requests:g}")


def _symlog_ticks(ax: Any, top: float) -> None:
    """Explicit 0, 1, 10, 100... ticks: a symlog axis otherwise loses its labels on small ranges."""
    from matplotlib.ticker import FixedLocator, FuncFormatter

    decades = max(1, math.ceil(math.log10(max(top, 1.0) + 1e-9)))
    if 10**decades <= top:
        decades += 1
    ticks = [0.0, *(10.0**i for i in range(decades + 1))]
    ax.set_ylim(-0.3, 10.0**decades * 1.5)
    ax.yaxis.set_major_locator(FixedLocator(ticks))
    ax.yaxis.set_minor_locator(FixedLocator([]))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:,.0f}"))


def figure(study: Study, summaries: list[PointSummary], decision: Decision) -> Figure:
    """The figure ``plot`` writes (kept separate so tests can inspect it)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 5.5), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    if len(study.swept) == 2:
        _heatmap(fig, ax, study, summaries, decision)
    else:
        _curves(fig, ax, study, summaries, decision)
    fig.suptitle(title(study), fontsize=10)
    return fig


def _curves(fig: Any, ax: Any, study: Study, summaries: list[PointSummary], decision: Decision) -> None:
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    base = study.base
    q, goal = base.objective.quantile, base.objective.failed_requests
    axis = study.decisions[0] if study.decisions else (study.swept[0] if study.swept else None)
    points = [*summaries, *decision.refined, *decision.interval_points]
    combos = sorted({tuple((p, s.params[p]) for p in study.swept if p != axis) for s in points})
    top = 1.0
    ax2 = ax.twinx()
    extra_handles: list[Any] = []
    for i, combo in enumerate(combos):
        members = sorted((s for s in points if all(s.params[p] == v for p, v in combo)),
                         key=lambda s: float(s.params[axis]) if axis else 0.0)
        if axis is not None:
            xs = [float(s.params[axis]) for s in members]
        else:
            xs = [float(i) for i in range(len(members))]
        colour = f"C{(3 + i) % 10}"
        single = len(combos) == 1
        if single:
            ax.fill_between(xs, [s.failed_p50 for s in members], [s.failed_p99 for s in members],
                            alpha=0.2, color=colour, label="failed requests p50–p99")
        else:  # one colour per uncertain combination; the line styles are explained once, below
            extra_handles.append(Patch(color=colour, label=", ".join(f"{p}={plain(v)}" for p, v in combo)))
        ax.plot(xs, [s.failed_mean for s in members], "o-", color=colour,
                label="failed requests mean" if single else "_")
        ax.plot(xs, [s.failed_at_objective for s in members], "v--", color=colour, alpha=0.8,
                label=f"failed requests {_qname(q)} (objective quantile)" if single else "_")
        top = max(top, *(s.failed_max for s in members), *(s.failed_at_objective for s in members))
        if len(combos) == 1:
            ax2.plot(xs, [s.duration_mean for s in members], "s:", color="tab:blue", alpha=0.6,
                     label="rollout / event duration mean")
    ax.axhline(goal, color="black", linestyle="-.", linewidth=1,
               label=f"objective: {_qname(q)} <= {goal:g} failed requests")
    if axis is not None and decision.values.get(axis) is not None:
        value = float(decision.values[axis])  # type: ignore[arg-type]
        grace = decision.values.get(GRACE)
        extra = f", grace {grace} s" if axis == SLEEP and grace is not None else ""
        ax.axvline(value, color="tab:green", linewidth=2,
                   label=f"recommended {axis} = {plain(value)} {unit(axis)}{extra}")
    ax.set_yscale("symlog", linthresh=1)
    _symlog_ticks(ax, top)
    ax.set_xlabel(_label(axis) if axis else "scenario as written")
    ax.set_ylabel("failed requests per rollout / event")
    ax2.set_ylabel("duration (s)")
    if len(combos) != 1:
        ax2.set_yticks([])
        ax2.set_ylabel("")
    handles, _ = ax.get_legend_handles_labels()
    handles2, _ = ax2.get_legend_handles_labels()
    if extra_handles:
        styles = [Line2D([], [], color="grey", marker="o", linestyle="-", label="failed requests mean"),
                  Line2D([], [], color="grey", marker="v", linestyle="--",
                         label=f"failed requests {_qname(q)} (objective quantile)")]
        handles = styles + extra_handles + handles
    fig.legend(handles=handles + handles2, loc="outside lower center", ncols=2, fontsize=8)


def _heatmap(fig: Any, ax: Any, study: Study, summaries: list[PointSummary], decision: Decision) -> None:
    import numpy as np
    from matplotlib.colors import LogNorm
    from matplotlib.patches import Patch, Rectangle

    base = study.base
    q, goal = base.objective.quantile, base.objective.failed_requests
    x_path = study.decisions[0] if study.decisions else study.swept[0]
    y_path = next(p for p in study.swept if p != x_path)
    xs = sorted({float(s.params[x_path]) for s in summaries})
    ys = sorted({float(s.params[y_path]) for s in summaries})
    grid = np.full((len(ys), len(xs)), np.nan)
    for s in summaries:
        grid[ys.index(float(s.params[y_path])), xs.index(float(s.params[x_path]))] = s.failed_at_objective
    image = ax.imshow(grid + 1, origin="lower", aspect="auto", cmap="magma_r",
                      norm=LogNorm(vmin=1, vmax=max(10.0, float(np.nanmax(grid)) + 1)))
    for (row, col), value in np.ndenumerate(grid):
        ax.text(col, row, f"{value:,.0f}", ha="center", va="center", fontsize=7,
                color="white" if value > 30 else "black")
        if value <= goal:
            ax.add_patch(Rectangle((col - 0.5, row - 0.5), 1, 1, fill=False, edgecolor="tab:green", linewidth=2))
    ax.set_xticks(range(len(xs)), [f"{plain(x)}" for x in xs])
    ax.set_yticks(range(len(ys)), [f"{plain(y)}" for y in ys])
    ax.set_xlabel(_label(x_path))
    ax.set_ylabel(_label(y_path) + (" — uncertain, taken at its worst" if y_path in study.uncertain else ""))
    bar = fig.colorbar(image, ax=ax)
    bar.set_label(f"failed requests {_qname(q)} + 1 (log)")
    handles: list[Any] = [Patch(fill=False, edgecolor="tab:green", linewidth=2,
                                label=f"meets objective: {_qname(q)} <= {goal:g}")]
    value = decision.values.get(x_path)
    if value is not None:
        position = float(np.interp(float(value), xs, range(len(xs))))
        handles.append(ax.axvline(position, color="tab:blue", linestyle="--", linewidth=2.5,
                                  label=f"recommended {x_path} = {value} {unit(x_path)}"))
    fig.legend(handles=handles, loc="outside lower center", ncols=2, fontsize=8)


def plot(study: Study, summaries: list[PointSummary], path: Path, decision: Decision | None = None) -> None:
    """Write the figure to ``path`` in the format its suffix names."""
    fmt = plot_format(path)
    fig = figure(study, summaries, decision if decision is not None else decide(study, summaries))
    fig.savefig(path, format=fmt)
