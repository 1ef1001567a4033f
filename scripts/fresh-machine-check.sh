#!/usr/bin/env bash
# Fresh-machine check: does a clean copy of this repository install, pass its unit
# tests and start the three services, with nothing from this checkout's .venv/ or var/?
#
#   scripts/fresh-machine-check.sh            # the working tree as it is (uncommitted work too)
#   FRESH_SOURCE=head scripts/fresh-machine-check.sh   # exactly HEAD (git archive)
#
# Steps, each timed: copy into a temp dir; `make test PYTEST_ARGS="tests/unit -q"` there
# (a new virtualenv, installed from the package registries); build the project wheel as
# the Dockerfile's build stage does and check it carries the CLI and every service's
# migrations; `timeout 60 make run` in the background on ports 18080-18082 and poll the
# three /healthz; stop it. Prints PASS or FAIL (exit 0 / 1). Not part of `make test`:
# it takes minutes. Needs RabbitMQ and PostgreSQL as `make test` does.
set -uo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/safeguard-fresh.XXXXXX")
ports=(18080 18081 18082)
names=(intake escalation notifier)
run_pid=""
failed=""
timings=()

cleanup() {
  if [ -n "$run_pid" ] && kill -0 "$run_pid" 2>/dev/null; then
    kill -TERM -- "-$run_pid" 2>/dev/null
    for _ in $(seq 1 30); do kill -0 "$run_pid" 2>/dev/null || break; sleep 1; done
    kill -KILL -- "-$run_pid" 2>/dev/null
  fi
  if [ -z "${FRESH_KEEP:-}" ]; then rm -rf "$work"; else echo "fresh-check: kept $work"; fi
}
trap cleanup EXIT

step() { # name command...
  local name=$1 t0 rc
  shift
  echo "==> $name"
  t0=$(date +%s)
  "$@"
  rc=$?
  timings+=("$(printf '%-28s %4ss  %s' "$name" "$(($(date +%s) - t0))" "$([ $rc -eq 0 ] && echo ok || echo "FAILED ($rc)")")")
  [ $rc -eq 0 ] || failed="$failed $name"
  return $rc
}

copy_tree() {
  if [ "${FRESH_SOURCE:-tree}" = head ]; then
    git -C "$repo" archive --format=tar HEAD | tar -x -C "$work"
  else
    tar -C "$repo" -c \
      --exclude=./.git --exclude=./.venv --exclude=./node_modules --exclude=./var --exclude=./build \
      --exclude=./.pytest_cache --exclude=./.hypothesis --exclude='*.egg-info' \
      --exclude='__pycache__' --exclude=./deploy/compose/secrets . | tar -x -C "$work"
  fi
  [ -f "$work/Makefile" ] && [ ! -e "$work/.venv" ] && [ ! -e "$work/var" ]
}

unit_tests() {
  (cd "$work" && make test PYTEST_ARGS="tests/unit -q -p no:cacheprovider") > "$work.test.log" 2>&1
  local rc=$?
  tail -n 3 "$work.test.log"
  return $rc
}

wheel_check() {
  (cd "$work" && .venv/bin/python -m pip wheel -q --no-deps --wheel-dir "$work/.wheel" .) > "$work.wheel.log" 2>&1 || {
    tail -n 20 "$work.wheel.log"; return 1; }
  (cd "$work" && .venv/bin/python - "$work/.wheel" <<'PY'
import sys, zipfile
from pathlib import Path
(whl,) = Path(sys.argv[1]).glob("safeguard_relay-*.whl")
names = set(zipfile.ZipFile(whl).namelist())
need = ["safeguard/cli.py", "shared/config.py", "shared/bus/topology.py"]
for svc in ("intake", "escalation", "notifier"):
    need.append(f"services/{svc}/bootstrap.py")
    mig = Path("services") / svc / "adapters" / "migrations"
    need += [str(p) for p in mig.rglob("*") if p.is_file() and p.suffix in (".py", ".mako") and "__pycache__" not in p.parts]
missing = [n for n in need if n not in names]
if missing:
    print("wheel is missing (the image would lack them):", *missing, sep="\n  ")
    sys.exit(1)
print(f"{whl.name}: {len(names)} files, CLI and all migrations present")
PY
  )
}

run_and_poll() {
  export SAFEGUARD_INTAKE_PORT=${ports[0]} SAFEGUARD_ESCALATION_PORT=${ports[1]} SAFEGUARD_NOTIFIER_PORT=${ports[2]}
  # mail to a closed local port: `safeguard up` then starts no sink (whose ports may be in use)
  export SAFEGUARD_SMTP_URL=smtp://127.0.0.1:18025
  (cd "$work" && exec setsid timeout 60 make run) > "$work.run.log" 2>&1 &
  run_pid=$!
  local i s ok
  for ((i = 0; i < 45; i++)); do
    ok=0
    for s in 0 1 2; do
      python3 -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:${ports[$s]}/healthz', timeout=2).status == 200 else 1)" 2>/dev/null && ok=$((ok + 1))
    done
    if [ $ok -eq 3 ]; then
      echo "all three /healthz answered 200 after ~${i}s (${names[*]} on ${ports[*]})"
      return 0
    fi
    kill -0 "$run_pid" 2>/dev/null || break
    sleep 1
  done
  echo "not all /healthz answered; last lines of make run:"
  tail -n 25 "$work.run.log"
  return 1
}

stop_run() {
  kill -TERM -- "-$run_pid" 2>/dev/null
  local i
  for ((i = 0; i < 30; i++)); do kill -0 "$run_pid" 2>/dev/null || break; sleep 1; done
  if kill -0 "$run_pid" 2>/dev/null; then
    kill -KILL -- "-$run_pid" 2>/dev/null; echo "make run did not stop within 30 s of SIGTERM"; return 1
  fi
  wait "$run_pid" 2>/dev/null
  run_pid=""
}

t_start=$(date +%s)
echo "fresh-check: copying $repo (${FRESH_SOURCE:-tree}) to $work"
step "copy" copy_tree &&
  step "make test (tests/unit)" unit_tests &&
  step "wheel (as the image)" wheel_check &&
  step "make run + 3x /healthz" run_and_poll &&
  step "stop (SIGTERM)" stop_run
echo
echo "fresh-check timings:"
printf '  %s\n' "${timings[@]}"
echo "  total                        $(($(date +%s) - t_start))s"
rm -f "$work.test.log" "$work.wheel.log" "$work.run.log"
if [ -n "$failed" ]; then echo "FAIL:$failed"; exit 1; fi
echo "PASS"
