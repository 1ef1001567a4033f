# syntax=docker/dockerfile:1
# Safeguard Relay: one image for the three services (intake, escalation, notifier).
#
#   docker build -t safeguard-relay:dev .
#   docker run --read-only --tmpfs /tmp -v sg-data:/var/lib/safeguard \
#       -v "$PWD/var:/etc/safeguard:ro" -e SAFEGUARD_CONFIG=/etc/safeguard/safeguard.toml \
#       safeguard-relay:dev intake          # or escalation / notifier
#
# Stage 1 builds wheels for the project and every dependency; stage 2 installs them
# into a slim Python 3.11 runtime with no compiler, no pip cache and no source tree.
# See docs/deploy.md.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY shared ./shared
COPY services ./services
COPY safeguard ./safeguard
# Every wheel the runtime needs lands in /wheels (the project's own is built here;
# its dependencies ship manylinux wheels for CPython 3.11).
RUN pip wheel --wheel-dir /wheels . \
 && ls /wheels/safeguard_relay-*.whl

# ---------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="safeguard-relay" \
      org.opencontainers.image.description="Safeguard Relay: intake, escalation and notifier services"

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    SAFEGUARD_BIND=0.0.0.0 \
    SAFEGUARD_DATA_DIR=/var/lib/safeguard \
    SAFEGUARD_CONFIG=/etc/safeguard/safeguard.toml \
    SAFEGUARD_LOG_FORMAT=json

# A fixed non-root uid/gid (10001) that Kubernetes' runAsUser and compose's user match.
# /var/lib/safeguard is the only directory the services write to (mount a volume or an
# emptyDir there); /tmp is expected to be a tmpfs; everything else can be read-only.
RUN groupadd --system --gid 10001 safeguard \
 && useradd --system --uid 10001 --gid 10001 --no-create-home \
        --home-dir /var/lib/safeguard --shell /usr/sbin/nologin safeguard \
 && install -d -o 10001 -g 10001 -m 0750 /var/lib/safeguard \
 && install -d -o root -g 10001 -m 0750 /etc/safeguard

# Install from the build stage's wheels only (no index): the bind mount keeps the
# wheels out of every layer. pip byte-compiles at install time, so nothing needs to
# write .pyc files at run time on a read-only root filesystem.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels safeguard-relay \
 && safeguard --help >/dev/null

COPY --chmod=0755 deploy/docker/healthcheck.py /usr/local/lib/safeguard/healthcheck.py

USER 10001:10001
WORKDIR /var/lib/safeguard
EXPOSE 8080 8081 8082

# /healthz of whichever service PID 1 serves (python, not curl: the slim image has none).
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "/usr/local/lib/safeguard/healthcheck.py"]

STOPSIGNAL SIGTERM
ENTRYPOINT ["safeguard", "serve"]
CMD ["intake"]
