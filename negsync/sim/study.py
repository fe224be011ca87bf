"""A study: the scenario and the sweep points it is run at, each validated like a written file.

Each sweep point is the resolved raw form (:func:`negsync.sim.loader.resolve`) with the swept
dotted paths overwritten, validated again by :func:`~negsync.sim.scenario.parse_scenario`, so a
swept value is checked exactly like a written one and an invalid one is reported as
``sweep.<path>: value V is invalid: ...``.  A sweep path must name an existing numeric field of
the resolved form (``drain.pre_stop_sleep``, ``lb.detach_delay.value``, ``traffic.rps``...).
Points off the grid (the refinement, the recommended pair) are built the same way by
:func:`point_at`.
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from negsync.errors import ConfigError
from negsync.sim.scenario import DEFAULT_RESOLUTION, MAX_SWEEP_POINTS, Scenario, parse_scenario

# Swept paths under these prefixes are settings one chooses; any other swept path (lb.*, traffic.*,
# controller.reaction, workload.startup) describes the world and is uncertain unless marked otherwise.
_DECISION_PREFIXES = (
    "drain.", "workload.replicas", "workload.max_surge", "workload.max_unavailable", "workload.remove",
    "workload.pods_per_node",
)


@dataclass(frozen=True, slots=True)
class SweepPoint:
    params: tuple[tuple[str, float], ...]  # (dotted path, value) in sweep order
    scenario: Scenario


@dataclass(frozen=True, slots=True)
class Study:
    """A scenario and the sweep points to run it at (one point with no params when no sweep).

    ``uncertain`` names the swept paths that describe the world rather than a setting (taken at
    their worst when recommending); ``resolutions`` the step, per swept path, to which a
    recommendation is refined.  ``tree`` is the resolved raw form, so that points off the grid
    (refinement, the recommended pair) can be built with :func:`point_at`.
    """

    base: Scenario
    swept: tuple[str, ...]
    points: tuple[SweepPoint, ...]
    uncertain: tuple[str, ...] = ()
    resolutions: tuple[tuple[str, float], ...] = ()
    tree: Mapping[str, Any] | None = None
    base_dir: Path | None = None

    @property
    def decisions(self) -> tuple[str, ...]:
        """The swept paths that are settings to choose (every swept path not uncertain)."""
        return tuple(p for p in self.swept if p not in self.uncertain)

    def resolution(self, path: str) -> float:
        return dict(self.resolutions).get(path, DEFAULT_RESOLUTION)


def uncertain_by_default(path: str) -> bool:
    """Whether a swept path describes the world (``lb.*``, ``traffic.*``...) rather than a setting."""
    return not path.startswith(_DECISION_PREFIXES)


def _get(tree: Mapping[str, Any], path: str) -> Any:
    node: Any = tree
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            raise KeyError(path)
        node = node[part]
    return node


def _set(tree: dict[str, Any], path: str, value: float) -> None:
    *parents, last = path.split(".")
    node = tree
    for part in parents:
        node = node[part]
    node[last] = value


def _plain(value: float) -> float | int:
    return int(value) if float(value).is_integer() else value


def _point(
    tree: Mapping[str, Any], params: tuple[tuple[str, float], ...], base_dir: Path | None
) -> SweepPoint:
    point_tree = copy.deepcopy(dict(tree))
    for path, value in params:
        _set(point_tree, path, _plain(value))
    try:
        scenario = parse_scenario(point_tree, base_dir=base_dir)
    except ConfigError as exc:
        blamed = next((p for p, _ in params if exc.field.startswith(p)), params[0][0])
        value = dict(params)[blamed]
        raise ConfigError(f"sweep.{blamed}", f"value {value:g} is invalid: {exc}") from None
    return SweepPoint(params, scenario)


def point_at(study: Study, params: Mapping[str, float]) -> SweepPoint:
    """The study's scenario with ``params`` (dotted path -> value) written over it, validated."""
    if study.tree is None:
        raise ValueError("study was built without its resolved form")
    return _point(study.tree, tuple(params.items()), study.base_dir)


def build_study(resolved: Mapping[str, Any], *, base_dir: Path | None = None) -> Study:
    """Validate a resolved raw form and every sweep point it expands to."""
    base = parse_scenario(resolved, base_dir=base_dir)
    tree = {k: v for k, v in resolved.items() if k != "sweep"}
    if base.sweep is None:
        return Study(base, (), (SweepPoint((), base),), tree=tree, base_dir=base_dir)
    for path in base.sweep:
        field = f"sweep.{path}"
        if path in ("runs", "seed", "scenario") or path.startswith(("sweep", "objective")):
            raise ConfigError(field, "cannot be swept (sweep a model field such as drain.pre_stop_sleep)")
        try:
            current = _get(tree, path)
        except KeyError:
            raise ConfigError(field, "does not name a field of the scenario") from None
        if isinstance(current, bool) or not isinstance(current, int | float):
            raise ConfigError(field, f"does not name a numeric field (its value is {current!r})")
    axes = {path: axis.expand() for path, axis in base.sweep.items()}
    if math.prod(len(values) for values in axes.values()) > MAX_SWEEP_POINTS:
        raise ConfigError("sweep", f"expands to more than {MAX_SWEEP_POINTS} points")
    points = [
        _point(tree, tuple(zip(axes, combo, strict=True)), base_dir)
        for combo in itertools.product(*axes.values())
    ]
    uncertain = tuple(
        path for path, axis in base.sweep.items()
        if (uncertain_by_default(path) if axis.uncertain is None else axis.uncertain)
    )
    return Study(
        base, tuple(axes), tuple(points), uncertain=uncertain,
        resolutions=tuple((path, axis.resolution) for path, axis in base.sweep.items()),
        tree=tree, base_dir=base_dir,
    )
