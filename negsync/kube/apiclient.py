"""The Kubernetes API client as the Deployment gets it, and the cluster's stable id.

:func:`load_api_client` follows client-go's order for a controller: the in-cluster service
account first (``KUBERNETES_SERVICE_HOST`` and the mounted token), then ``$KUBECONFIG``, then
``~/.kube/config``; ``--kubeconfig`` overrides both.  No usable config is a configuration error
naming ``--kubeconfig`` (exit 2), never a traceback.
"""

from __future__ import annotations

import logging
from typing import Any

from kubernetes import client, config

from negsync.errors import ConfigError

log = logging.getLogger("negsync.controller")


def load_api_client(kubeconfig: str | None) -> client.ApiClient:
    """In-cluster config first, then $KUBECONFIG, then ~/.kube/config (or --kubeconfig when given)."""
    configuration = client.Configuration()
    if kubeconfig:
        config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    else:
        try:
            config.load_incluster_config(client_configuration=configuration)
        except config.ConfigException:
            try:
                config.load_kube_config(client_configuration=configuration)
            except (config.ConfigException, OSError) as exc:
                raise ConfigError("--kubeconfig", f"no in-cluster config and no usable kubeconfig: {exc}") from None
    return client.ApiClient(configuration)


def cluster_uid(api_client: Any, given: str) -> str:
    """``given`` (``--cluster-uid``), else the kube-system namespace's uid (stable for the cluster's life)."""
    if given:
        return given
    try:
        namespace = client.CoreV1Api(api_client).read_namespace("kube-system", _request_timeout=10)
        return str(namespace.metadata.uid) if namespace.metadata else "unknown"
    except Exception:
        log.warning("kube-system namespace not readable; pass --cluster-uid for stable NEG names")
        return "unknown"


__all__ = ["cluster_uid", "load_api_client"]
