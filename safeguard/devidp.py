"""The local development identity provider (PyPI `oidc-provider-mock`) that `make run`
starts and the tests sign in at: one person per dev role and organisation, each in the
group that `[[identity_providers]]` of the dev configuration maps to a role (DESIGN §3.7).

It runs as its own process (`python -m oidc_provider_mock`), on 127.0.0.1:9400 under
`make run`; its sign-in page lists these people, one click each.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass

DEV_PORT = 9400
DEV_PROVIDER_ID = "dev"
DEV_CLIENT_ID = "safeguard-dev"


@dataclass(frozen=True)
class DevPerson:
    sub: str
    name: str
    group: str
    role: str
    organisation: str | None
    what: str

    def claims(self) -> dict:
        return {"sub": self.sub, "name": self.name, "email": self.sub, "groups": [self.group]}


DEV_PEOPLE = (
    DevPerson("social.worker@dev-borough.example", "Sam Patel", "sg-social-care-E99999999", "social_care",
              "E99999999", "social worker, Dev Borough (E99999999)"),
    DevPerson("team.manager@dev-borough.example", "Jo Williams", "sg-social-care-managers-E99999999",
              "social_care", "E99999999", "team manager, Dev Borough (E99999999)"),
    DevPerson("ctp.officer@dev-force.example", "Dana Okafor", "sg-prevent-dev-force", "prevent", "dev-force",
              "CTP Prevent officer, Dev Force"),
    DevPerson("control.room@dev-force.example", "Lee Morgan", "sg-control-room-dev-force", "control_room",
              "dev-force", "control-room operator, Dev Force"),
    DevPerson("ops@safeguard.example", "Alex Reid", "sg-ops", "ops", None, "operations engineer"),
)


def issuer(port: int = DEV_PORT) -> str:
    return f"http://127.0.0.1:{port}"


def command(port: int = DEV_PORT) -> list[str]:
    """The provider's command line (through `main` below)."""
    argv = [sys.executable, "-m", "safeguard.devidp", "--host", "127.0.0.1", "--port", str(port), "--require-nonce"]
    for p in DEV_PEOPLE:
        argv += ["--user-claims", json.dumps(p.claims())]
    return argv


def config_lines(port: int = DEV_PORT) -> list[str]:
    """The `[[identity_providers]]` entry of the dev configuration."""
    out = ["[[identity_providers]]", f'id = "{DEV_PROVIDER_ID}"', 'name = "the development identity provider"',
           f'issuer = "{issuer(port)}"', f'client_id = "{DEV_CLIENT_ID}"',
           'client_secret = "dev-only"  # the development provider accepts any secret']
    for p in DEV_PEOPLE:
        out += ["[[identity_providers.claims]]", f'group = "{p.group}"', f'role = "{p.role}"',
                *([f'organisation = "{p.organisation}"'] if p.organisation else [])]
    return out


def banner(port: int = DEV_PORT) -> list[str]:
    """How to sign in as each dev person (printed by `safeguard up`)."""
    return [f"  sign in at {issuer(port)} as one of (click the name on its page):",
            *(f"    {p.sub:<38} {p.name} — {p.what}" for p in DEV_PEOPLE)]


def main() -> None:
    """Run `oidc_provider_mock` with its libraries' deprecation notices silenced: Authlib turns
    its own on ("always") when imported, so the filter goes in after that import."""
    import runpy
    import warnings

    import authlib.deprecate  # noqa: F401  (installs Authlib's "always" filter first)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=authlib.deprecate.AuthlibDeprecationWarning)
    runpy.run_module("oidc_provider_mock", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
