"""Scenario files to a study (negsync.sim.loader): the preset merged, every default filled in from the schema."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from negsync.errors import ConfigError
from negsync.sim.fields import keys, section
from negsync.sim.loader import load_path, load_study, resolve, resolved_path
from negsync.sim.presets import PRESETS
from negsync.sim.scenario import HealthCheck, Scenario


def test_resolved_form_shows_every_mechanism_default(small: dict[str, Any]) -> None:
    small["lb"] = {"preset": "aws-nlb"}
    resolved = resolve(small)
    assert resolved["lb"]["routing"] == "connections"
    assert resolved["lb"]["connection_termination"] is False
    assert resolved["workload"]["zones"] == 1
    assert resolved["drain"]["health_check_drain"] == 0
    small["lb"] = {"preset": "aws-nlb", "routing": "requests"}  # a user key overrides the preset
    assert resolve(small)["lb"]["routing"] == "requests"


def test_the_resolved_form_fills_every_key_of_the_schema(small: dict[str, Any]) -> None:
    """--show prints "every value filled in": before, lb.attach_delay_includes_health_check was left out."""
    del small["sweep"]
    resolved = resolve(small)
    assert list(resolved) == [k for k in keys(Scenario) if k != "sweep"]
    for name, info in Scenario.model_fields.items():
        model = section(info.annotation)
        if model is not None:
            assert list(resolved[info.alias or name]) == keys(model), name
    assert resolved["lb"]["attach_delay_includes_health_check"] is False


def test_defaults_are_written_as_a_user_writes_them(small: dict[str, Any]) -> None:
    resolved = resolve(small)
    assert resolved["drain"] == {"pre_stop_sleep": 5, "termination_grace_period": 90, "health_check_drain": 0}
    assert resolved["controller"] == {"reaction": {"dist": "fixed", "value": 1}, "readiness_gate": True}
    assert resolved["objective"] == {"failed_requests": 0, "quantile": 0.99}
    assert resolve({**small, "controller": None})["controller"] == resolved["controller"]  # `controller:` in YAML


def test_the_preset_merges_under_the_users_keys(small: dict[str, Any]) -> None:
    small["lb"] = {"preset": "gcp-neg", "health_check": {"interval": 5},
                   "detach_delay": {"dist": "fixed", "value": 3}}
    lb = resolve(small)["lb"]
    assert lb["health_check"] == {**PRESETS["gcp-neg"]["health_check"], "interval": 5}  # field by field
    assert lb["detach_delay"] == {"dist": "fixed", "value": 3}  # a distribution is replaced whole
    assert lb["attach_delay"] == PRESETS["gcp-neg"]["attach_delay"]
    assert list(lb["health_check"]) == keys(HealthCheck)


def test_resolve_leaves_what_it_cannot_read_to_the_schema(small: dict[str, Any]) -> None:
    assert resolve([1, 2]) == [1, 2]
    small["lb"]["colour"] = "blue"
    assert resolve(small)["lb"]["colour"] == "blue"
    small["traffic"] = None
    with pytest.raises(ConfigError) as err:
        load_study(small)
    assert (err.value.field, err.value.message) == ("traffic", "required (at least traffic.rps)")


def test_a_file_and_its_resolved_form_are_the_same_study(tmp_path: Path, small: dict[str, Any]) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(small))
    shown = tmp_path / "shown.yaml"
    shown.write_text(yaml.safe_dump(resolved_path(path), sort_keys=False))
    assert load_path(path).points == load_path(shown).points
    assert resolved_path(path, runs=7, seed=9)["runs"] == 7
