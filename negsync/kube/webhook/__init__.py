"""The mutating admission webhook that injects negsync's readiness gates into new pods.

Three modules, one concept each:

* :mod:`.admission` — the decision, pure: which ``target-health.negsync.io/<binding>`` gates a
  new pod gets, as an ``admission.k8s.io/v1`` AdmissionReview answer; never blocks a pod.
* :mod:`.certs` — the serving certificate: self-generated CA and leaf, the caBundle every
  replica keeps itself in, reload on renewal (cert-manager), and the "does the API server trust
  this replica" readiness check.
* :mod:`.server` — the HTTPS endpoint on the shared HTTP layer (:mod:`negsync.core.httpserver`)
  and :func:`start_webhook`, the one-call wiring.

The names other modules use are re-exported here.  See docs/webhook.md.
"""

from __future__ import annotations

from negsync.kube.webhook.admission import (
    ADMISSION_API_VERSION,
    INJECT_LABEL,
    INJECT_VALUE,
    MalformedReview,
    gates_for,
    mutate,
)
from negsync.kube.webhook.certs import (
    DEFAULT_NAMESPACE,
    DEFAULT_SERVICE,
    MAX_BUNDLE_CAS,
    WEBHOOK_CONFIGURATION,
    SelfSignedCertificate,
    TlsFiles,
    TrustCheck,
    WebhookCertificateError,
    generate_serving_certificate,
    issued_by_any,
    merged_ca_bundle,
    patch_ca_bundle,
    service_dns_names,
    split_pem_certificates,
    write_serving_files,
)
from negsync.kube.webhook.server import MAX_BODY, OUTCOMES, PATHS, WebhookServer, start_webhook

__all__ = [
    "ADMISSION_API_VERSION",
    "DEFAULT_NAMESPACE",
    "DEFAULT_SERVICE",
    "INJECT_LABEL",
    "INJECT_VALUE",
    "MAX_BODY",
    "MAX_BUNDLE_CAS",
    "OUTCOMES",
    "PATHS",
    "WEBHOOK_CONFIGURATION",
    "MalformedReview",
    "SelfSignedCertificate",
    "TlsFiles",
    "TrustCheck",
    "WebhookCertificateError",
    "WebhookServer",
    "gates_for",
    "generate_serving_certificate",
    "issued_by_any",
    "merged_ca_bundle",
    "mutate",
    "patch_ca_bundle",
    "service_dns_names",
    "split_pem_certificates",
    "start_webhook",
    "write_serving_files",
]
