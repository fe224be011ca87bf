"""The webhook's serving certificate, one module per stage of its life.

Two modes.  Self-generated (default): each replica makes its own CA and leaf at start-up
(:mod:`.generation`), keeps its CA in the webhook configuration's ``caBundle`` next to the other
replicas' (:mod:`.ca_bundle`) and rotates before expiry (:mod:`.self_signed`).  cert-manager
(``cert_dir`` given): ``tls.crt``/``tls.key`` come from the Secret volume and cainjector owns the
caBundle.  Either way the files are served through :mod:`.reload` (re-read when they change), and
:mod:`.trust` tells ``/readyz`` whether the API server would accept what this replica serves.

The modules depend one way: ``generation`` and ``ca_bundle`` stand alone, ``trust`` reads the
bundle, ``self_signed`` uses both of the first two.  The names other modules use are re-exported
here.  See docs/webhook.md.
"""

from __future__ import annotations

from negsync.kube.webhook.certs.ca_bundle import (
    MAX_BUNDLE_CAS,
    WEBHOOK_CONFIGURATION,
    ca_bundle_of,
    merged_ca_bundle,
    patch_ca_bundle,
    read_configuration,
    split_pem_certificates,
)
from negsync.kube.webhook.certs.generation import (
    DEFAULT_NAMESPACE,
    DEFAULT_SERVICE,
    generate_serving_certificate,
    service_dns_names,
    write_serving_files,
)
from negsync.kube.webhook.certs.reload import TlsFiles, WebhookCertificateError
from negsync.kube.webhook.certs.self_signed import SelfSignedCertificate
from negsync.kube.webhook.certs.trust import TrustCheck, issued_by_any

__all__ = [
    "DEFAULT_NAMESPACE",
    "DEFAULT_SERVICE",
    "MAX_BUNDLE_CAS",
    "WEBHOOK_CONFIGURATION",
    "SelfSignedCertificate",
    "TlsFiles",
    "TrustCheck",
    "WebhookCertificateError",
    "ca_bundle_of",
    "generate_serving_certificate",
    "issued_by_any",
    "merged_ca_bundle",
    "patch_ca_bundle",
    "read_configuration",
    "service_dns_names",
    "split_pem_certificates",
    "write_serving_files",
]
