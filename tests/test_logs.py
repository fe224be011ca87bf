"""Structured JSON logs (:mod:`negsync.logs`): the redaction patterns, the line format, ``configure``.

That no planted credential reaches any output of a running controller is the integration test
tests/telemetry/test_no_credentials_leak.py; here each pattern on its own.
"""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator

import pytest

from negsync.logs import JsonFormatter, configure, redact

AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


@pytest.mark.parametrize(("text", "secret"), [
    (f"aws_secret_access_key={AWS_SECRET}", AWS_SECRET),
    (f'{{"AWS_SECRET_ACCESS_KEY": "{AWS_SECRET}"}}', AWS_SECRET),
    (f"secret_key: {AWS_SECRET}", AWS_SECRET),
    ("password=hunter2hunter2", "hunter2hunter2"),
    ("x-amz-security-token=IQoJb3JpZ2luX2VjEXAMPLE", "IQoJb3JpZ2luX2VjEXAMPLE"),
    ("Authorization: Bearer eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl", "eyJhbGciOiJSUzI1NiJ9"),
    ("authorization=Bearer abc.def.ghi", "abc.def.ghi"),
    ("using key AKIAIOSFODNN7EXAMPLE for the call", "AKIAIOSFODNN7EXAMPLE"),
    ("session ASIAIOSFODNN7EXAMPLE", "ASIAIOSFODNN7EXAMPLE"),
    ("google token ya29.a0AfH6SMBx-example_token.value", "ya29.a0AfH6SMBx"),
    ("-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\nabc\n-----END PRIVATE KEY-----",
     "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC"),
    ("-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA\n-----END RSA PRIVATE KEY-----", "MIIEpAIBAAKCAQEA"),
])
def test_redact_removes_the_secret(text: str, secret: str) -> None:
    cleaned = redact(text)
    assert secret not in cleaned
    assert "[REDACTED]" in cleaned


@pytest.mark.parametrize("text", [
    "binding shop/web synced: 3 endpoints attached to arn:aws:elasticloadbalancing:eu-west-1:1:targetgroup/web/abc",
    "gcp:my-project/us-central1-a/k8s-0f3c2a9e-shop-web-7e6ec838",
    "waiting for memory:local/x to report the endpoint healthy",
])
def test_redact_keeps_ordinary_text(text: str) -> None:
    assert redact(text) == text


def test_json_formatter_redacts_fields_and_tracebacks() -> None:
    try:
        raise RuntimeError(f"call failed: Authorization: Bearer sekrit-token-value aws_secret_access_key={AWS_SECRET}")
    except RuntimeError:
        exc_info = sys.exc_info()
    record = logging.LogRecord("negsync.test", logging.WARNING, __file__, 1, "cloud call failed", (), exc_info)
    record.detail = f"headers={{'Authorization': 'Bearer sekrit-token-value'}} secretKey={AWS_SECRET}"
    record.count = 3
    line = JsonFormatter().format(record)
    payload = json.loads(line)
    assert payload["msg"] == "cloud call failed" and payload["level"] == "warning" and payload["count"] == 3
    assert "sekrit-token-value" not in line and AWS_SECRET not in line


def test_a_line_is_one_json_object_with_time_level_logger_message_and_plain_fields() -> None:
    record = logging.LogRecord("negsync.sync", logging.INFO, __file__, 1, "synced %s", ("shop/web",), None)
    record.created, record.msecs = 1_764_590_400.0, 250.0  # 2025-12-01T12:00:00.250Z
    record.endpoints, record.ok, record.target, record._private = 3, True, None, "hidden"
    payload = json.loads(JsonFormatter().format(record))
    assert payload == {"ts": "2025-12-01T12:00:00.250Z", "level": "info", "logger": "negsync.sync",
                       "msg": "synced shop/web", "endpoints": 3, "ok": True, "target": None}


@pytest.fixture
def root_logging() -> Iterator[None]:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level, {n: logging.getLogger(n).level for n in ("botocore", "kubernetes")})
    try:
        yield
    finally:
        root.handlers[:], root.level = saved[0], saved[1]
        for name, level in saved[2].items():
            logging.getLogger(name).setLevel(level)


@pytest.mark.usefixtures("root_logging")
def test_configure_writes_json_at_the_level_and_keeps_the_sdks_at_warning() -> None:
    stream = io.StringIO()
    configure(level="debug", stream=stream)
    logging.getLogger("negsync.test").debug("hello", extra={"binding": "shop/web"})
    logging.getLogger("botocore").info("request headers: ...")
    logging.getLogger("kubernetes").warning("watch restarted")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(line["logger"], line["msg"]) for line in lines] == [("negsync.test", "hello"),
                                                                  ("kubernetes", "watch restarted")]
    assert lines[0]["binding"] == "shop/web" and lines[0]["level"] == "debug"
    configure(level="error", stream=stream)
    assert logging.getLogger("botocore").level == logging.ERROR
    assert len(logging.getLogger().handlers) == 1  # replaced, not added: no duplicate lines
