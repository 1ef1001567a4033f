#!/usr/bin/env bash
# Regenerate the hashed lock files in requirements/ from pyproject.toml (`make lock`).
#
#   requirements/test.txt   run + dev + test extras: `make install-test` (and CI) install exactly this
#   requirements/run.txt    run + dev extra:         `make install` / `make run`
#   requirements/image.txt  run only:                the Dockerfile
#   requirements/build.txt  setuptools + wheel:      builds the project itself (--no-build-isolation)
#
# run.txt and image.txt are resolved with test.txt as constraints, so every file pins the
# same version of a package. Resolved for CPython 3.11 on every platform (--universal:
# markers, not one machine's wheels) with the sha256 of every file PyPI has for each pin,
# so the slim image (linux x86_64 or aarch64) installs from the same lock as this machine.
# Existing pins are kept where they still fit; LOCK_ARGS="--upgrade" takes the newest of
# everything, LOCK_ARGS="--upgrade-package aiohttp" one package.
# The lock tool (uv, pinned below) lives in a scratch venv, never in the project's.
set -euo pipefail
cd "$(dirname "$0")/.."
UV_VERSION=0.13.9
tools=${LOCK_TOOLS:-${TMPDIR:-/tmp}/safeguard-lock-tools}
if [ ! -x "$tools/bin/uv" ] || [ "$("$tools/bin/uv" --version | cut -d' ' -f2)" != "$UV_VERSION" ]; then
  python3 -m venv "$tools"
  "$tools/bin/python" -m pip install -q "uv==$UV_VERSION"
fi
read -r -a extra <<< "${LOCK_ARGS:-}"
compile() { # output, then inputs and flags
  local out=$1
  shift
  "$tools/bin/uv" pip compile -q --no-config --index-url https://pypi.org/simple \
    --universal --python-version 3.11 --generate-hashes \
    --custom-compile-command "make lock" "${extra[@]}" -o "$out" "$@"
}
compile requirements/test.txt --extra dev --extra test pyproject.toml
compile requirements/run.txt --extra dev -c requirements/test.txt pyproject.toml
compile requirements/image.txt -c requirements/test.txt pyproject.toml
compile requirements/build.txt requirements/build.in
for f in requirements/{test,run,image,build}.txt; do
  printf '%-26s %3d packages\n' "$f" "$(grep -cE '^[A-Za-z0-9].*==' "$f")"
done
