"""The controller's latency histograms, read from a Prometheus text exposition.

Parsing is ``prometheus_client``'s own text parser (label values with escaped quotes, commas and
``provider`` vs ``cloud_provider`` are its problem, solved).  For each histogram negsync exports,
the series are grouped by their label set (all labels but ``le``), then:

* ``--provider`` keeps the series whose ``provider`` label equals it exactly;
* series of several providers and no ``--provider``: an error (two clouds' latencies are never
  one distribution);
* several label sets left (e.g. ``operation="attach"`` and ``operation="detach"``): merged, and
  the merge is reported on stderr with each set's count, never silently;
* every series is checked: cumulative bucket counts non-decreasing in ``le``, a ``+Inf`` bucket,
  and ``_count`` (when present) equal to it.  A broken histogram is an error naming the series.

Buckets become samples by placing each bucket's count at its midpoint (at most
:data:`~negsync.calibration.observables.MAX_SAMPLES`, scaled).  Observations in the ``+Inf``
bucket are placed at the largest finite bound and reported: the histogram cannot say how large
they were.

What each metric can calibrate is in :mod:`negsync.calibration.observables`;
``negsync_detach_latency_seconds`` is read only to refuse it with the reason.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

from negsync.calibration.observables import MAX_SAMPLES, Measurement
from negsync.errors import ConfigError

FLAG = "--from"
ATTACH_HEALTHY = "negsync_attach_healthy_latency_seconds"
DETACH_CALL = "negsync_detach_latency_seconds"
REACTION = "negsync_reaction_latency_seconds"
HISTOGRAMS = (ATTACH_HEALTHY, DETACH_CALL, REACTION)

# metric -> the parameter it calibrates, with the caveat printed next to it
USES = {
    REACTION: ("controller.reaction", ()),
    ATTACH_HEALTHY: ("lb.attach_delay", (
        "measured as attach done -> first healthy read: lags by up to the controller's "
        "--health-poll-interval and misses the data plane's delay after healthy; "
        "--access-log with --timeline measures the first routed request instead",)),
}
REFUSED = {
    DETACH_CALL: ("not used for lb.detach_delay: negsync_detach_latency_seconds is the detach API call's "
                  "duration (issued -> returned), not how long the LB keeps routing afterwards; "
                  "measure lb.detach_delay with --access-log and --timeline"),
}

LabelSet = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Series:
    labels: LabelSet
    buckets: tuple[tuple[float, float], ...]  # (le, cumulative count), sorted by le

    def describe(self) -> str:
        return "{" + ",".join(f'{k}="{v}"' for k, v in self.labels) + "}"


def read_histograms(text: str) -> dict[str, list[Series]]:
    """negsync's latency histograms in an exposition, one :class:`Series` per label set."""
    raw: dict[str, dict[LabelSet, list[tuple[float, float]]]] = defaultdict(lambda: defaultdict(list))
    counts: dict[tuple[str, LabelSet], float] = {}
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                for metric in HISTOGRAMS:
                    if sample.name == f"{metric}_bucket":
                        labels = dict(sample.labels)
                        le = labels.pop("le", None)
                        if le is None:
                            raise ConfigError(FLAG, f"{metric}_bucket sample without an le label")
                        bound = math.inf if le in ("+Inf", "Inf", "inf") else _float(le, metric)
                        raw[metric][tuple(sorted(labels.items()))].append((bound, float(sample.value)))
                    elif sample.name == f"{metric}_count":
                        counts[(metric, tuple(sorted(sample.labels.items())))] = float(sample.value)
    except ConfigError:
        raise
    except (ValueError, TypeError, IndexError, KeyError) as exc:
        raise ConfigError(FLAG, f"is neither a field,seconds CSV nor a Prometheus text exposition ({exc})") from None
    found: dict[str, list[Series]] = {}
    for metric, by_labels in raw.items():
        found[metric] = [_checked(metric, labels, buckets, counts.get((metric, labels)))
                         for labels, buckets in sorted(by_labels.items())]
    return found


