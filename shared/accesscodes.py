"""Access codes for the browser pages (control-room console, ops dashboard, report page).

A code comes from an environment variable (from a Secret, so every replica accepts the
same one) or, on a single machine, from a file generated once under the data directory
with mode 0600. Codes are at least 16 characters.
"""
from __future__ import annotations

import secrets
from collections.abc import Mapping
from pathlib import Path

from shared.config import ConfigError, Settings

MIN_LENGTH = 16


def from_env(env: Mapping[str, str], name: str) -> str | None:
    code = env.get(name, "").strip()
    if not code:
        return None
    if len(code) < MIN_LENGTH:
        raise ConfigError(f"environment: {name}: expected a code of at least {MIN_LENGTH} characters")
    return code


def generated(path: Path) -> str:
    """The code in `path`, written there (0600, directory 0700) the first time."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not path.exists():
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(24) + "\n", encoding="utf-8")
    return path.read_text(encoding="utf-8").strip()


def access_code(settings: Settings, env: Mapping[str, str], name: str, relative_path: str) -> str:
    """`env[name]`, else the generated file `<data dir>/<relative_path>`."""
    return from_env(env, name) or generated(Path(settings.data_dir) / relative_path)
