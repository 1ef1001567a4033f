#!/usr/bin/env bash
# Make sure the servers Safeguard Relay needs answer on this machine.
#   ensure-services.sh rabbitmq            (make run)
#   ensure-services.sh rabbitmq postgres   (make test)
# Starts a stopped local server; installs one with apt when root; otherwise
# stops with the exact command to run. Never lets the tests skip silently.
set -uo pipefail

port_open() { # host port
  python3 - "$1" "$2" <<'PY'
import socket, sys
s = socket.socket(); s.settimeout(1)
try:
    s.connect((sys.argv[1], int(sys.argv[2])))
except OSError:
    sys.exit(1)
PY
}

wait_port() { # host port seconds
  local i
  for ((i = 0; i < $3; i++)); do port_open "$1" "$2" && return 0; sleep 1; done
  return 1
}

is_root() { [ "$(id -u)" = 0 ]; }

apt_install() { # package
  if is_root && command -v apt-get >/dev/null; then
    echo "ensure-services: installing $1 with apt-get" >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$1" >/dev/null
  else
    echo "ensure-services: $1 is not installed. Run: sudo apt-get install -y $1" >&2
    return 1
  fi
}

ensure_rabbitmq() {
  port_open 127.0.0.1 5672 && return 0
  if ! command -v rabbitmq-server >/dev/null; then
    apt_install rabbitmq-server || exit 1
  fi
  port_open 127.0.0.1 5672 && return 0
  if ! is_root; then
    echo "ensure-services: RabbitMQ is not answering on 127.0.0.1:5672. Run: sudo rabbitmq-server -detached" >&2
    exit 1
  fi
  echo "ensure-services: starting rabbitmq-server" >&2
  rabbitmq-server -detached >/dev/null 2>&1 || true
  if ! wait_port 127.0.0.1 5672 90; then
    echo "ensure-services: RabbitMQ did not start on 127.0.0.1:5672 within 90 s; see /var/log/rabbitmq/" >&2
    exit 1
  fi
  rabbitmqctl await_startup >/dev/null 2>&1 || true
}

ensure_postgres() {
  port_open 127.0.0.1 5432 && return 0
  if ! ls /etc/postgresql >/dev/null 2>&1; then
    apt_install postgresql || exit 1
  fi
  port_open 127.0.0.1 5432 && return 0
  local ver
  ver=$(ls /etc/postgresql | sort -V | tail -n 1)
  if ! is_root; then
    echo "ensure-services: PostgreSQL is not answering on 127.0.0.1:5432. Run: sudo pg_ctlcluster --skip-systemctl-redirect $ver main start" >&2
    exit 1
  fi
  echo "ensure-services: starting PostgreSQL $ver" >&2
  pg_ctlcluster --skip-systemctl-redirect "$ver" main start || true
  if ! wait_port 127.0.0.1 5432 60; then
    echo "ensure-services: PostgreSQL did not start on 127.0.0.1:5432 within 60 s" >&2
    exit 1
  fi
}

for svc in "$@"; do
  case "$svc" in
    rabbitmq) ensure_rabbitmq ;;
    postgres) ensure_postgres ;;
    *) echo "ensure-services: unknown service $svc" >&2; exit 2 ;;
  esac
done
