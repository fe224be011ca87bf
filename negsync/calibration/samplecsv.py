"""Raw samples in a CSV with a ``field,seconds`` header: the escape hatch for measurements made elsewhere.

Each row is one sample of a parameter's *observable* as defined in
:mod:`negsync.calibration.observables` (e.g. ``lb.detach_delay``: detach issued → last request
routed).  A row is taken as a claim that it measured exactly that; ``lb.attach_delay`` rows are
taken to include the health-check wait, like every attach measurement here.
"""

from __future__ import annotations

import csv
import io
import math

from negsync.calibration.observables import PARAMETERS, Measurement
from negsync.errors import ConfigError

FLAG = "--from"


def is_csv(text: str) -> bool:
    return text.lstrip().lower().startswith("field,")


def measurements(text: str, *, source: str) -> list[Measurement]:
    found: dict[str, list[float]] = {}
    reader = csv.DictReader(io.StringIO(text.lstrip()))
    if reader.fieldnames is None or {"field", "seconds"} - {n.strip() for n in reader.fieldnames}:
        raise ConfigError(FLAG, "a CSV needs the header field,seconds")
    for number, row in enumerate(reader, start=2):
        row = {(k or "").strip(): v for k, v in row.items()}
        field = (row.get("field") or "").strip()
        if field not in PARAMETERS:
            raise ConfigError(FLAG, f"line {number}: field must be one of {', '.join(PARAMETERS)}, got {field!r}")
        try:
            value = float(row.get("seconds") or "")
        except ValueError:
            raise ConfigError(FLAG, f"line {number}: seconds is not a number: {row.get('seconds')!r}") from None
        if not math.isfinite(value) or value < 0:
            raise ConfigError(FLAG, f"line {number}: seconds must be >= 0")
        found.setdefault(field, []).append(value)
    return [Measurement(field, tuple(values), source) for field, values in found.items()]
