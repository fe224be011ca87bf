"""Shared fixtures: the Kubernetes API emulator is available to every test package."""

from tests.kube.conftest import api_client, kube

__all__ = ["api_client", "kube"]
