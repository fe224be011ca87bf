"""Structured JSON logs: one fixed message plus key-value fields, one object per line.

Fields come from ``extra={...}``.  Values are passed through :func:`redact` so a stray credential
(an AWS secret key, a bearer token, a private key) never reaches a log line, whatever a caller
put in an error message.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from typing import Any

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}
_SECRETS = [
    # Bearer first: the generic pattern would eat the word "Bearer" and leave the token.
    re.compile(r"(?i)bearer\s+[a-z0-9._~+/=-]+"),
    re.compile(r"(?i)(aws_secret_access_key|secret[_-]?key|password|token|authorization)(['\"]?\s*[:=]\s*['\"]?)[^\s'\",}]+"),
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", re.S),
    re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b"),
    re.compile(r"\bya29\.[A-Za-z0-9._-]+"),
]


def redact(text: str) -> str:
    for pattern in _SECRETS:
        text = pattern.sub(lambda m: (m.group(1) + m.group(2) + "[REDACTED]") if m.re.groups >= 2 else "[REDACTED]", text)
    return text


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                payload[key] = value if isinstance(value, int | float | bool) or value is None else redact(str(value))
        if record.exc_info:
            payload["error"] = redact(self.formatException(record.exc_info))
        return json.dumps(payload, default=str)


def configure(*, level: str = "info", stream: Any = None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # The SDKs are chatty at INFO and may echo request details; keep them at WARNING.
    for noisy in ("botocore", "boto3", "urllib3", "googleapiclient", "kubernetes"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
