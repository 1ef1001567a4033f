#!/usr/bin/env bash
# Make sure Debian's headless-capable Chromium is installed at /usr/bin/chromium
# (the console tests drive it with the Python `playwright` package; `playwright install`
# is never used: no browser downloads). Installs it with apt when missing and root,
# otherwise prints the exact command and fails.
set -euo pipefail
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
if [ -x "$CHROMIUM" ]; then
    exit 0
fi
if [ "$(id -u)" -eq 0 ]; then
    echo "ensure-chromium: installing chromium with apt-get" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y chromium >/dev/null || { apt-get update >/dev/null && apt-get install -y chromium >/dev/null; }
    [ -x "$CHROMIUM" ] && exit 0
    echo "ensure-chromium: apt-get installed chromium but $CHROMIUM is missing" >&2
    exit 1
fi
echo "ensure-chromium: $CHROMIUM not found; install it with:" >&2
echo "    sudo apt-get install -y chromium" >&2
exit 1
