#!/usr/bin/env bash
# Make sure `promtool` (checks deploy/observability/prometheus-rules.yaml in the tests)
# is on PATH or in the virtualenv:   ensure-promtool.sh [VENV]   (default .venv)
# Takes the one static binary out of Debian's `prometheus` package with
# `apt-get download` + `dpkg-deb` — the Prometheus server is neither installed nor
# started. Stops with the exact command to run when it cannot.
set -uo pipefail
venv=${1:-.venv}

command -v promtool >/dev/null && exit 0
[ -x "$venv/bin/promtool" ] && exit 0

if ! command -v apt-get >/dev/null || ! command -v dpkg-deb >/dev/null; then
  echo "ensure-promtool: promtool not found. Install Prometheus' promtool and put it on PATH or in $venv/bin/" >&2
  exit 1
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
chmod 0755 "$tmp"  # apt-get download runs as the _apt user where it can
fetch() { (cd "$tmp" && apt-get download -qq prometheus >/dev/null 2>&1); }
if ! fetch; then
  if [ "$(id -u)" = 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null 2>&1
    fetch || { echo "ensure-promtool: apt-get download prometheus failed" >&2; exit 1; }
  else
    echo "ensure-promtool: could not download the prometheus package. Run: sudo apt-get update, then make test again (or: sudo apt-get install -y prometheus)" >&2
    exit 1
  fi
fi
echo "ensure-promtool: extracting promtool from Debian's prometheus package into $venv/bin/" >&2
dpkg-deb --fsys-tarfile "$tmp"/prometheus_*.deb | tar -x -C "$tmp" ./usr/bin/promtool || exit 1
install -m 0755 "$tmp/usr/bin/promtool" "$venv/bin/promtool"
"$venv/bin/promtool" --version >/dev/null 2>&1 || { echo "ensure-promtool: extracted promtool does not run" >&2; exit 1; }
