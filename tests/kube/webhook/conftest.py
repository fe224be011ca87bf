"""Fixtures for the webhook's tests: a serving certificate, caches with the ``web`` Service, a served webhook."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from negsync.kube.caches import Caches
from negsync.kube.webhook import WebhookServer, generate_serving_certificate, write_serving_files
from tests.kube.conftest import service
from tests.kube.webhook.support import put_service


@pytest.fixture(scope="module")
def pki() -> tuple[bytes, bytes, bytes]:
    return generate_serving_certificate(ip_addresses=["127.0.0.1"], dns_names=["localhost"])


@pytest.fixture
def caches() -> Caches:
    caches = Caches()
    put_service(caches, service("web", selector={"app": "web"}))
    return caches


@pytest.fixture
def server(caches: Caches, pki: tuple[bytes, bytes, bytes], tmp_path: Path) -> Iterator[WebhookServer]:
    _, cert_pem, key_pem = pki
    write_serving_files(tmp_path, cert_pem=cert_pem, key_pem=key_pem)
    webhook = WebhookServer(caches=caches, address="127.0.0.1:0", cert_dir=tmp_path).start()
    try:
        yield webhook
    finally:
        webhook.stop()
