# syntax=docker/dockerfile:1
# Safeguard Relay: one image for the three services (intake, escalation, notifier).
#
#   docker build -t safeguard-relay:dev .
#   docker run --read-only --tmpfs /tmp -v sg-data:/var/lib/safeguard \
#       -v "$PWD/var:/etc/safeguard:ro" -e SAFEGUARD_CONFIG=/etc/safeguard/safeguard.toml \
#       safeguard-relay:dev intake          # or escalation / notifier
#
# Stage 1 fetches the wheels of every dependency exactly as requirements/image.txt locks
# them (each checked against its sha256) and builds the project's own; the assets stage
# installs the front-end assets from package-lock.json (npm ci, Debian's Node.js) and keeps
# only the folders the pages serve; the runtime installs the wheels (hashes checked again)
# into a slim Python 3.11 image with no compiler, no pip cache, no Node.js and no source
# tree. See docs/deploy.md.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# The dependencies first (their layer is reused until a lock file changes): the locked
# wheels only (every one ships manylinux wheels for CPython 3.11, x86_64 and aarch64),
# the lock beside them for the runtime's second check, and the locked setuptools.
COPY requirements/image.txt requirements/build.txt ./requirements/
RUN pip install --require-hashes -r requirements/build.txt \
 && pip wheel --require-hashes --only-binary=:all: --wheel-dir /wheels -r requirements/image.txt \
 && cp requirements/image.txt /wheels/image.txt
COPY pyproject.toml README.md ./
COPY shared ./shared
COPY services ./services
COPY safeguard ./safeguard
# The project's own wheel, without its dependencies (they are the locked ones above).
RUN pip wheel --no-deps --no-build-isolation --wheel-dir /wheels . \
 && ls /wheels/safeguard_relay-*.whl

# ---------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS assets
# GOV.UK Frontend, MOJ Frontend and libsodium-wrappers exactly as locked (DESIGN §3.7);
# /assets gets the dist folders shared/web/assets.py serves, with the packages' licences.
RUN apt-get update \
 && apt-get install -y --no-install-recommends nodejs npm \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund --loglevel=error \
 && cd node_modules \
 && mkdir /assets \
 && cp -r --parents govuk-frontend/dist/govuk/assets \
        govuk-frontend/dist/govuk/govuk-frontend.min.css govuk-frontend/dist/govuk/govuk-frontend.min.js \
        @ministryofjustice/frontend/moj/assets @ministryofjustice/frontend/moj/moj-frontend.min.css \
        @ministryofjustice/frontend/moj/moj-frontend.min.js \
        libsodium-wrappers/dist/modules-esm libsodium-wrappers/dist/modules libsodium-wrappers/LICENSE \
        libsodium/dist/modules-esm libsodium/dist/modules libsodium/LICENSE \
        govuk-frontend/package.json @ministryofjustice/frontend/package.json /assets/

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
    SAFEGUARD_LOG_FORMAT=json \
    SAFEGUARD_ASSETS_DIR=/usr/local/share/safeguard/node_modules

# A fixed non-root uid/gid (10001) that Kubernetes' runAsUser and compose's user match.
# /var/lib/safeguard is the only directory the services write to (mount a volume or an
# emptyDir there); /tmp is expected to be a tmpfs; everything else can be read-only.
RUN groupadd --system --gid 10001 safeguard \
 && useradd --system --uid 10001 --gid 10001 --no-create-home \
        --home-dir /var/lib/safeguard --shell /usr/sbin/nologin safeguard \
 && install -d -o 10001 -g 10001 -m 0750 /var/lib/safeguard \
 && install -d -o root -g 10001 -m 0750 /etc/safeguard

# Install from the build stage's wheels only (no index), the dependencies as locked with
# their hashes, then the project with no dependencies: the bind mount keeps the wheels
# out of every layer. pip byte-compiles at install time, so nothing needs to write .pyc
# files at run time on a read-only root filesystem.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels --require-hashes -r /wheels/image.txt \
 && pip install --no-index --no-deps /wheels/safeguard_relay-*.whl \
 && safeguard --help >/dev/null

COPY --chmod=0755 deploy/docker/healthcheck.py /usr/local/lib/safeguard/healthcheck.py
# The front-end assets the pages serve under /assets/ (read-only, owned by root).
COPY --from=assets /assets /usr/local/share/safeguard/node_modules

USER 10001:10001
WORKDIR /var/lib/safeguard
# The public ports only: /metrics is on a port of its own (safeguard.toml metrics_port,
# 9080 / 9081 / 9082), not exposed, so `docker run -P` never publishes it.
EXPOSE 8080 8081 8082

# /healthz of whichever service PID 1 serves (python, not curl: the slim image has none).
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "/usr/local/lib/safeguard/healthcheck.py"]

STOPSIGNAL SIGTERM
ENTRYPOINT ["safeguard", "serve"]
CMD ["intake"]
