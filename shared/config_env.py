"""What a service takes from its environment at start, beside `load_settings` (DESIGN §3.2).

- `metrics_listener(settings, service)`: where `/metrics` is served — its own address and
  port (`[services.<name>] metrics_host`, `metrics_port`, or SAFEGUARD_<SERVICE>_METRICS_PORT),
  never the public port, and the bearer token `metrics_token_env` names, if any.
- `with_teams_webhooks(settings)`: the settings with each route's `teams_webhook_env` read
  into its `teams_webhook` (the notifier's start; the URLs are credentials kept in a Secret).

Errors are `ConfigError`s naming the file and the key, never a value.
"""
from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from shared.config import DEFAULT_METRICS_PORTS, ConfigError, Organisation, Settings, service_port


@dataclass(frozen=True)
class MetricsListener:
    host: str
    port: int
    token: str | None = field(default=None, repr=False)

    @property
    def loopback_only(self) -> bool:
        return ipaddress.ip_address(self.host).is_loopback

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        return f"http://{f'[{host}]' if ':' in host else host}:{self.port}/metrics"


def metrics_port(settings: Settings, service: str, env: Mapping[str, str] | None = None) -> int:
    """SAFEGUARD_<SERVICE>_METRICS_PORT, else `[services.<name>] metrics_port`, else the default."""
    env = os.environ if env is None else env
    name = f"SAFEGUARD_{service.upper()}_METRICS_PORT"
    if raw := env.get(name):
        if not raw.isdigit() or not 1 <= int(raw) <= 65535:
            raise ConfigError(f"environment: {name}: must be a port number (1 to 65535)")
        return int(raw)
    keys = settings.file.services[service]
    return keys.metrics_port or DEFAULT_METRICS_PORTS[service]


def metrics_listener(settings: Settings, service: str, env: Mapping[str, str] | None = None,
                     public_port: int | None = None) -> MetricsListener:
    env = os.environ if env is None else env
    keys = settings.file.services[service]
    where = f"{settings.config_path}: services.{service}"
    port = metrics_port(settings, service, env)
    if port == (public_port or service_port(service, env)):
        raise ConfigError(f"{where}.metrics_port: {port} is the public port too; metrics need a port of their own")
    token = None
    if keys.metrics_token_env:
        token = env.get(keys.metrics_token_env, "").strip()
        if len(token) < 16:
            raise ConfigError(f"{where}.metrics_token_env: environment variable {keys.metrics_token_env} is "
                              "not set or shorter than 16 characters")
    return MetricsListener(keys.metrics_host, port, token)


def with_teams_webhooks(settings: Settings, env: Mapping[str, str] | None = None) -> Settings:
    """`settings` with every `teams_webhook_env` route given its URL from the environment."""
    env = os.environ if env is None else env
    fc = settings.file

    def resolve(kind: str, orgs: tuple[Organisation, ...]) -> tuple:
        out = []
        for i, org in enumerate(orgs):
            contacts = dict(org.contacts)
            for role, route in org.contacts.items():
                if route.teams_webhook_env is None:
                    continue
                url = env.get(route.teams_webhook_env, "").strip()
                if not url:
                    raise ConfigError(f"{settings.config_path}: {kind}[{i}].contacts.{role}.teams_webhook_env: "
                                      f"environment variable {route.teams_webhook_env} is not set")
                contacts[role] = route.model_copy(update={"teams_webhook": url})
            out.append(org.model_copy(update={"contacts": contacts}))
        return tuple(out)

    file = fc.model_copy(update={"local_authorities": resolve("local_authorities", fc.local_authorities),
                                 "forces": resolve("forces", fc.forces)})
    return settings.model_copy(update={"file": file})
