"""Deciding from a sweep: a recommendation that holds, how sure it is, and what to watch for.

A grid of sweep points is only where the search starts.  The decision is taken in five steps,
each on simulations with the scenario's own seed (common random numbers: every point sees the same
random inputs, so two points differ only by the values that differ):

1. **Worst case over uncertain axes.**  A swept path is either a *decision* (a setting one
   chooses: ``drain.*``, ``workload.max_surge``...) or *uncertain* (a fact about the world one
   does not know exactly: ``lb.*``, ``traffic.*``...; ``uncertain: true|false`` on the sweep entry
   overrides).  A decision value passes only if it meets the objective at *every* uncertain value:
   a range of LB detach p99s is taken at its worst, never its best.
2. **Grid rule.**  Failed requests at ``objective.quantile`` (inverted-CDF quantile of the per-run
   totals) ``<= objective.failed_requests``.  With one decision axis the choice is the smallest
   value from which every larger swept value passes (a noisy pass below a failure is not trusted);
   with several, the first passing point in sweep order.
3. **Refinement.**  With one decision axis, bisect between the last failing and the first passing
   grid value down to the axis's ``resolution`` (default 1 s: Kubernetes takes whole seconds), so
   the grid's spacing does not decide the answer.
4. **The pair.**  The recommended preStop sleep *and* grace period are simulated together, at the
   worst uncertain value.  The grace is the sleep + the health-check drain + the p99.9 request
   duration + 5 s (rounded up) unless it is swept; if that pair misses the objective — with ``shutdown: on-sigkill`` the app
   serves until SIGKILL, so the grace, not the sleep, decides — the grace is raised to the smallest
   whole second that passes (doubling, then bisection).
5. **Uncertainty and warnings.**  The runs are resampled with replacement (bootstrap, jointly across
   points so common random numbers are kept) and the rule of steps 2–3 re-applied to every point
   simulated: the share of resamples choosing the same value, and a 90% interval of the choices
   (over the values simulated, so it is coarser far from the recommendation).  Warnings name what
   a person should check: the recommendation at the sweep's edge, a grid too coarse to refine,
   failures only from no-capacity moments, rare large failures hidden by the quantile, too few
   runs, an unstable choice, a preStop that cannot matter.

A value is never invented: when nothing passes, every recommended value is ``None``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from negsync.sim.bootstrap import bootstrap, interval_text
from negsync.sim.points import Points, choose
from negsync.sim.study import Study, point_at
from negsync.sim.sweep import PointSummary, plain

SLEEP = "drain.pre_stop_sleep"
GRACE = "drain.termination_grace_period"
GRACE_MARGIN = 5.0  # seconds added to sleep + in-flight time in the recommended grace period
MAX_GRACE = 3600.0  # seconds; the grace search gives up beyond this
STABLE_SHARE = 0.8  # below this share of resamples choosing the same value, warn
NO_CAPACITY_SHARE = 0.99  # failures "only" from no-capacity moments

@dataclass(frozen=True, slots=True)
class Caution:
    """A warning attached to a recommendation: a stable ``code`` and a sentence saying what to do."""

    code: str
    message: str


@dataclass(frozen=True, slots=True)
class Decision:
    values: dict[str, float | int | None]  # swept paths, then preStop sleep and grace
    reason: str
    cautions: tuple[Caution, ...]
    worst_case: dict[str, float | int]  # uncertain values at which the recommendation is tightest
    refined_axis: str | None = None
    resolution: float | None = None
    bracket: tuple[float | int, float | int] | None = None  # last failing, first passing grid value
    grid_choice: float | int | None = None  # what the grid alone would have chosen
    refined: tuple[PointSummary, ...] = ()  # points simulated by the refinement
    interval_points: tuple[PointSummary, ...] = ()  # points simulated to pin the interval's ends
    pair: PointSummary | None = None  # the recommended pair, at its worst uncertain value
    grace_from_formula: int | None = None
    same_value_share: float | None = None
    interval: tuple[float | int | None, float | int | None] | None = None
    resamples: int = 0
    evaluated: tuple[PointSummary, ...] = field(default=(), repr=False)  # every point simulated

    @property
    def recommended(self) -> bool:
        return any(v is not None for v in self.values.values())


def _objective_name(q: float) -> str:
    return f"p{q * 100:g}"


def decide(study: Study, grid: list[PointSummary], *, resolution: float | None = None) -> Decision:
    """Apply the five steps of this module's docstring to a simulated grid."""
    base = study.base
    q, goal = base.objective.quantile, base.objective.failed_requests
    qname = _objective_name(q)
    pts = Points(study, grid)
    decisions = study.decisions
    cautions: list[Caution] = []
    objective = f"{qname} failed requests <= {goal:g} over {base.runs} runs"

    if not study.swept:
        cautions.append(Caution(
            "no_sweep",
            "the scenario has no sweep, so this only checks the settings as written; add for example "
            "'sweep: {drain.pre_stop_sleep: {from: 0, to: 60, step: 5}}' for a recommendation",
        ))
    if base.workload.shutdown == "on-sigkill" and SLEEP in decisions:
        cautions.append(Caution(
            "prestop_ignored",
            "with workload.shutdown: on-sigkill the app ignores SIGTERM and serves until SIGKILL, so "
            "drain.pre_stop_sleep does not change when it stops; the grace period decides (sweep "
            "drain.termination_grace_period to see it)",
        ))
    if q < 1 and base.runs * (1 - q) < 1:
        cautions.append(Caution(
            "few_runs",
            f"with {base.runs} runs the {qname} is the worst run; raise runs to at least "
            f"{math.ceil(10 / (1 - q))} for a quantile that is not one run's luck",
        ))

    # step 2: the grid, each decision value at its worst uncertain value
    groups = sorted({tuple((p, float(s.params[p])) for p in decisions) for s in grid})
    worst = [pts.worst(dict(g)) for g in groups]
    grid_passes = np.array([pts.passes(w) for w in worst])
    index = int(choose(grid_passes[None, :], monotone=len(decisions) == 1)[0])
    if len(decisions) == 1 and index >= 0 and not grid_passes[:index].all() and grid_passes[:index].any():
        first = groups[int(np.argmax(grid_passes))][0][1]
        cautions.append(Caution(
            "non_monotone",
            f"{decisions[0]}={plain(first)} meets the objective but a larger swept value does not: "
            "the result is noisy at this number of runs; raise runs",
        ))
    if index < 0:
        best = min(worst, key=lambda s: (s.failed_at_objective, s.failed_mean))
        where = ", ".join(f"{k}={v}" for k, v in best.params.items()) or "the scenario as written"
        if not decisions and study.swept:
            cautions.append(Caution(
                "at_sweep_edge",
                f"the scenario's settings miss the objective at the worst uncertain value (best point {where}); "
                "sweep a setting too, for example drain.pre_stop_sleep",
            ))
        elif study.swept:
            beyond = "beyond its largest value " if all(p.startswith("drain.") for p in decisions) else ""
            cautions.append(Caution(
                "at_sweep_edge",
                f"no swept value meets the objective: extend the sweep {beyond}(best point {where}) or change "
                "the scenario",
            ))
        cautions.extend(_no_capacity(best, where))
        if study.swept:
            reason = (
                f"no swept value meets the objective ({objective}): the best point, {where}, has "
                f"{qname} = {best.failed_at_objective}; extend the sweep or change the scenario"
            )
        else:
            reason = (
                f"the scenario as written misses the objective ({objective}): {qname} = "
                f"{best.failed_at_objective}; add a sweep (for example of drain.pre_stop_sleep) to find settings that meet it"
            )
        keys = [*study.swept, *(k for k in (SLEEP, GRACE) if k not in study.swept)]
        return Decision(dict.fromkeys(keys), reason, tuple(cautions), {}, evaluated=tuple(pts.cache.values()))

    chosen: dict[str, float] = dict(groups[index])
    grid_choice: float | int | None = None
    refined_axis: str | None = None
    bracket: tuple[float | int, float | int] | None = None
    step_res: float | None = None
    if len(decisions) == 1:
        axis = decisions[0]
        grid_values = [g[0][1] for g in groups]
        grid_choice = plain(grid_values[index])
        step_res = resolution if resolution is not None else study.resolution(axis)
        if index == 0:
            if grid_values[0] > 0:
                cautions.append(Caution(
                    "at_sweep_edge",
                    f"the smallest swept value, {axis}={plain(grid_values[0])}, already meets the objective: "
                    "smaller values were not simulated; extend the sweep downwards",
                ))
        else:
            # step 3: bisect between the last failing and the first passing grid value
            lo, hi = grid_values[index - 1], grid_values[index]
            bracket = (plain(lo), plain(hi))
            refined_axis = axis
            steps = max(1, math.ceil((hi - lo) / step_res - 1e-9))
            fail_k, pass_k = 0, steps
            while pass_k - fail_k > 1:
                mid = (fail_k + pass_k) // 2
                if pts.passes(pts.worst({axis: _at(lo, hi, mid, steps, step_res)})):
                    pass_k = mid
                else:
                    fail_k = mid
            chosen = {axis: _at(lo, hi, pass_k, steps, step_res)}
            below = pts.worst({axis: _at(lo, hi, fail_k, steps, step_res)})
            cautions.extend(_no_capacity(below, f"{axis}={plain(below.params[axis])}"))
    elif len(decisions) > 1:
        cautions.append(Caution(
            "grid_too_coarse",
            f"with {len(decisions)} decision axes the grid is not refined: the recommendation is only as "
            f"fine as the sweep's steps ({', '.join(decisions)}); sweep one of them at a time to refine",
        ))

    # step 4: the recommended pair, simulated at its worst uncertain value
    at_choice = pts.worst(chosen)
    scenario = point_at(study, {**chosen, **dict(pts.combos[0])}).scenario
    sleep = float(chosen.get(SLEEP, scenario.drain.pre_stop_sleep))
    inflight = scenario.traffic.request_duration.quantile(0.999)
    serve = scenario.drain.health_check_drain  # the app keeps serving this long after SIGTERM
    formula: int | None = None
    if GRACE in decisions:
        grace = float(chosen[GRACE])
    else:
        formula = math.ceil(sleep + serve + inflight + GRACE_MARGIN)
        grace = float(formula)
    pair_params = {**chosen, SLEEP: sleep, GRACE: grace}
    pair = pts.worst(pair_params)
    if not pts.passes(pair) and GRACE not in decisions:
        failing = pair
        raised = _raise_grace(pts, pair_params, grace)
        if raised is None:
            reason = (
                f"{_describe(chosen)} meets the objective ({objective}) at the scenario's grace period, but no "
                f"grace period up to {MAX_GRACE:g} s does with preStop sleep {sleep:g} s; check the scenario"
            )
            keys = [*study.swept, *(k for k in (SLEEP, GRACE) if k not in study.swept)]
            return Decision(dict.fromkeys(keys), reason, tuple(cautions), {}, evaluated=tuple(pts.cache.values()))
        grace, pair = raised
        why = (" (workload.shutdown: on-sigkill: the app serves until SIGKILL, so the grace period decides)"
               if scenario.workload.shutdown == "on-sigkill" else "")
        cautions.append(Caution(
            "grace_raised",
            f"the grace period from the formula, {formula} s, misses the objective when simulated "
            f"({qname} = {failing.failed_at_objective}, mean {failing.failed_mean:.1f}){why}; raised to the "
            f"smallest passing whole second, {plain(grace)} s",
        ))
    if pair.failed_max > goal:
        cautions.append(Caution(
            "rare_large_failures",
            f"the objective holds at the {qname}, but {pair.p_any:.1%} of runs still fail requests and the "
            f"worst loses {pair.failed_max}; set objective.quantile higher "
            f"({'0.999, or ' if q < 0.999 else ''}1 for the worst run) if rare large failures matter",
        ))

    # step 5: bootstrap over runs
    before_bootstrap = len(pts.added)
    share, interval, resamples = bootstrap(study, pts, decisions, chosen, step_res)
    if share is not None and share < STABLE_SHARE:
        shown = interval_text(interval)
        cautions.append(Caution(
            "unstable",
            f"the same value is chosen in only {share:.0%} of {resamples} bootstrap resamples of the runs"
            f"{shown}; raise runs for a firmer answer",
        ))

    worst_case = {p: plain(pair.params[p]) for p in study.uncertain}
    values: dict[str, float | int | None] = {}
    for path in study.swept:
        values[path] = plain(chosen[path]) if path in chosen else worst_case.get(path)
    values[SLEEP] = plain(sleep)
    values[GRACE] = plain(grace) if grace != math.floor(grace) else int(grace)

    if not study.swept:
        what = "the scenario as written (no sweep)"
    elif len(decisions) == 1:
        what = "smallest swept value"
    elif decisions:
        what = "first sweep point (in sweep order)"
    else:
        what = "the scenario's settings"
    parts = [f"{what} with {objective} ({qname} = {at_choice.failed_at_objective}, mean {at_choice.failed_mean:.3g})"]
    if study.uncertain:
        parts.append("at the worst of " + ", ".join(
            f"{p} in [{plain(min(c[i][1] for c in pts.combos))}, {plain(max(c[i][1] for c in pts.combos))}]"
            for i, p in enumerate(study.uncertain)))
    if refined_axis is not None and bracket is not None:
        parts.append(
            f"refined between {bracket[0]} (fails) and {bracket[1]} (passes) to a resolution of {step_res:g} {unit(refined_axis)}"
            f" with common random numbers (grid alone: {grid_choice})")
    if formula is not None and grace == formula:
        parts.append(f"grace = preStop sleep {sleep:g} s + "
                     + (f"health-check drain {serve:g} s + " if serve else "")
                     + f"{inflight:.2g} s to finish in-flight requests "
                     f"(p99.9 request duration) + {GRACE_MARGIN:g} s margin, rounded up")
    parts.append(f"the pair simulated: {qname} = {pair.failed_at_objective}, mean {pair.failed_mean:.3g}, "
                 f"worst run {pair.failed_max}")
    return Decision(
        values=values, reason="; ".join(parts), cautions=tuple(cautions), worst_case=worst_case,
        refined_axis=refined_axis, resolution=step_res if refined_axis else None, bracket=bracket,
        grid_choice=grid_choice, refined=tuple(s for s in pts.added[:before_bootstrap] if _on_axis(s, study)),
        interval_points=tuple(s for s in pts.added[before_bootstrap:] if _on_axis(s, study)),
        pair=pair, grace_from_formula=formula, same_value_share=share, interval=interval,
        resamples=resamples, evaluated=tuple(pts.cache.values()),
    )


