"""What every provider module shares: the ports it implements and the errors it raises, from one import.

The protocols themselves live in :mod:`negsync.core.ports`, so that the core depends on no
provider; this module only gathers them with the :mod:`negsync.errors` hierarchy a provider raises
(see :mod:`negsync.core.ports` for what each error asks of the reconciler).  It imports no SDK.

It has no test file of its own on purpose: it holds names, no behaviour.  The ports are tested in
tests/core/test_ports.py, the errors in tests/test_errors.py, each provider under tests/providers/.
"""

from __future__ import annotations

from negsync.core.ports import OwnershipStore, TargetProvider
from negsync.errors import (
    InvalidTarget,
    OwnershipConflict,
    ProviderError,
    RejectedError,
    TargetNotFound,
    TransientError,
)

__all__ = [
    "InvalidTarget",
    "OwnershipConflict",
    "OwnershipStore",
    "ProviderError",
    "RejectedError",
    "TargetNotFound",
    "TargetProvider",
    "TransientError",
]
