"""Shared fixtures: the Kubernetes API emulator and a kubectl pointed at it are available to every test package."""

from tests.kube.conftest import api_client, kube
from tests.support.kubectl import kubectl_fixture

__all__ = ["api_client", "kube", "kubectl_fixture"]
