"""Fake GCE/GKE metadata server: the default service account's token, as Workload Identity serves it.

Design
------
A ``ThreadingHTTPServer`` on 127.0.0.1.  google-auth finds it through its own variables, read by
``google.auth.compute_engine._metadata`` at import time (so set them in the environment of the
process under test, e.g. the ``negsync`` subprocess):

* ``GCE_METADATA_IP`` — the host:port google-auth *pings* (``GET /``) to decide it runs on GCE;
* ``GCE_METADATA_HOST`` — the host:port of ``/computeMetadata/v1/...``.

Behaviour copied from the real server (https://cloud.google.com/compute/docs/metadata/querying-metadata
and https://cloud.google.com/kubernetes-engine/docs/concepts/workload-identity#metadata_server):

* every request must carry ``Metadata-Flavor: Google``, else 403; every response carries it too
  (google-auth's ``ping`` checks the response header);
* ``instance/service-accounts/default/?recursive=true`` → ``{email, scopes, aliases}``;
* ``instance/service-accounts/default/token`` (optional ``scopes``) →
  ``{access_token, expires_in, token_type}`` — tokens come from :class:`FakeCompute`, so the fake
  Compute API accepts exactly them;
* ``project/project-id`` → text; unknown paths → 404 (google-auth treats 404 for
  ``universe/universe-domain`` as the default universe).
"""

from __future__ import annotations

import json
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.emulators.compute import COMPUTE_SCOPES, FakeCompute
from tests.support.loopback import LoopbackServer

ROOT = "/computeMetadata/v1/"


class FakeMetadataServer(LoopbackServer):
    thread_name = "fake-metadata"

    def __init__(self, compute: FakeCompute, *, project: str = "proj-negsync",
                 email: str = "negsync@proj-negsync.iam.gserviceaccount.com") -> None:
        self.compute = compute
        self.project = project
        self.email = email
        self.requests: list[tuple[str, str, bool]] = []  # (method, path, had the flavor header)
        self._lock = threading.Lock()

    def handler(self) -> type[BaseHTTPRequestHandler]:
        return _Handler

    @property
    def host(self) -> str:
        """``host:port``: the value for both GCE_METADATA_HOST and GCE_METADATA_IP."""
        return f"127.0.0.1:{self.port}"

    def environment(self) -> dict[str, str]:
        return {"GCE_METADATA_HOST": self.host, "GCE_METADATA_IP": self.host}

    def answer(self, method: str, raw_path: str, flavor: str | None) -> tuple[int, str, str]:
        """(status, content type, body) for one request."""
        split = urllib.parse.urlsplit(raw_path)
        with self._lock:
            self.requests.append((method, split.path, flavor == "Google"))
        if flavor != "Google":
            return 403, "text/html", "Missing required header: Metadata-Flavor"
        if split.path == "/":
            return 200, "application/text", "computeMetadata/\n"
        if not split.path.startswith(ROOT):
            return 404, "text/html", "Not Found"
        path = split.path[len(ROOT):]
        query = urllib.parse.parse_qs(split.query)
        account = path.removeprefix("instance/service-accounts/").split("/", 1)[0]
        if path.startswith("instance/service-accounts/") and account not in ("default", self.email):
            return 404, "text/html", "Not Found"
        if path == "project/project-id":
            return 200, "application/text", self.project
        if path in ("instance/service-accounts/default/", f"instance/service-accounts/{self.email}/"):
            info = {"aliases": ["default"], "email": self.email, "scopes": sorted(COMPUTE_SCOPES)}
            return 200, "application/json", json.dumps(info)
        if path.endswith("/email") and path.startswith("instance/service-accounts/"):
            return 200, "application/text", self.email
        if path.endswith("/token") and path.startswith("instance/service-accounts/"):
            wanted = ",".join(query.get("scopes", [])).split(",")
            scopes = [s for s in wanted if s] or sorted(COMPUTE_SCOPES)
            token = self.compute.issue_token(scopes)
            return 200, "application/json", json.dumps(
                {"access_token": token, "expires_in": 3599, "token_type": "Bearer"})
        return 404, "text/html", "Not Found"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"
    server: ThreadingHTTPServer

    def _dispatch(self) -> None:
        fake: FakeMetadataServer = self.server.fake  # type: ignore[attr-defined]
        status, kind, body = fake.answer(self.command, self.path, self.headers.get("Metadata-Flavor"))
        data = body.encode()
        self.send_response(status)
        self.send_header("Metadata-Flavor", "Google")
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _dispatch

    def log_message(self, format: str, *args: Any) -> None:
        pass
