"""NEG names, target references and resource paths: pure functions, no API call.

* **Target references.** ``TargetRef("gcp", "<project>/<zone>", "<neg name>")``: the project is
  encoded in the location, so a ref is self-describing — attach, detach and list need nothing
  but the ref, a restart loses no state, and the same binding moved to another project yields
  distinct refs instead of silently re-pointing an old one.
* **Names.** ``<prefix>-<uid8>-<namespace>-<binding>-<hash8>`` at most 63 characters (RFC 1035);
  namespace and binding are trimmed *fairly* (a short field gives its unused budget to the long
  one), and the hash over the untrimmed (cluster uid, namespace, binding) keeps trimmed names
  unique.  The Service port is deliberately not part of the name: a binding selects exactly one
  Service port, and the provider sees only ``spec.target``, while a deletion (no endpoints left)
  must still find the NEG by name.  All NEGs of a binding carry the same name, one per zone, as
  GKE's do.
* **Subnetworks.** A NEG for nodes of a non-default subnetwork gets a subnet hash before the
  binding hash (ingress-gce ``Namer.NonDefaultSubnetNEG``); every NEG name of a binding ends with
  the binding hash, which is how the provider finds them all after a restart.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from typing import Final

from negsync.core.model import BindingKey, TargetRef
from negsync.errors import InvalidTarget

__all__ = [
    "MAX_NAME_LENGTH",
    "binding_hash",
    "cluster_marker",
    "last_segment",
    "location",
    "neg_name",
    "network_path",
    "parse_location",
    "subnetwork_path",
]

#: GCE resource names: RFC 1035, at most 63 characters.
MAX_NAME_LENGTH: Final = 63

_HASH_LEN: Final = 8
_SUBNET_HASH_LEN: Final = 6
_UID_LEN: Final = 8
_INVALID_NAME_CHARS: Final = re.compile(r"[^a-z0-9-]+")


def _clean(text: str) -> str:
    """Lower-case, and anything outside [a-z0-9-] (a '.' in a binding name) becomes '-'."""
    return _INVALID_NAME_CHARS.sub("-", text.lower()).strip("-")


def _trim_evenly(fields: Sequence[str], budget: int) -> list[str]:
    """Shorten ``fields`` to fit ``budget`` characters in total, fairly.

    Each field gets an equal share; a field shorter than its share keeps its length and hands the
    rest to the others (water-filling), so a short namespace never costs the binding name.
    """
    lengths = [len(f) for f in fields]
    if sum(lengths) <= budget:
        return list(fields)
    allotted = [0] * len(fields)
    remaining = budget
    open_fields = sorted(range(len(fields)), key=lambda i: lengths[i])
    while open_fields:
        share = remaining // len(open_fields)
        index = open_fields[0]
        if lengths[index] <= share:
            allotted[index] = lengths[index]
            remaining -= lengths[index]
            open_fields.pop(0)
            continue
        # Every open field is longer than the share: split what is left, earlier fields first.
        extra = remaining - share * len(open_fields)
        for position, i in enumerate(sorted(open_fields)):
            allotted[i] = share + (1 if position < extra else 0)
        break
    return [f[:n] for f, n in zip(fields, allotted, strict=True)]


def cluster_marker(cluster_uid: str) -> str:
    """The ``<uid8>`` part of every NEG name of the cluster (what a listing filters on)."""
    return (_clean(cluster_uid).replace("-", "") or "0")[:_UID_LEN]


def binding_hash(*, cluster_uid: str, binding: BindingKey) -> str:
    """The suffix every NEG name of a binding ends with (default and non-default subnetworks)."""
    return hashlib.sha256(f"{cluster_uid}\0{binding.namespace}\0{binding.name}".encode()).hexdigest()[:_HASH_LEN]


def neg_name(*, prefix: str, cluster_uid: str, binding: BindingKey, subnet: str = "") -> str:
    """The NEG name of a binding: the same in every zone, deterministic, at most 63 characters.

    ``<prefix>-<uid8>-<namespace>-<binding>-<hash8>``; the hash covers the untrimmed inputs.  A NEG
    for nodes of a non-default subnetwork gets ``-<subnet6>`` before the hash, as ingress-gce's
    ``Namer.NonDefaultSubnetNEG`` (pkg/utils/namer) adds a 6-character subnet hash: a NEG holds
    endpoints of one subnetwork only.
    """
    digest = binding_hash(cluster_uid=cluster_uid, binding=binding)
    uid = cluster_marker(cluster_uid)
    head = _clean(prefix) or "k8s"
    if not head[0].isalpha():
        head = "k" + head
    subnet_part = f"-{hashlib.sha256(subnet.encode()).hexdigest()[:_SUBNET_HASH_LEN]}" if subnet else ""
    fixed = len(head) + 1 + len(uid) + 1 + 1 + 1 + len(subnet_part) + _HASH_LEN  # separators and hashes
    namespace, name = _trim_evenly(
        [_clean(binding.namespace) or "ns", _clean(binding.name) or "b"], MAX_NAME_LENGTH - fixed
    )
    # Trimming can leave a trailing '-' inside the name; RFC 1035 allows inner hyphens.
    return f"{head}-{uid}-{namespace}-{name}{subnet_part}-{digest}"


def location(project: str, zone: str) -> str:
    return f"{project}/{zone}"


def parse_location(ref: TargetRef) -> tuple[str, str]:
    """``(project, zone)`` from a GCP ref's ``location`` (``"<project>/<zone>"``)."""
    project, sep, zone = ref.location.partition("/")
    if ref.kind != "gcp" or not sep or not project or not zone or "/" in zone:
        raise InvalidTarget(f"{ref} is not a GCP NEG reference (location must be <project>/<zone>)")
    return project, zone


def network_path(project: str, network: str) -> str:
    # The API takes full URLs and partial paths; a bare name is a network of the NEG's project.
    return network if "/" in network else f"projects/{project}/global/networks/{network}"


def subnetwork_path(project: str, zone: str, subnetwork: str) -> str:
    region = zone.rsplit("-", 1)[0]
    return subnetwork if "/" in subnetwork else f"projects/{project}/regions/{region}/subnetworks/{subnetwork}"


def last_segment(url: str | None) -> str:
    """The resource name at the end of a URL or partial path (``.../zones/us-central1-a`` → the zone)."""
    return (url or "").rstrip("/").rsplit("/", 1)[-1]
