"""Fixtures for the telemetry tests: the Kubernetes API emulator on loopback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.emulators.kubeapi import KubeApiEmulator


@pytest.fixture
def kube() -> Iterator[KubeApiEmulator]:
    emulator = KubeApiEmulator(bookmark_interval=0.2)
    emulator.start()
    try:
        yield emulator
    finally:
        emulator.stop()
