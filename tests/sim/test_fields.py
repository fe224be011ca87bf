"""The field types and the pydantic-error mapping: our dotted paths and sentences, never pydantic's."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from negsync.core.latency import Fixed, LogNormal
from negsync.errors import ConfigError
from negsync.sim.fields import (
    Count,
    Delay,
    Hint,
    PositiveSeconds,
    Rate,
    Seconds,
    config_error,
    dotted,
    invalid,
    keys,
    listed,
)


class _Inner(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    interval: PositiveSeconds
    limit: Annotated[Count, Field(le=10)] = 0


class _Outer(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: Annotated[Literal["a", "b"], Hint("required: one of a, b")] = Field(alias="scenario")
    rps: Rate = 1.0
    sleep: Seconds = 0
    gate: StrictBool = True
    delay: Delay = Field(default={"dist": "fixed", "value": 1}, validate_default=True)
    inner: _Inner | None = None
    table: dict[str, _Inner] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _cross(self) -> _Outer:
        if self.sleep > 100:
            raise invalid("inner.interval", "a check that spans fields names the field it blames")
        return self


def _error(raw: Any) -> ConfigError:
    with pytest.raises(ValidationError) as caught:
        _Outer.model_validate(raw)
    return config_error(caught.value, _Outer)


@pytest.mark.parametrize(("raw", "field", "message"), [
    ({"scenario": "a", "colour": 1}, "colour", "unknown key (expected one of: scenario, rps, sleep, gate, delay, inner, table)"),
    ({"scenario": "a", "inner": {"interval": 1, "x": 2}}, "inner.x", "unknown key (expected one of: interval, limit)"),
    ({}, "scenario", "required: one of a, b"),
    ({"scenario": "a", "inner": {}}, "inner.interval", "required"),
    ({"scenario": "c"}, "scenario", "must be one of a, b, got 'c'"),
    ({"scenario": "a", "rps": "fast"}, "rps", "must be a number of requests per second, got 'fast'"),
    ({"scenario": "a", "rps": True}, "rps", "must be a number of requests per second, got True"),
    ({"scenario": "a", "rps": float("inf")}, "rps", "must be a number of requests per second, got inf"),
    ({"scenario": "a", "rps": 0}, "rps", "must be > 0, got 0"),
    ({"scenario": "a", "sleep": -1}, "sleep", "must be >= 0, got -1"),
    ({"scenario": "a", "gate": "yes"}, "gate", "must be true or false, got 'yes'"),
    ({"scenario": "a", "inner": 5}, "inner", "must be a mapping, got int"),
    ({"scenario": "a", "inner": {"interval": 1, "limit": 2.5}}, "inner.limit", "must be an integer, got 2.5"),
    ({"scenario": "a", "inner": {"interval": 1, "limit": 11}}, "inner.limit", "must be <= 10, got 11"),
    ({"scenario": "a", "table": {"x.y": {"interval": 0}}}, "table.x.y.interval", "must be > 0, got 0"),
    ({"scenario": "a", "delay": {"dist": "lognormal", "p50": 2, "p99": 1}}, "delay.p99", "must be >= p50 (2.0), got 1.0"),
    ({"scenario": "a", "delay": "slow"}, "delay", "must be a number or a mapping with 'dist', got str"),
    ({"scenario": "a", "sleep": 101}, "inner.interval", "a check that spans fields names the field it blames"),
    ([1, 2], "scenario", "must be a mapping, got list"),
])
def test_first_error_is_our_field_and_sentence(raw: Any, field: str, message: str) -> None:
    error = _error(raw)
    assert (error.field, error.message) == (field, message)


def test_values_are_converted_as_the_simulator_reads_them() -> None:
    model = _Outer.model_validate({"scenario": "b", "rps": 5, "inner": {"interval": 2, "limit": 3.0},
                                   "delay": {"dist": "lognormal", "p50": 1, "p99": 4}})
    assert isinstance(model.rps, float) and model.inner is not None and model.inner.limit == 3
    assert isinstance(model.inner.limit, int)  # an integral float is an integer (swept values are floats)
    assert model.delay == LogNormal(1.0, 4.0)
    assert _Outer.model_validate({"scenario": "a"}).delay == Fixed(1.0)  # a default is written like user input


def test_dotted_paths() -> None:
    assert dotted(("sweep", "drain.pre_stop_sleep", "values", 1)) == "sweep.drain.pre_stop_sleep.values[1]"
    assert dotted(("sweep", "drain.pre_stop_sleep"), "[0]") == "sweep.drain.pre_stop_sleep[0]"
    assert dotted((), "workload.remove") == "workload.remove"
    assert dotted(()) == ""


def test_keys_are_what_a_user_writes_in_schema_order() -> None:
    assert keys(_Outer)[:2] == ["scenario", "rps"]


def test_listed_values_are_sorted_unique_numbers() -> None:
    assert listed([10, 0, 10.0, 5]) == (0.0, 5.0, 10.0)
    for bad in ([], [1, True], [float("nan")], "0,1"):
        with pytest.raises(PydanticCustomError):
            listed(bad)
