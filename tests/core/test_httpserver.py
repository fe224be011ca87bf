"""The one HTTP layer: addresses as the bind flags take them, routing, replies, both address families."""

from __future__ import annotations

import http.client
from collections.abc import Iterator

import pytest

from negsync.core.httpserver import (
    Query,
    Reply,
    RouteHandler,
    ThreadedServer,
    format_address,
    json_reply,
    parse_address,
    text_reply,
)
from tests.support.loopback import LOOPBACKS, require


@pytest.mark.parametrize(("address", "expected"), [
    ("127.0.0.1:8080", ("127.0.0.1", 8080)),
    (":8080", ("0.0.0.0", 8080)),
    ("[::]:8080", ("::", 8080)),
    ("[::1]:0", ("::1", 0)),
    ("[fe80::1%eth0]:9443", ("fe80::1%eth0", 9443)),
    ("localhost:65535", ("localhost", 65535)),
])
def test_addresses_as_bind_flags_take_them(address: str, expected: tuple[str, int]) -> None:
    assert parse_address(address) == expected
    host, port = expected
    if address != ":8080":
        assert format_address(host, port) == address  # what a log line shows can be pasted back


@pytest.mark.parametrize(("address", "message"), [
    ("8080", "must be [host]:port"),
    ("host:", "must be [host]:port"),
    ("host:http", "must be [host]:port"),
    ("host:65536", "must be [host]:port"),
    ("[::1]", "must be [host]:port"),
    ("::1:8080", "an IPv6 host goes in brackets"),  # ambiguous: Go's net.SplitHostPort refuses it too
    ("[::1:8080", "an IPv6 host goes in brackets"),
    ("[]:8080", "an IPv6 host goes in brackets"),
])
def test_bad_addresses_say_what_is_expected(address: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_address(address)


def _boom(query: Query) -> Reply:
    raise RuntimeError("bug")


@pytest.fixture(params=["127.0.0.1", "::1"], ids=["ipv4", "ipv6"])
def served(request: pytest.FixtureRequest) -> Iterator[tuple[str, ThreadedServer]]:
    host = require(request.param)
    server = ThreadedServer(format_address(host, 0), RouteHandler, routes={
        "/echo": lambda query: json_reply(200, query=query), "/boom": _boom,
        "/teapot": lambda query: text_reply(418, "short and stout")}).start(name="test-http")
    try:
        yield host, server
    finally:
        server.stop()


def get(host: str, port: int, path: str) -> tuple[int, str, bytes]:
    conn = http.client.HTTPConnection(host, port, timeout=5)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.getheader("Content-Type") or "", response.read()
    finally:
        conn.close()


def test_routes_answer_on_both_address_families(served: tuple[str, ThreadedServer]) -> None:
    host, server = served
    assert server.port > 0 and server.server_address[0] == host
    assert get(host, server.port, "/echo?pod=a/b&x=") == (
        200, "application/json", b'{"query": {"pod": ["a/b"], "x": [""]}}\n')
    assert get(host, server.port, "/teapot") == (418, "text/plain; charset=utf-8", b"short and stout\n")
    assert get(host, server.port, "/nowhere")[:1] == (404,)
    assert get(host, server.port, "/boom") == (500, "text/plain; charset=utf-8", b"internal error\n")


@LOOPBACKS
def test_a_server_that_never_started_stops(host: str) -> None:
    server = ThreadedServer(format_address(require(host), 0), RouteHandler)
    server.stop()  # no serve_forever to wait for: returns at once
    assert server.socket.fileno() == -1
