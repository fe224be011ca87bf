"""The Compute API client: credentials, one paced http object per thread, calls, operation waits, paging.

* **Client.** ``googleapiclient.discovery.build("compute", "v1", static_discovery=True)`` once
  per provider (the static document ships with the library; no network at start-up).  Credentials
  are application default credentials (Workload Identity on GKE, ``GOOGLE_APPLICATION_CREDENTIALS``
  elsewhere) unless given.  ``httplib2.Http`` is not thread-safe, so every worker thread gets its
  own ``AuthorizedHttp`` (per project, see pacing) and passes it to ``execute(http=...)``, the
  pattern the client library documents for threads.  ``compute_endpoint`` replaces the client's
  ``rootUrl + servicePath`` (``https://compute.googleapis.com/compute/v1/``) for private endpoints
  and tests.  No credentials at all is a :class:`ConfigError` naming ``gcp.credentials`` (the CLI
  exits 2 with one line).
* **Retries are the client's.** ``execute(num_retries=...)`` already retries 429, 5xx, 403
  ``rateLimitExceeded``/``userRateLimitExceeded``, socket time-outs and connection resets with
  randomized exponential back-off (``rand() * 2**n`` seconds).  negsync does not wrap a second
  loop around it; only the client's sleep is routed through the injected :class:`Clock` (so a
  test can skip it).  What still fails is mapped by :mod:`negsync.providers.gcp.errors` and the
  reconciler's per-target back-off takes over.  Mutations carry a ``requestId`` (one UUID per
  logical call, reused by the client's retries), so a retried attach whose first response was
  lost is not applied twice.
* **Operations.** Every mutation returns a zonal operation; the call is only done when
  ``zoneOperations.wait`` reports it DONE, bounded by ``operation_timeout`` (past it:
  :class:`TransientError` — the next reconcile re-lists and diffs, so nothing is lost).  The
  wait may return before DONE (the reference: "not guaranteed to wait"), so it is asked again.
* **Paging** is the library's: ``request = collection.list(...); while request: page =
  execute(request); ...; request = collection.list_next(request, page)`` — the ``*_next``
  methods googleapiclient generates for every method whose response has ``nextPageToken``
  (``discovery.py``, ``_add_next_methods``), which copy the request and set ``pageToken`` (a query
  parameter for list, aggregatedList and listNetworkEndpoints alike in the compute v1 document).
* **Pacing.** A :class:`~negsync.providers.ratelimit.TokenBucket` per project (``rate_limit`` =
  (requests per second, burst)) is taken before *every* HTTP attempt — retries, pages and
  operation waits included — by wrapping the per-thread http object, so a retry storm is paced
  like first attempts and a large cluster cannot exhaust the project's Compute API quota.

Only the GCP provider package imports googleapiclient, google.auth and httplib2.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator, Mapping
from typing import Any, Final

import google.auth
import google.auth.credentials
import google.auth.exceptions
import google_auth_httplib2
import httplib2
from googleapiclient import discovery
from googleapiclient.errors import HttpError
from googleapiclient.http import HttpRequest

from negsync.core.clock import Clock
from negsync.errors import ConfigError, ProviderError, TransientError
from negsync.providers.gcp.errors import OperationKind, from_http_error, from_operation_error
from negsync.providers.ratelimit import TokenBucket

__all__ = ["SCOPES", "ComputeClient", "resolve_credentials"]

SCOPES: Final = ("https://www.googleapis.com/auth/compute",)

# How long one HTTP attempt may wait for a pacing token before giving up as transient.
_PACING_TIMEOUT: Final = 60.0
# zoneOperations.wait returns after at most 2 minutes server-side; the socket must outlast that.
_SERVER_WAIT_CAP: Final = 120.0


def resolve_credentials(*, credentials: Any, anonymous: bool, compute_endpoint: str | None) -> Any:
    """The credentials to call with: given ones, none (``anonymous``), or application default credentials.

    ``anonymous`` sends no credentials at all: only for a private or test ``compute_endpoint``.
    Finding no application default credentials is a :class:`ConfigError` saying what to configure.
    """
    if anonymous:
        if not compute_endpoint:
            raise ConfigError("gcp.anonymous", "only allowed with a private or test compute endpoint")
        return google.auth.credentials.AnonymousCredentials()
    if credentials is not None:
        return credentials
    try:
        found, _ = google.auth.default(scopes=list(SCOPES))
    except google.auth.exceptions.DefaultCredentialsError as exc:
        detail = " ".join(str(exc).split())
        raise ConfigError(
            "gcp.credentials",
            "no Google credentials found: set GOOGLE_APPLICATION_CREDENTIALS to a service-account key "
            "file, or run on GKE with Workload Identity (the metadata server); see docs/gcp.md "
            f"({detail})",
        ) from None
    return found


class _PacingTimeout(Exception):
    """No pacing token arrived in time; becomes a TransientError."""


class _PacedHttp:
    """An ``AuthorizedHttp`` that takes a token from the project's bucket before every attempt.

    googleapiclient retries by calling ``http.request`` again, so wrapping the http object (and
    not ``execute``) paces retries exactly like first attempts.
    """

    def __init__(self, inner: google_auth_httplib2.AuthorizedHttp, bucket: TokenBucket) -> None:
        self._inner = inner
        self._bucket = bucket

    def request(self, uri: str, method: str = "GET", *args: Any, **kwargs: Any) -> Any:
        if not self._bucket.acquire(timeout=_PACING_TIMEOUT):
            raise _PacingTimeout(f"no API token within {_PACING_TIMEOUT:g}s (client-side rate limit)")
        return self._inner.request(uri, method, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class ComputeClient:
    """compute v1 for ``networkEndpointGroups`` and ``zoneOperations``, shared by every worker thread."""

    def __init__(
        self,
        *,
        credentials: Any,
        compute_endpoint: str | None,
        num_retries: int,
        operation_timeout: float,
        rate_limit: tuple[float, int],
        clock: Clock,
        http_timeout: float,
    ) -> None:
        self._credentials = credentials
        self._num_retries = num_retries
        self._operation_timeout = float(operation_timeout)
        self._rate_limit = (float(rate_limit[0]), int(rate_limit[1]))
        self._clock = clock
        self._http_timeout = float(http_timeout)
        # The wait socket must outlast the server-side wait, capped by our own deadline.
        self._wait_timeout = min(self._operation_timeout, _SERVER_WAIT_CAP) + self._http_timeout
        self._lock = threading.Lock()
        self._buckets: dict[str, TokenBucket] = {}
        self._local = threading.local()
        options = {"api_endpoint": compute_endpoint} if compute_endpoint else None
        service = discovery.build(
            "compute",
            "v1",
            static_discovery=True,
            cache_discovery=False,
            # Only a default: every execute() passes the calling thread's own http object.
            http=google_auth_httplib2.AuthorizedHttp(credentials, http=httplib2.Http(timeout=self._http_timeout)),
            client_options=options,
            requestBuilder=self._request_builder,
        )
        # Resource objects only build requests and hold no per-request state: safe to share.
        self.negs: Any = service.networkEndpointGroups()
        self.operations: Any = service.zoneOperations()

    def bucket(self, project: str) -> TokenBucket:
        """The pacing bucket of ``project`` (created on first use)."""
        with self._lock:
            bucket = self._buckets.get(project)
            if bucket is None:
                bucket = TokenBucket(*self._rate_limit, clock=self._clock)
                self._buckets[project] = bucket
            return bucket

    def http(self, project: str, *, long: bool = False) -> _PacedHttp:
        """This thread's http object for ``project`` (httplib2 is not thread-safe)."""
        cache: dict[tuple[str, bool], _PacedHttp] | None = getattr(self._local, "http", None)
        if cache is None:
            cache = self._local.http = {}
        http = cache.get((project, long))
        if http is None:
            timeout = self._wait_timeout if long else self._http_timeout
            inner = google_auth_httplib2.AuthorizedHttp(self._credentials, http=httplib2.Http(timeout=timeout))
            http = cache[(project, long)] = _PacedHttp(inner, self.bucket(project))
        return http

    @staticmethod
    def request_id() -> str:
        # One id per logical call; the client's own retries resend the same URI, hence the same id.
        return str(uuid.uuid4())

    def execute(
        self, project: str, request: HttpRequest, *, what: str, long: bool = False, conflict_ok: bool = False
    ) -> Any:
        """One call with the client's retries, paced, its failure as a :mod:`negsync.errors` error."""
        try:
            return request.execute(http=self.http(project, long=long), num_retries=self._num_retries)
        except HttpError as exc:
            raise from_http_error(exc, what=what, conflict_ok=conflict_ok) from exc
        except _PacingTimeout as exc:
            raise TransientError(f"{what}: {exc}", retry_after=1.0) from exc
        except google.auth.exceptions.TransportError as exc:
            raise TransientError(f"{what}: credentials transport error: {exc}") from exc
        except google.auth.exceptions.RefreshError as exc:
            raise ProviderError(f"{what}: cannot refresh credentials: {exc}") from exc
        except google.auth.exceptions.GoogleAuthError as exc:
            # e.g. InvalidOperation: a 401 with credentials that cannot be refreshed (anonymous ones).
            # An error of the call, not a crash of the reconcile.
            raise ProviderError(f"{what}: credentials: {type(exc).__name__}: {exc}") from exc
        except (httplib2.HttpLib2Error, OSError) as exc:  # socket time-outs, resets, refused
            raise TransientError(f"{what}: {type(exc).__name__}: {exc}") from exc

    def pages(self, project: str, collection: Any, method: str, /, *, what: str, **params: Any) -> Iterator[Any]:
        """Every page of ``collection.<method>(**params)``, following ``nextPageToken`` with ``<method>_next``."""
        request: HttpRequest | None = getattr(collection, method)(**params)
        follow = getattr(collection, f"{method}_next")
        while request is not None:
            page = self.execute(project, request, what=what)
            yield page
            request = follow(request, page)

    def wait(self, project: str, zone: str, operation: Mapping[str, Any], *, what: str, op_kind: OperationKind) -> None:
        """Until the zonal operation is DONE (or ``operation_timeout``); its error as an exception."""
        deadline = self._clock.now() + self._operation_timeout
        name = str(operation.get("name", ""))
        while operation.get("status") != "DONE":
            if self._clock.now() >= deadline:
                raise TransientError(f"{what}: operation {name} not done after {self._operation_timeout:g}s")
            request = self.operations.wait(project=project, zone=zone, operation=name)
            operation = self.execute(project, request, what=f"{what}: waiting for {name}", long=True)
        if operation.get("error"):
            raise from_operation_error(operation, what=what, op_kind=op_kind)

    def _request_builder(self, *args: Any, **kwargs: Any) -> HttpRequest:
        request = HttpRequest(*args, **kwargs)
        # The client's back-off sleeps through ``_sleep`` (a documented test stub in the library);
        # routing it through our clock keeps its retries, and lets tests skip the waiting.
        request._sleep = self._clock.sleep
        return request