def unit(path: str) -> str:
    """The unit of a scenario path, for labels and messages."""
    if path == "traffic.rps":
        return "requests/s"
    if path.startswith("workload.") and not path.startswith("workload.startup"):
        return "pods"
    if path.rsplit(".", 1)[-1].endswith("_threshold"):
        return "checks"
    return "s"


def _at(lo: float, hi: float, k: int, steps: int, res: float) -> float:
    return hi if k >= steps else round(lo + k * res, 9)


def _on_axis(summary: PointSummary, study: Study) -> bool:
    """A refinement point: exactly the swept paths, nothing of the pair's extra settings."""
    return set(summary.params) == set(study.swept)


def _describe(params: Mapping[str, float]) -> str:
    return ", ".join(f"{k}={plain(v)}" for k, v in params.items()) or "the scenario as written"


def _no_capacity(summary: PointSummary, where: str) -> list[Caution]:
    total = sum(summary.by_cause.values())
    if total <= 0 or summary.by_cause.get("no_capacity", 0.0) < NO_CAPACITY_SHARE * total:
        return []
    return [Caution(
        "no_capacity_only",
        f"the failures at {where} come only from moments with no endpoint in rotation (no_capacity): "
        "a longer preStop sleep does not remove them; keep readiness gates on, add replicas or "
        "max_surge, or lower max_unavailable",
    )]


def _raise_grace(
    pts: Points, params: dict[str, float], start: float
) -> tuple[float, PointSummary] | None:
    """The smallest whole-second grace above ``start`` that meets the objective, and its point."""
    low = start
    high = max(start + 1, math.ceil(start * 2))
    found: PointSummary | None = None
    while high <= MAX_GRACE:
        candidate = pts.worst({**params, GRACE: high})
        if pts.passes(candidate):
            found = candidate
            break
        low, high = high, min(MAX_GRACE + 1, high * 2)
    if found is None:
        return None
    while high - low > 1:
        mid = math.floor((low + high) / 2)
        candidate = pts.worst({**params, GRACE: mid})
        if pts.passes(candidate):
            high, found = mid, candidate
        else:
            low = mid
    return float(high), found
