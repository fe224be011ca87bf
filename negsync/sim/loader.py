"""Scenario files in, a validated :class:`~negsync.sim.study.Study` out (also for ``negsync calibrate``).

Three steps, each raising a :class:`~negsync.errors.ConfigError` that names the field at fault:

1. :func:`read_file` / :func:`parse_text`: YAML or JSON text to a raw mapping.
2. :func:`resolve`: the *resolved raw form* — the ``lb.preset`` merged under the user's ``lb`` keys
   (``health_check`` field by field; a distribution whole, since its keys depend on its ``dist``)
   and every default of the schema filled in, in the schema's key order.  It is still a plain
   mapping (what ``negsync simulate --show`` prints, itself a valid scenario), and the defaults
   come from the model (:mod:`negsync.sim.scenario`), not from a second table.  Nothing is
   checked here: a wrong shape is left for the schema to report.
3. :func:`~negsync.sim.study.build_study`: the schema's validation of the base and of every sweep
   point.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from negsync.errors import ConfigError
from negsync.sim.fields import section
from negsync.sim.presets import PRESETS, preset
from negsync.sim.scenario import Scenario
from negsync.sim.study import Study, build_study

DEFAULT_SCENARIO = "default.yaml"
_ONLY_WHEN_WRITTEN = ("sweep",)  # top-level keys that --show prints only when the file has them


def _merge_preset(lb: Mapping[str, Any]) -> dict[str, Any]:
    name = lb.get("preset")
    base: dict[str, Any] = preset(name) if isinstance(name, str) and name in PRESETS else {}
    for key, value in lb.items():
        if key == "health_check" and isinstance(value, Mapping) and isinstance(base.get(key), Mapping):
            base[key] = {**base[key], **value}
        else:
            base[key] = copy.deepcopy(value)
    return base


def _filled(raw: Mapping[str, Any], model: type[BaseModel], *, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """``raw`` with the model's defaults (as a user writes them) for every key not given."""
    out: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        key = info.alias or name
        sub = section(info.annotation)
        default = info.get_default(call_default_factory=False)
        optional = default is not PydanticUndefined or info.default_factory is not None
        if key in raw:
            value = raw[key]
            if sub is not None and value is None and optional:
                value = {}  # an empty section in YAML (`controller:`) means its defaults
            out[key] = _filled(value, sub) if sub is not None and isinstance(value, Mapping) else copy.deepcopy(value)
        elif key in skip:
            continue
        elif sub is not None and optional:
            out[key] = _filled({}, sub)
        elif default is not PydanticUndefined:
            out[key] = copy.deepcopy(default)
    out.update((k, copy.deepcopy(v)) for k, v in raw.items() if k not in out)  # unknown: the schema names them
    return out


def resolve(raw: Any) -> Any:
    """The resolved raw form of a raw scenario (a non-mapping is returned for the schema to refuse)."""
    if not isinstance(raw, Mapping):
        return raw
    raw = dict(raw)
    if "lb" in raw and (raw["lb"] is None or isinstance(raw["lb"], Mapping)):
        raw["lb"] = _merge_preset(raw["lb"] or {})
    return _filled(raw, Scenario, skip=_ONLY_WHEN_WRITTEN)


def _overridden(raw: Any, runs: int | None, seed: int | None) -> Any:
    if isinstance(raw, Mapping):
        raw = dict(raw)
        if runs is not None:
            raw["runs"] = runs
        if seed is not None:
            raw["seed"] = seed
    return raw


def load_study(
    raw: Any, *, base_dir: Path | None = None, runs: int | None = None, seed: int | None = None
) -> Study:
    """Validate a raw scenario mapping (with optional --runs/--seed overrides) into a Study."""
    return build_study(resolve(_overridden(raw, runs, seed)), base_dir=base_dir)


def read_file(path: Path) -> Any:
    """The raw mapping in a YAML or JSON scenario file."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError("scenario", f"cannot read {path}: {exc.strerror or exc}") from None
    return parse_text(text, str(path))


def parse_text(text: str, name: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise ConfigError("scenario", f"{name} is not valid YAML or JSON{where}") from None


def default_scenario_text() -> str:
    """The packaged default scenario (identical to simulations/default.yaml)."""
    return resources.files("negsync.sim").joinpath("scenarios", DEFAULT_SCENARIO).read_text()


def _read(path: Path | None) -> tuple[Any, Path | None]:
    if path is None:
        return parse_text(default_scenario_text(), DEFAULT_SCENARIO), None
    raw = read_file(path)
    if raw is None:
        raise ConfigError(
            "scenario",
            f"{path} is empty: start from simulations/default.yaml, or print the default with every "
            "value filled in (negsync simulate --show) and edit that",
        )
    return raw, path.resolve().parent


def load_path(path: Path | None, *, runs: int | None = None, seed: int | None = None) -> Study:
    """Load a scenario file, or the packaged default when ``path`` is None."""
    raw, base_dir = _read(path)
    return load_study(raw, base_dir=base_dir, runs=runs, seed=seed)


def resolved_path(path: Path | None, *, runs: int | None = None, seed: int | None = None) -> dict[str, Any]:
    """The resolved raw form of a scenario file (defaults and preset filled in), validated."""
    raw, base_dir = _read(path)
    resolved = resolve(_overridden(raw, runs, seed))
    build_study(resolved, base_dir=base_dir)
    return dict(resolved)
