#!/usr/bin/env bash
# Write the development config and keys the compose stack mounts, into
# deploy/compose/secrets/ (or $1): `safeguard keys init`, used as it is:
#   - the dev contacts' Teams webhooks stay http://127.0.0.1:8026/teams/...: in the
#     compose stack the notifier runs in the sink's network namespace, so 127.0.0.1 is
#     the sink there too (and the notifier posts over plain http only to a loopback host);
#   - no dev vhost on this machine's broker (--no-broker): the stack's broker gets its
#     users and topology from the definitions `safeguard bus users` writes here;
#   - key files stay relative (keys/...): compose mounts them as secrets under
#     /etc/safeguard/keys/, beside the config at /etc/safeguard/safeguard.toml;
#   - each service's metrics listener (metrics_port, default 9080 / 9081 / 9082) binds
#     0.0.0.0 so that Prometheus, another container, can scrape it; compose publishes no
#     metrics port, so only the compose network reaches it.
# The key files are made 0644 inside a 0700 directory: compose bind-mounts each file
# as it is on the host, and the containers run as uid 10001, not as you. Dev keys only;
# never use these for real referrals. Keeps an existing set-up unless --force.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
out=${1:-$here/secrets}
force=()
[ "${2:-}" = "--force" ] && force=(--force)
safeguard=$repo/.venv/bin/safeguard
if [ ! -x "$safeguard" ]; then
  if command -v safeguard >/dev/null; then
    safeguard=$(command -v safeguard)
  else
    echo "init-secrets: no safeguard command; run 'make install' in $repo first" >&2
    exit 1
  fi
fi
mkdir -p "$out"
chmod 0700 "$out"
"$safeguard" keys init --dir "$out" --no-broker "${force[@]}" >/dev/null
# A set-up kept from before the notifier shared the sink's network namespace has its
# Teams webhooks at http://sink:8026/teams/..., which the notifier refuses (plain http
# to a host that is not loopback): point them back at 127.0.0.1.
sed -i 's#http://sink:\([0-9]*\)/teams/#http://127.0.0.1:\1/teams/#g' "$out/safeguard.toml"
# Metrics for Prometheus on the compose network (once: a kept set-up has the lines already).
if ! grep -q '^metrics_host' "$out/safeguard.toml"; then
  sed -i '/^\[services\.\(intake\|escalation\|notifier\)\]$/a metrics_host = "0.0.0.0"' "$out/safeguard.toml"
fi
# The broker's definitions (its users, their permissions, the topology) and one URL file
# per user: amqp-<service>.env for each service, amqp-admin.env for operator tools and
# amqp-client-<id>.url to hand to each client system. Passwords are made once and kept in
# broker-users.json (0600); the files the containers read are 0644 like the keys.
SAFEGUARD_CONFIG="$out/safeguard.toml" "$safeguard" bus users --dir "$out" --host rabbitmq --mode 644 >/dev/null
chmod 0644 "$out/safeguard.toml" "$out"/keys/*
chmod 0700 "$out/keys"
echo "init-secrets: wrote $out (dev keys; the compose stack mounts them read-only)"
