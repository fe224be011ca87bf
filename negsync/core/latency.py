"""Latency distributions shared by the in-memory provider and the simulator.

A distribution is a frozen value with one method, ``sample(rng, size)``, drawing seconds from a
caller-supplied :class:`numpy.random.Generator` so every consumer stays reproducible by seed and
can ask for a whole vector at once (the simulator draws one value per Monte Carlo run).
:func:`parse_distribution` turns the scenario-file form (``{dist: lognormal, p50: 20, p99: 90}``)
into a value and names the offending field on bad input.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, overload

import numpy as np
import numpy.typing as npt

from negsync.errors import ConfigError

FloatArray = npt.NDArray[np.float64]

# The standard normal quantile at 0.99: turns a (p50, p99) pair into a lognormal sigma.
_Z99 = 2.3263478740408408


class Distribution(Protocol):
    """Seconds drawn from some law; never negative."""

    @property
    def mean(self) -> float: ...

    @overload
    def sample(self, rng: np.random.Generator, size: None = None) -> float: ...

    @overload
    def sample(self, rng: np.random.Generator, size: int) -> FloatArray: ...

    def sample(self, rng: np.random.Generator, size: int | None = None) -> float | FloatArray: ...

    def quantile(self, q: float) -> float: ...


def _out(values: FloatArray, size: int | None) -> float | FloatArray:
    return float(values[0]) if size is None else values


@dataclass(frozen=True, slots=True)
class Fixed:
    value: float

    @property
    def mean(self) -> float:
        return self.value

    def sample(self, rng: np.random.Generator, size: int | None = None) -> Any:
        return _out(np.full(1 if size is None else size, self.value, dtype=np.float64), size)

    def quantile(self, q: float) -> float:
        return self.value


@dataclass(frozen=True, slots=True)
class Uniform:
    low: float
    high: float

    @property
    def mean(self) -> float:
        return (self.low + self.high) / 2

    def sample(self, rng: np.random.Generator, size: int | None = None) -> Any:
        return _out(rng.uniform(self.low, self.high, 1 if size is None else size), size)

    def quantile(self, q: float) -> float:
        return self.low + q * (self.high - self.low)


@dataclass(frozen=True, slots=True)
class Exponential:
    mean_seconds: float

    @property
    def mean(self) -> float:
        return self.mean_seconds

    def sample(self, rng: np.random.Generator, size: int | None = None) -> Any:
        return _out(rng.exponential(self.mean_seconds, 1 if size is None else size), size)

    def quantile(self, q: float) -> float:
        return -self.mean_seconds * math.log1p(-q)


@dataclass(frozen=True, slots=True)
class LogNormal:
    """Given by its median and 99th percentile, the two figures people actually quote."""

    p50: float
    p99: float

    @property
    def mu(self) -> float:
        return math.log(self.p50)

    @property
    def sigma(self) -> float:
        return (math.log(self.p99) - math.log(self.p50)) / _Z99

    @property
    def mean(self) -> float:
        return math.exp(self.mu + self.sigma**2 / 2)

    def sample(self, rng: np.random.Generator, size: int | None = None) -> Any:
        return _out(rng.lognormal(self.mu, self.sigma, 1 if size is None else size), size)

    def quantile(self, q: float) -> float:
        from statistics import NormalDist

        return math.exp(self.mu + self.sigma * NormalDist().inv_cdf(q))


@dataclass(frozen=True, slots=True)
class Empirical:
    """Resamples measured values; how a cluster's own latencies calibrate the model."""

    samples: tuple[float, ...]

    @property
    def mean(self) -> float:
        return float(np.mean(self.samples))

    def sample(self, rng: np.random.Generator, size: int | None = None) -> Any:
        values = rng.choice(np.asarray(self.samples, dtype=np.float64), 1 if size is None else size)
        return _out(values, size)

    def quantile(self, q: float) -> float:
        return float(np.quantile(np.asarray(self.samples), q))


_KEYS: dict[str, tuple[set[str], set[str]]] = {
    # dist name: (required keys, optional keys) besides "dist"
    "fixed": ({"value"}, set()),
    "uniform": ({"min", "max"}, set()),
    "exponential": ({"mean"}, set()),
    "lognormal": ({"p50", "p99"}, set()),
    "empirical": (set(), {"samples", "file"}),
}


def _seconds(spec: Mapping[str, Any], key: str, field: str, *, positive: bool = False) -> float:
    value = spec[key]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{field}.{key}", f"must be a number of seconds, got {value!r}")
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        raise ConfigError(f"{field}.{key}", f"must be {'>' if positive else '>='} 0, got {value!r}")
    return float(value)


