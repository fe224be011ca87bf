# syntax=docker/dockerfile:1
# negsync controller image: multi-stage, slim, non-root.
#
#   docker build -t ghcr.io/negsync/negsync:0.1.0 .
#
# Not built in this repository's CI (no Docker engine there); tests/deploy/test_manifests.py
# checks it statically (two stages, constraints, numeric non-root USER matching the Deployment).
#
# Pin the base by digest for reproducible, tamper-evident builds, in both stages at once:
#   docker build --build-arg PYTHON_IMAGE=python:3.11-slim@sha256:<digest> .
# (`docker buildx imagetools inspect python:3.11-slim` prints the current digest.) Builder and
# runtime must be the same image: the console script's shebang is the builder's interpreter path.
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# Metadata first, then the package: pyproject.toml names README.md as the long description.
COPY pyproject.toml constraints.txt README.md ./
COPY negsync/ negsync/
# Every dependency resolved through constraints.txt, exactly as `make` does; --prefix gives a
# tree that is copied as a whole into the runtime stage (no pip, no build tools there).
RUN pip install --prefix=/install -c constraints.txt . \
 && find /install -type d -name __pycache__ -prune -exec rm -rf {} +

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="negsync" \
      org.opencontainers.image.description="Keeps GCP NEGs / AWS ELBv2 IP target groups in sync with a Service's pod endpoints" \
      org.opencontainers.image.source="https://github.com/negsync/negsync" \
      org.opencontainers.image.licenses="Apache-2.0"
# No .pyc writes (the root filesystem is read-only in the Deployment), logs straight to stdout,
# and a writable HOME for libraries that cache under it (65532 has no passwd entry; /tmp is the
# Deployment's emptyDir).
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    MPLCONFIGDIR=/tmp/matplotlib
COPY --from=builder /install /usr/local
# Numeric uid:gid so runAsNonRoot can verify it without a passwd lookup; matches the
# Deployment's runAsUser/runAsGroup.
USER 65532:65532
EXPOSE 8080 9090 9443
ENTRYPOINT ["negsync"]
CMD ["controller"]
