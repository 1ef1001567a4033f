#!/usr/bin/env bash
# Create the project's virtualenv, installing python3-venv with apt when it is missing.
set -euo pipefail
venv=${1:-.venv}
[ -x "$venv/bin/python" ] && exit 0
if ! python3 -m venv "$venv" 2>/dev/null; then
  rm -rf "$venv"
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
    python3 -m venv "$venv"
  else
    echo "bootstrap-venv: python3 -m venv failed. Run: sudo apt-get install -y python3-venv" >&2
    exit 1
  fi
fi
"$venv/bin/python" -m pip install -q --upgrade pip
