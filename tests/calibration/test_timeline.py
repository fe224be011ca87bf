"""The timeline writer (:class:`negsync.calibration.timeline.TimelineLog`) as the controller runs it.

The reader side is exercised through ``negsync calibrate --timeline`` in test_roundtrip.py and
test_bad_logs.py; here the controller, against the API emulator and the in-memory provider, must log the lines the reader
takes back, in wall time.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Iterator

import pytest
from kubernetes import client

from negsync.calibration.timeline import LOGGER, read_events
from negsync.kube.controller import Controller
from negsync.logs import JsonFormatter
from negsync.providers.memory import MemoryProvider
from tests.emulators.kubeapi import KubeApiEmulator
from tests.kube.conftest import binding, endpoint_slice
from tests.kube.test_binding_reconciler import REF, members, seed_service, settings
from tests.support.waiting import wait_for


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """The controller's JSON log lines of the timeline logger, as `kubectl logs` would show them."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger(LOGGER)
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def test_attach_and_detach_of_each_endpoint_are_logged_in_wall_time(
        kube: KubeApiEmulator, api_client: client.ApiClient, captured: io.StringIO) -> None:
    from negsync.core.latency import Fixed

    provider = MemoryProvider(attach_delay=Fixed(0.6))
    ctl = Controller(api_client=api_client, provider=provider, settings=settings())
    began = time.time()
    ctl.start()
    try:
        ips = ["10.1.0.1", "10.1.0.2"]
        seed_service(kube, ips, not_ready=tuple(ips))
        kube.create(binding())
        wait_for(lambda: provider.members(REF) == members(*ips), what="members attached")
        wait_for(lambda: captured.getvalue().count('"event": "attach"') == 2, what="two attach lines")
        kube.update({**endpoint_slice("web-abc", ips, terminating=("10.1.0.2",)),
                     "metadata": {**endpoint_slice("web-abc", ips)["metadata"]}})
        wait_for(lambda: '"event": "detach"' in captured.getvalue(), what="detach line")
    finally:
        ctl.stop(timeout=5)
    ended = time.time()
    events = read_events(captured.getvalue().splitlines(), name="controller log")
    attaches = {e.endpoint: e for e in events if e.kind == "attach"}
    detaches = [e for e in events if e.kind == "detach"]
    assert set(attaches) == {"10.1.0.1:8080", "10.1.0.2:8080"}
    for event in attaches.values():
        assert began <= event.start <= event.end <= ended
        assert event.end - event.start >= 0.5  # the provider reports healthy 0.6 s after the attach
        assert event.target == str(REF)
    assert [e.endpoint for e in detaches] == ["10.1.0.2:8080"]
    assert attaches["10.1.0.2:8080"].end <= detaches[0].start <= detaches[0].end <= ended
