"""The loopback hosts a server under test binds: IPv4 always, IPv6 when this machine has it.

``LOOPBACKS`` parametrizes a test over ``127.0.0.1`` and ``::1``; :func:`require` skips the IPv6
case at run time (not at collection) when the machine has no IPv6 loopback, e.g. a container
started with IPv6 disabled.  :func:`url_host` brackets an IPv6 host for a URL or an address flag.
"""

from __future__ import annotations

import socket

import pytest

LOOPBACKS = pytest.mark.parametrize("host", ["127.0.0.1", "::1"], ids=["ipv4", "ipv6"])


def has_ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


def require(host: str) -> str:
    """``host``, after skipping the test when it is IPv6 and the machine has no IPv6 loopback."""
    if ":" in host and not has_ipv6_loopback():
        pytest.skip("no IPv6 loopback on this machine")
    return host


def url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
