"""Every adapter implements its port with the port's exact signatures.

mypy checks the adapters the controller wires; this also covers the ones only tests and demos
wire, and keyword names, which callers of the ports use (``binding=``, ``spec=``, ``endpoints=``).
"""

from __future__ import annotations

import inspect

import pytest

from negsync.core.ports import OwnershipStore, TargetProvider
from negsync.kube.ownership import ConfigMapOwnershipStore
from negsync.providers.aws import AwsProvider
from negsync.providers.gcp import GcpProvider
from negsync.providers.memory import MemoryOwnershipStore, MemoryProvider


def _members(port: type) -> dict[str, object]:
    return {name: value for name, value in vars(port).items() if not name.startswith("_")}


def _parameters(function: object) -> list[tuple[str, object]]:
    signature = inspect.signature(function)  # type: ignore[arg-type]
    return [(p.name, p.kind) for p in signature.parameters.values()]


@pytest.mark.parametrize(("port", "adapter"), [
    (TargetProvider, MemoryProvider), (TargetProvider, GcpProvider), (TargetProvider, AwsProvider),
    (OwnershipStore, MemoryOwnershipStore), (OwnershipStore, ConfigMapOwnershipStore),
])
def test_an_adapter_has_every_member_of_its_port_with_the_same_parameters(port: type, adapter: type) -> None:
    members = _members(port)
    assert members, port
    for name, member in members.items():
        assert hasattr(adapter, name), f"{adapter.__name__} lacks {port.__name__}.{name}"
        if callable(member) and not isinstance(member, property):
            assert _parameters(getattr(adapter, name)) == _parameters(member), f"{adapter.__name__}.{name}"
