"""Fixtures for provider tests: moto on a loopback port (tests/support/moto.py) and the ELBv2 proxy in front of it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.elb_proxy import ElbProxy
from tests.support.moto import REGION, aws_env, moto_server

__all__ = ["REGION", "aws_env", "moto", "moto_server", "proxy"]


@pytest.fixture
def moto(moto_server: str, aws_env: None) -> str:
    """The moto endpoint URL, with dummy credentials in the environment."""
    return moto_server


@pytest.fixture
def proxy(moto: str) -> Iterator[ElbProxy]:
    """The AWS-faithful :class:`~tests.support.elb_proxy.ElbProxy` on a loopback port in front of moto."""
    elb_proxy = ElbProxy(upstream=moto).start()
    try:
        yield elb_proxy
    finally:
        elb_proxy.stop()
