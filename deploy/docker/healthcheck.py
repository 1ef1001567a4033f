"""Container HEALTHCHECK: GET /healthz of the service this container runs.

The image's entrypoint is `safeguard serve SERVICE [--port N]`, so the service (and
an explicit port) are read from PID 1's command line; otherwise the port is
SAFEGUARD_<SERVICE>_PORT or the service's default (the same rule as
`shared.config.service_port`). Standard library only: the slim image has no curl.
Exit 0 when /healthz answers 200 within the timeout, 1 otherwise.
"""
from __future__ import annotations

import os
import sys
import urllib.request
from pathlib import Path

DEFAULT_PORTS = {"intake": 8080, "escalation": 8081, "notifier": 8082}
TIMEOUT_S = 3.0


def target(argv: list[str], env: dict[str, str] | os._Environ[str]) -> tuple[str, int]:
    """(service, port) for a `... serve SERVICE [--port N]` command line."""
    if "serve" not in argv:
        raise ValueError("not a `safeguard serve` process")
    rest = argv[argv.index("serve") + 1:]
    service = next((a for a in rest if a in DEFAULT_PORTS), None)
    if service is None:
        raise ValueError("no service named after `serve`")
    port = env.get(f"SAFEGUARD_{service.upper()}_PORT", DEFAULT_PORTS[service])
    for i, arg in enumerate(rest):
        if arg == "--port" and i + 1 < len(rest):
            port = rest[i + 1]
        elif arg.startswith("--port="):
            port = arg.split("=", 1)[1]
    return service, int(port)


def pid1_argv(proc: Path = Path("/proc/1/cmdline")) -> list[str]:
    return [a for a in proc.read_bytes().decode("utf-8", "replace").split("\0") if a]


def main() -> int:
    try:
        argv = sys.argv[1:] or pid1_argv()
        service, port = target(argv, os.environ)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=TIMEOUT_S) as resp:
            ok = resp.status == 200
    except Exception as exc:  # any failure is "unhealthy", with a reason for `docker inspect`
        print(f"healthcheck: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(f"healthcheck: {service} on :{port} {'ok' if ok else 'not ok'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
