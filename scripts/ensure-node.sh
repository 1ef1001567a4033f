#!/usr/bin/env bash
# Make sure the front-end assets the pages serve (GOV.UK Frontend, MOJ Frontend,
# libsodium-wrappers: package.json, locked by package-lock.json) are in node_modules/.
# Installs Node.js and npm with apt when missing and root, otherwise prints the exact
# command and fails. Runs `npm ci` only when node_modules is missing or older than the
# lock file, so re-runs are instant. (`make assets`; `make install` runs it too.)
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
        echo "ensure-node: installing nodejs and npm with apt-get" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get install -y -qq nodejs npm >/dev/null \
            || { apt-get update -qq >/dev/null && apt-get install -y -qq nodejs npm >/dev/null; }
    else
        echo "ensure-node: node and npm not found; install them with:" >&2
        echo "    sudo apt-get install -y nodejs npm" >&2
        exit 1
    fi
fi

stamp=node_modules/.package-lock.json  # npm writes it on every install
if [ ! -f "$stamp" ] || [ package-lock.json -nt "$stamp" ]; then
    echo "ensure-node: npm ci (package-lock.json)" >&2
    npm ci --no-audit --no-fund --loglevel=error
    touch "$stamp"
fi