def parse_distribution(spec: Any, *, field: str, base_dir: Path | None = None) -> Distribution:
    """Build a distribution from its scenario-file form; a bare number means ``fixed``."""
    if isinstance(spec, int | float) and not isinstance(spec, bool):
        return Fixed(_seconds({"value": spec}, "value", field))
    if not isinstance(spec, Mapping):
        raise ConfigError(field, f"must be a number or a mapping with 'dist', got {type(spec).__name__}")
    kind = spec.get("dist")
    if kind not in _KEYS:
        raise ConfigError(f"{field}.dist", f"must be one of {', '.join(sorted(_KEYS))}, got {kind!r}")
    required, optional = _KEYS[kind]
    unknown = set(spec) - required - optional - {"dist"}
    if unknown:
        raise ConfigError(f"{field}.{sorted(unknown)[0]}", f"unknown key for a {kind} distribution")
    missing = required - set(spec)
    if missing:
        raise ConfigError(f"{field}.{sorted(missing)[0]}", f"required for a {kind} distribution")
    if kind == "fixed":
        return Fixed(_seconds(spec, "value", field))
    if kind == "uniform":
        low, high = _seconds(spec, "min", field), _seconds(spec, "max", field)
        if high < low:
            raise ConfigError(f"{field}.max", f"must be >= min ({low}), got {high}")
        return Uniform(low, high)
    if kind == "exponential":
        return Exponential(_seconds(spec, "mean", field, positive=True))
    if kind == "lognormal":
        p50 = _seconds(spec, "p50", field, positive=True)
        p99 = _seconds(spec, "p99", field, positive=True)
        if p99 < p50:
            raise ConfigError(f"{field}.p99", f"must be >= p50 ({p50}), got {p99}")
        if p99 == p50:
            return Fixed(p50)
        return LogNormal(p50, p99)
    # empirical
    if ("samples" in spec) == ("file" in spec):
        raise ConfigError(field, "an empirical distribution needs exactly one of 'samples' or 'file'")
    if "samples" in spec:
        raw = spec["samples"]
        if not isinstance(raw, Sequence) or isinstance(raw, str) or not raw:
            raise ConfigError(f"{field}.samples", "must be a non-empty list of seconds")
        values = [_seconds({"v": v}, "v", f"{field}.samples[{i}]") for i, v in enumerate(raw)]
        return Empirical(tuple(values))
    path = Path(str(spec["file"]))
    if base_dir is not None and not path.is_absolute():
        path = base_dir / path
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{field}.file", f"cannot read {path}: {exc.strerror}") from None
    return Empirical(tuple(read_samples(text, field=f"{field}.file")))


_BUCKET = re.compile(r'^(?P<name>[a-zA-Z_:][\w:]*)_bucket\{(?P<labels>[^}]*)\}\s+(?P<value>\S+)')
_LE = re.compile(r'le="(?P<le>[^"]+)"')


def read_samples(text: str, *, field: str, max_samples: int = 10_000) -> list[float]:
    """Seconds from one-number-per-line text, or from Prometheus histogram ``_bucket`` lines.

    A histogram is turned into samples by placing each bucket's count at the midpoint of the
    bucket (the +Inf bucket at its lower bound), scaled down to at most ``max_samples`` values.
    """
    lines = [line.strip() for line in text.splitlines()]
    lines = [line for line in lines if line and not line.startswith("#")]
    if not lines:
        raise ConfigError(field, "holds no samples")
    if any("_bucket{" in line for line in lines):
        return _histogram_samples(lines, field=field, max_samples=max_samples)
    values: list[float] = []
    for number, line in enumerate(lines, 1):
        try:
            value = float(line.split(",")[0])
        except ValueError:
            raise ConfigError(field, f"line {number}: not a number of seconds: {line[:40]!r}") from None
        if not math.isfinite(value) or value < 0:
            raise ConfigError(field, f"line {number}: must be >= 0, got {line[:40]!r}")
        values.append(value)
    return values


def _histogram_samples(lines: list[str], *, field: str, max_samples: int) -> list[float]:
    cumulative: dict[float, float] = {}
    for line in lines:
        match = _BUCKET.match(line)
        if not match:
            continue
        le = _LE.search(match["labels"])
        if not le:
            continue
        bound = math.inf if le["le"] in {"+Inf", "Inf"} else float(le["le"])
        cumulative[bound] = cumulative.get(bound, 0.0) + float(match["value"])
    if not cumulative:
        raise ConfigError(field, "has histogram lines but no usable le= buckets")
    bounds = sorted(cumulative)
    total = cumulative[bounds[-1]]
    if total <= 0:
        raise ConfigError(field, "histogram has no observations")
    scale = min(1.0, max_samples / total)
    samples: list[float] = []
    previous_bound, previous_count = 0.0, 0.0
    for bound in bounds:
        count = cumulative[bound] - previous_count
        point = previous_bound if math.isinf(bound) else (previous_bound + bound) / 2
        samples.extend([point] * round(count * scale))
        previous_bound = previous_bound if math.isinf(bound) else bound
        previous_count = cumulative[bound]
    return samples or [previous_bound]
