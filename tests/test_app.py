"""``negsync controller``'s flags and :class:`Settings` come from one declaration, and map onto each other."""

from __future__ import annotations

import argparse
import dataclasses
import json
import socket

import pytest

from negsync.app import Settings, add_arguments, flags
from negsync.cli import main
from negsync.errors import ConfigError
from tests.emulators.kubeapi import KubeApiEmulator
from tests.telemetry.harness import ControllerProcess


def parser() -> argparse.ArgumentParser:
    built = argparse.ArgumentParser(prog="negsync controller", exit_on_error=False)
    add_arguments(built)
    return built


def options(built: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {action.option_strings[0]: action for action in built._actions if action.option_strings
            and action.option_strings[0] != "-h"}


def test_every_flag_sets_one_settings_field_and_every_field_is_a_flag_or_says_why_not() -> None:
    built = options(parser())
    declared = {flag.name: field.name for field, flag in flags()}
    assert set(built) == set(declared), "the parser has exactly the declared flags"
    assert len(set(declared.values())) == len(declared), "no two flags set one field"
    for field in dataclasses.fields(Settings):
        if field.name not in declared.values():
            assert field.metadata.get("derived"), f"Settings.{field.name} is neither a flag nor derived"
    # Defaults agree: Settings() (what tests and benchmarks build) is what an empty command line gives.
    parsed = Settings.from_args(parser().parse_args([]))
    for field, flag in flags():
        assert getattr(parsed, field.name) == getattr(Settings(), field.name), flag.name
        assert built[flag.name].help == flag.help


@pytest.mark.parametrize(("argv", "field", "value"), [
    (["--namespace", "shop"], "namespace", "shop"),
    (["--workers", "7"], "workers", 7),
    (["--sync-min-interval", "250ms"], "sync_min_interval", 0.25),
    (["--gate-timeout", "2m"], "gate_timeout", 120.0),
    (["--leader-elect"], "leader_elect", True),
    (["--leader-elect-namespace", "ops"], "lease_namespace", "ops"),
    (["--leader-elect-id", "lease-x"], "lease_name", "lease-x"),
    (["--leader-elect-lease-duration", "30s", "--leader-elect-renew-deadline", "20s"], "lease_duration", 30.0),
    (["--leader-elect-renew-deadline", "5s"], "renew_deadline", 5.0),
    (["--leader-elect-retry-period", "1s"], "retry_period", 1.0),
    (["--drain-margin", "3s"], "drain_margin", 3.0),
    (["--health-addr", "[::1]:8081"], "health_addr", "[::1]:8081"),
    (["--provider", "aws", "--aws-retry-mode", "adaptive"], "aws_retry_mode", "adaptive"),
    (["--gcp-rate-limit", "2.5"], "gcp_rate_limit", 2.5),
    (["--memory-no-health-check"], "memory_no_health_check", True),
])
def test_a_flag_reaches_its_field(argv: list[str], field: str, value: object) -> None:
    assert getattr(Settings.from_args(parser().parse_args(argv)), field) == value


def test_the_lease_namespace_defaults_to_the_pods_namespace(monkeypatch: pytest.MonkeyPatch) -> None:
    """deploy/base sets POD_NAMESPACE from the downward API; the Lease and ownership records live there."""
    monkeypatch.setenv("POD_NAMESPACE", "negsync-ops")
    assert Settings.from_args(parser().parse_args([])).lease_namespace == "negsync-ops"
    monkeypatch.delenv("POD_NAMESPACE")
    assert Settings.from_args(parser().parse_args([])).lease_namespace == "negsync-system"


def test_the_lease_identity_names_the_pod_as_the_deployment_promises(monkeypatch: pytest.MonkeyPatch) -> None:
    """deploy/base sets POD_NAME from the downward API "for the leader-election identity"."""
    monkeypatch.setenv("POD_NAME", "negsync-7d9f8-abcde")
    first = Settings.from_args(parser().parse_args(["--provider", "memory"]))
    second = Settings.from_args(parser().parse_args(["--provider", "memory"]))
    assert first.identity.startswith("negsync-7d9f8-abcde_")
    assert first.identity != second.identity  # a restarted process never reuses its predecessor's identity


def test_inconsistent_lease_timings_name_the_flag() -> None:
    with pytest.raises(ConfigError, match="--leader-elect-lease-duration"):
        Settings.from_args(parser().parse_args(["--leader-elect-renew-deadline", "20s"]))


def test_a_bad_value_exits_2_naming_the_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["controller", "--workers", "0"])
    assert exited.value.code == 2
    assert "--workers" in capsys.readouterr().err


def test_a_health_port_in_use_stops_the_process_with_exit_1(kube: KubeApiEmulator) -> None:
    """The servers are a runnable of the manager: one that cannot bind ends the run, never a process without probes."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        ctl = ControllerProcess(kube, "--provider", "memory")
        port = taken.getsockname()[1]
        ctl.argv[ctl.argv.index(f"127.0.0.1:{ctl.health_port}")] = f"127.0.0.1:{port}"
        ctl.start()
        try:
            assert ctl.proc is not None
            assert ctl.proc.wait(timeout=30) == 1, ctl.tail()
        finally:
            ctl.stop()
    logged = [json.loads(line) for line in ctl.stderr if line.startswith("{")]
    assert any(entry["msg"] == "runnable failed" and entry.get("runnable") == "http" for entry in logged), ctl.tail()
    assert any(entry["msg"] == "controller stopped: a runnable failed" for entry in logged), ctl.tail()
