"""moto in server mode on a loopback port, with dummy credentials: the ELBv2/EC2/STS peer of the AWS tests.

The AWS provider is tested through real boto3 clients speaking HTTP to moto's
``ThreadedMotoServer`` (started here on 127.0.0.1 with a port the OS picks), so signing, the
query protocol, botocore's retry handler and the provider's ``before-send`` pacing hook all run
for real.  moto is reset once when it starts; tests then create their own uniquely named
resources instead of resetting again (a reset makes moto rebuild its EC2 backend on the next
call, about half a second per test).  Credentials are dummies set through the environment, and
the machine's AWS configuration is hidden, so nothing can reach AWS.  Where moto differs from AWS,
tests put :class:`tests.support.elb_proxy.ElbProxy` in front of it.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator

import pytest

REGION = "us-east-1"


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """One moto server for the session; yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    request = urllib.request.Request(f"{url}/moto-api/reset", method="POST", data=b"")
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
    try:
        yield url
    finally:
        server.stop()


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Dummy credentials through the default chain; the machine's AWS config is out of reach."""
    empty = tmp_path_factory.mktemp("aws") / "empty"
    empty.write_text("")
    for name in (
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_SESSION_TOKEN",
        "AWS_SECURITY_TOKEN",
        "AWS_ROLE_ARN",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_ELASTIC_LOAD_BALANCING_V2",
        "AWS_ENDPOINT_URL_EC2",
        "AWS_MAX_ATTEMPTS",
        "AWS_RETRY_MODE",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(empty))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(empty))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