def _float(text: str, metric: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(FLAG, f"{metric}_bucket: le={text!r} is not a number") from None
    if math.isnan(value):
        raise ConfigError(FLAG, f"{metric}_bucket: le is NaN")
    return value


def _checked(metric: str, labels: LabelSet, buckets: list[tuple[float, float]], count: float | None) -> Series:
    series = Series(labels, tuple(sorted(buckets)))
    name = f"{metric}{series.describe()}"
    bounds = [le for le, _ in series.buckets]
    if len(set(bounds)) != len(bounds):
        raise ConfigError(FLAG, f"{name}: the same le bucket appears twice")
    if not bounds or not math.isinf(bounds[-1]):
        raise ConfigError(FLAG, f"{name}: no le=\"+Inf\" bucket")
    previous = 0.0
    for le, value in series.buckets:
        if not math.isfinite(value) or value < 0:
            raise ConfigError(FLAG, f"{name}: bucket le={le:g} has count {value!r}")
        if value < previous:
            raise ConfigError(FLAG, f"{name}: bucket counts are not cumulative: le={le:g} has {value:g}, "
                                    f"fewer than a smaller bucket's {previous:g}")
        previous = value
    if count is not None and count != series.buckets[-1][1]:
        raise ConfigError(FLAG, f"{name}: _count {count:g} differs from the +Inf bucket {series.buckets[-1][1]:g}")
    return series


def _samples(series: list[Series]) -> tuple[list[float], float]:
    """Bucket midpoints for the merged series, and the fraction in the +Inf bucket."""
    per_bound: dict[float, float] = defaultdict(float)
    for s in series:
        previous = 0.0
        for le, cumulative in s.buckets:
            per_bound[le] += cumulative - previous
            previous = cumulative
    total = sum(per_bound.values())
    if total <= 0:
        return [], 0.0
    scale = min(1.0, MAX_SAMPLES / total)
    samples: list[float] = []
    lower = 0.0
    for le in sorted(per_bound):
        point = lower if math.isinf(le) else (lower + le) / 2
        samples.extend([point] * round(per_bound[le] * scale))
        if not math.isinf(le):
            lower = le
    return samples, per_bound.get(math.inf, 0.0) / total


def measurements(text: str, *, provider: str | None, source: str) -> tuple[list[Measurement], list[str]]:
    """What the exposition can calibrate, and the messages about what it cannot (or merged)."""
    histograms = read_histograms(text)
    if not histograms:
        raise ConfigError(FLAG, "holds no negsync latency histogram "
                                f"({', '.join(HISTOGRAMS)}) and is not a field,seconds CSV")
    found: list[Measurement] = []
    messages: list[str] = []
    for metric, all_series in histograms.items():
        series = _for_provider(metric, all_series, provider)
        if not series:
            continue
        if metric in REFUSED:
            messages.append(f"warning: {REFUSED[metric]}")
            continue
        parameter, caveats = USES[metric]
        samples, beyond = _samples(series)
        if not samples:
            continue
        cautions = list(caveats)
        if len(series) > 1:
            parts = ", ".join(f"{s.describe()} ({s.buckets[-1][1]:g})" for s in series)
            messages.append(f"note: {metric}: merged {len(series)} label sets into {parameter}: {parts}")
        if beyond > 0:
            cautions.append(f"{beyond:.0%} of the observations lie beyond the largest finite bucket "
                         "and were placed at its bound: the histogram cannot say how large they were")
        found.append(Measurement(parameter, tuple(samples), f"{source} {metric}", tuple(cautions)))
    return found, messages


def _for_provider(metric: str, series: list[Series], provider: str | None) -> list[Series]:
    if provider is not None:
        return [s for s in series if dict(s.labels).get("provider") == provider]
    providers = sorted({dict(s.labels).get("provider", "") for s in series})
    if len(providers) > 1:
        named = ", ".join(p or "(none)" for p in providers)
        raise ConfigError("--provider", f"{metric} has series of several providers ({named}): choose one")
    return series
