"""Settings: environment variables plus `safeguard.toml` (DESIGN §3.2).

`load_settings()` returns one typed, frozen `Settings`. Any bad or missing key fails
at start with `ConfigError`, whose message names the file and the key, e.g.
``var/safeguard.toml: clients[1].role: Input should be 'referrer', ...``.
Values are never echoed back in errors (keys and contact routes are sensitive).
"""
from __future__ import annotations

import ipaddress
import json
import os
import tomllib
import warnings
from collections.abc import Mapping
from datetime import date, time
from functools import cache
from pathlib import Path
from urllib.parse import quote, urlsplit
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from shared.messages import CALLBACK_EVENTS
from shared.urls import amqp_nodes, https_or_loopback
from shared.worktime import WorkingCalendar, WorkingHours

Role = Literal["referrer", "social_care", "prevent", "control_room", "ops"]
SERVICES = ("intake", "escalation", "notifier")
DEFAULT_PORTS = {"intake": 8080, "escalation": 8081, "notifier": 8082}
DEFAULT_METRICS_PORTS = {"intake": 9080, "escalation": 9081, "notifier": 9082}
ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"  # an environment variable's name (the `*_env` keys)


def service_port(service: str, env: Mapping[str, str] | None = None) -> int:
    """The port a service listens on: SAFEGUARD_<SERVICE>_PORT or its default."""
    env = os.environ if env is None else env
    return int(env.get(f"SAFEGUARD_{service.upper()}_PORT", DEFAULT_PORTS[service]))


class ConfigError(Exception):
    """Bad configuration; the message names the file and the key."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SealingKey(_Model):
    key_id: str = Field(min_length=1, max_length=100)
    public_key: str = Field(min_length=40, max_length=60)  # base64 of 32 bytes
    status: Literal["active", "retired"] = "active"


class Route(_Model):
    """A recipient's channels. Route URLs and addresses are sensitive config."""

    email: str | None = None
    teams_webhook: str | None = None
    # The environment variable holding the webhook URL (from a Secret): the URL is a bearer
    # credential (anyone holding it can post to the channel). The notifier reads it at start.
    teams_webhook_env: str | None = Field(default=None, pattern=ENV_NAME)
    sms: str | None = None

    @field_validator("teams_webhook_env")
    @classmethod
    def _one_webhook_source(cls, value: str | None, info: Any) -> str | None:
        if value is not None and info.data.get("teams_webhook") is not None:
            raise ValueError("set teams_webhook or teams_webhook_env, not both")
        return value


class WorkingHoursConfig(_Model):
    start: time = time(9)
    end: time = time(17)
    weekdays: tuple[int, ...] = (0, 1, 2, 3, 4)
    closures: tuple[date, ...] = ()


class Organisation(_Model):
    name: str = Field(min_length=1)
    sealing_keys: tuple[SealingKey, ...] = Field(min_length=1)
    contacts: dict[str, Route] = Field(default_factory=dict)

    @property
    def active_keys(self) -> tuple[SealingKey, ...]:
        return tuple(k for k in self.sealing_keys if k.status == "active")


class LocalAuthority(Organisation):
    code: str = Field(pattern=r"^[EW]\d{8}$")
    working_hours: WorkingHoursConfig = WorkingHoursConfig()


class Force(Organisation):
    slug: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{1,62}$")


class Client(_Model):
    id: str = Field(pattern=r"^[A-Za-z0-9._-]{1,100}$")
    role: Role
    organisation: str | None = None
    verify_key: str = Field(min_length=40, max_length=60)


class ClaimMapping(_Model):
    """People in identity-provider group `group` sign in with `role` for `organisation`
    (an LA's ONS code or a force's slug; none for `ops`)."""
    group: str = Field(min_length=1, max_length=200)
    role: Role
    organisation: str | None = None


class IdentityProvider(_Model):
    """An OpenID Connect issuer staff sign in at (authorisation code + PKCE; DESIGN §3.7)."""
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")
    name: str = Field(min_length=1, max_length=100)  # shown on the sign-in button
    issuer: str = Field(pattern=r"^https?://")
    client_id: str = Field(min_length=1)
    client_secret_env: str | None = None  # environment variable holding the client secret
    # A literal secret only for a provider on this machine (the development one accepts any).
    client_secret: str | None = Field(default=None, max_length=200)
    groups_claim: str = "groups"  # Entra ID: "groups" (group object ids) or "roles" (app roles)
    scopes: tuple[str, ...] = ("openid", "profile", "email")
    claims: tuple[ClaimMapping, ...] = Field(min_length=1)

    @field_validator("client_secret")
    @classmethod
    def _literal_secret_only_on_loopback(cls, value: str | None, info: Any) -> str | None:
        host = urlsplit(str(info.data.get("issuer", ""))).hostname
        if value is not None and host not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError("a literal client_secret is for a provider on this machine only; "
                             "use client_secret_env (a Secret) for any other issuer")
        return value


class Subscription(_Model):
    """A status-callback subscriber (DESIGN §3.6): a case-management or police system that
    gets the chosen events of its organisation's referrals as Standard Webhooks requests."""
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,31}$")  # a metric label and the delivery key
    organisation: str  # an LA code or a force slug configured here
    url: str  # https; http only to this machine
    events: tuple[str, ...] = Field(min_length=1)
    secret_env: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")  # holds the whsec_… signing secret

    @field_validator("url")
    @classmethod
    def _https(cls, value: str) -> str:
        if not https_or_loopback(value):
            raise ValueError("must be https (http only to this machine: localhost, 127.0.0.0/8, ::1), "
                             "with no user:password part")
        return value

    @field_validator("events")
    @classmethod
    def _known_events(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [e for e in value if e not in CALLBACK_EVENTS]
        if unknown:
            raise ValueError(f"unknown event {unknown[0]!r}; one of: {', '.join(CALLBACK_EVENTS)}")
        return tuple(dict.fromkeys(value))


class ServiceKeys(_Model):
    verify_key: str = Field(min_length=40, max_length=60)
    signing_key_file: str | None = None
    sealing_key_file: str | None = None  # notifier only: opens the contact section
    sealing_public_key: str | None = None
    sealing_key_id: str | None = None
    # The Prometheus listener: a port of its own (default 9080 / 9081 / 9082; the environment's
    # SAFEGUARD_<SERVICE>_METRICS_PORT wins), never the public one, so an ingress or a proxy
    # in front of the public port cannot reach /metrics.
    metrics_port: int | None = Field(default=None, ge=1, le=65535)
    metrics_host: str = "127.0.0.1"  # an IP address; 0.0.0.0 in a container (a NetworkPolicy guards it)
    metrics_token_env: str | None = Field(default=None, pattern=ENV_NAME)  # then `Authorization: Bearer` required

    @field_validator("metrics_host")
    @classmethod
    def _ip_address(cls, value: str) -> str:
        try:
            ipaddress.ip_address(value)
        except ValueError:
            raise ValueError("must be an IP address (127.0.0.1 for this machine only, 0.0.0.0 for every "
                             "interface)") from None
        return value


class EscalationTimings(_Model):
    ack_reminder_fractions: tuple[float, ...] = (0.5,)
    ack_reminder_before_hours: float = 1.0
    ack_head_of_service_after_hours: float = 1.0
    checks_reminder_days: tuple[int, ...] = (21, 27)
    strategy_discussion_minutes: float = Field(default=60.0, gt=0, le=24 * 60)  # wall clock, in and out of hours
    alert_reescalate_minutes: float = 10.0
    alert_levels: tuple[str, ...] = ("control_room", "duty_inspector", "superintendent")


class DeliveryPacing(_Model):
    """Outbound pacing of the notifier (per process): starts per second on each channel."""
    email_per_s: float = Field(default=20.0, gt=0, le=1000)  # to the one SMTP relay, every audience
    teams_per_webhook_per_s: float = Field(default=4.0, gt=0, le=4)  # Microsoft's limit per webhook
    sms_per_s: float = Field(default=10.0, gt=0, le=50)  # per GOV.UK Notify key (3,000 a minute)
    defer_after_s: float = Field(default=2.0, ge=0, le=60)  # a routine send waiting longer is deferred


class SystemConfig(_Model):
    public_base_url: str = "http://127.0.0.1:8080"
    console_base_url: str = "http://127.0.0.1:8081"
    retention_days: int = Field(default=2555, ge=1)
    max_body_bytes: int = Field(default=256 * 1024, ge=1024)
    rate_limit_per_minute: int = Field(default=120, ge=1)
    # Before authentication, per client address (every replica its own): a flood of unsigned
    # requests is refused before any signature work.
    rate_limit_per_address_per_minute: int = Field(default=600, ge=1)
    small_number_threshold: int = Field(default=5, ge=0)
    # Reverse proxies (addresses or networks) whose X-Forwarded-Proto/-Host/-For are honoured.
    trusted_proxies: tuple[str, ...] = ()
    parking_ttl_days: int = Field(default=14, ge=1, le=3650)  # x-message-ttl of every <queue>.parked
    # An integrators' test environment: a 401 also gives the signature base intake computed.
    # Never in production (the base repeats the covered header fields back to the caller).
    sandbox: bool = False


class FileConfig(_Model):
    system: SystemConfig = SystemConfig()
    services: dict[Literal["intake", "escalation", "notifier"], ServiceKeys]
    local_authorities: tuple[LocalAuthority, ...] = Field(min_length=1)
    forces: tuple[Force, ...] = Field(min_length=1)
    clients: tuple[Client, ...] = ()
    escalation: EscalationTimings = EscalationTimings()
    delivery: DeliveryPacing = DeliveryPacing()
    identity_providers: tuple[IdentityProvider, ...] = ()
    subscriptions: tuple[Subscription, ...] = ()

    @field_validator("clients")
    @classmethod
    def _unique_clients(cls, clients: tuple[Client, ...]) -> tuple[Client, ...]:
        ids = [c.id for c in clients]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"duplicate client ids: {', '.join(dupes)}")
        return clients


class Settings(_Model):
    """Everything a service needs, from the environment and the TOML file."""

    config_path: Path
    data_dir: Path
    amqp_url: str  # the shared URL: operator tools, and every service without its own
    # A service's own broker user (SAFEGUARD_AMQP_URL_<SERVICE>; DESIGN §5): least privilege.
    amqp_urls: dict[str, str] = Field(default_factory=dict)
    database_url: str | None  # None: SQLite per service under data_dir
    smtp_url: str
    log_format: Literal["json", "console"]
    file: FileConfig

    def database_url_for(self, service: str) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{self.data_dir.resolve()}/{service}.db"

    def amqp_url_for(self, service: str) -> str:
        return self.amqp_urls.get(service, self.amqp_url)

    def own_broker_user(self, service: str) -> bool:
        """True when `service` connects as its own least-privilege user: it then declares only
        the queues it consumes (the rest is `safeguard bus declare`'s, run by an administrator)."""
        return service in self.amqp_urls

    def resolve_path(self, path: str) -> Path:
        """Paths in the TOML file are relative to the file's directory."""
        p = Path(path)
        return p if p.is_absolute() else self.config_path.parent / p

    def local_authority(self, code: str) -> LocalAuthority | None:
        return next((la for la in self.file.local_authorities if la.code == code), None)

    def force(self, slug: str) -> Force | None:
        return next((f for f in self.file.forces if f.slug == slug), None)

    def client(self, client_id: str) -> Client | None:
        return next((c for c in self.file.clients if c.id == client_id), None)

    def subscription(self, sub_id: str) -> Subscription | None:
        return next((s for s in self.file.subscriptions if s.id == sub_id), None)

    def calendar(self, la_code: str) -> WorkingCalendar:
        """The working-day calendar of local authority `la_code`: its `working_hours` (the
        default ones for an unknown code) and the bank holidays of England and Wales."""
        la = self.local_authority(la_code)
        wh = la.working_hours if la is not None else WorkingHoursConfig()
        return _calendar(WorkingHours(start=wh.start, end=wh.end, weekdays=frozenset(wh.weekdays),
                                      closures=frozenset(wh.closures)))


@cache
def _calendar(hours: WorkingHours) -> WorkingCalendar:
    """One calendar per distinct working hours, so each loads a year's bank holidays once."""
    return WorkingCalendar(hours)


def _format_errors(path: Path, err: ValidationError) -> str:
    lines = []
    for e in err.errors(include_input=False, include_url=False):
        loc = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in e["loc"]).lstrip(".")
        lines.append(f"{path}: {loc or '(top level)'}: {e['msg']}")
    return "\n".join(lines)


def _cross_check(path: Path, fc: FileConfig) -> None:
    orgs = {la.code for la in fc.local_authorities} | {f.slug for f in fc.forces}
    for i, c in enumerate(fc.clients):
        if c.role != "ops" and c.organisation not in orgs:
            raise ConfigError(f"{path}: clients[{i}].organisation: unknown organisation for client {c.id}")
    for i, idp in enumerate(fc.identity_providers):
        for j, m in enumerate(idp.claims):
            if (m.role == "ops") != (m.organisation is None) or (m.organisation and m.organisation not in orgs):
                raise ConfigError(f"{path}: identity_providers[{i}].claims[{j}].organisation: "
                                  "an organisation configured here for every role but ops (none for ops)")
    for i, sub in enumerate(fc.subscriptions):
        if sub.organisation not in orgs:
            raise ConfigError(f"{path}: subscriptions[{i}].organisation: unknown organisation for subscription "
                              f"{sub.id} (an LA code or force slug configured here)")
    if len({sub.id for sub in fc.subscriptions}) != len(fc.subscriptions):
        raise ConfigError(f"{path}: subscriptions: duplicate ids")
    if len({idp.id for idp in fc.identity_providers}) != len(fc.identity_providers):
        raise ConfigError(f"{path}: identity_providers: duplicate ids")
    missing = [s for s in SERVICES if s not in fc.services]
    if missing:
        raise ConfigError(f"{path}: services.{missing[0]}: missing section")


class ObsoleteConfigKey(UserWarning):
    """A key an earlier version read: ignored (its warning says why)."""


# (table, key) -> why it is ignored. An older set-up that still has one keeps working.
OBSOLETE_KEYS = {
    ("system", "parking_key"): "rejected AMQP submissions are now parked sealed to their recipient teams' keys "
                               "(DESIGN §5; docs/configuration.md#parked-messages); remove it",
}


def _drop_obsolete(path: Path, raw: dict[str, Any]) -> dict[str, Any]:
    """`raw` without the OBSOLETE_KEYS, with one warning for each found (naming the key, never its value)."""
    for (table, key), why in OBSOLETE_KEYS.items():
        section = raw.get(table)
        if isinstance(section, dict) and key in section:
            raw = {**raw, table: {k: v for k, v in section.items() if k != key}}
            warnings.warn(f"{path}: {table}.{key} is obsolete and ignored: {why}", ObsoleteConfigKey, stacklevel=3)
    return raw


def load_file_config(path: Path) -> FileConfig:
    try:
        raw = _drop_obsolete(path, tomllib.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found (set SAFEGUARD_CONFIG or run `safeguard keys init`)") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    try:
        fc = FileConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_errors(path, exc)) from None
    _cross_check(path, fc)
    return fc


def _dev_amqp_url(data_dir: Path) -> str:
    """The local broker as guest, on the data directory's dev vhost if `safeguard keys init`
    or `up --init` made one (DIR/broker.json), so every command finds what `up` runs on."""
    try:
        vhost = json.loads((data_dir / "broker.json").read_text(encoding="utf-8"))["vhost"]
    except (OSError, ValueError, KeyError, TypeError):
        vhost = ""
    return f"amqp://guest:guest@127.0.0.1:5672/{quote(vhost, safe='')}"


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if env is None else env
    data_dir = Path(env.get("SAFEGUARD_DATA_DIR", "./var"))
    config_path = Path(env.get("SAFEGUARD_CONFIG", str(data_dir / "safeguard.toml")))
    log_format = env.get("SAFEGUARD_LOG_FORMAT", "json")
    if log_format not in ("json", "console"):
        raise ConfigError("environment: SAFEGUARD_LOG_FORMAT: must be 'json' or 'console'")
    db_url = env.get("SAFEGUARD_DATABASE_URL") or None
    if db_url and not db_url.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
        raise ConfigError(
            "environment: SAFEGUARD_DATABASE_URL: must start with sqlite+aiosqlite:// or postgresql+asyncpg://"
        )
    amqp_url = env.get("SAFEGUARD_AMQP_URL") or _dev_amqp_url(data_dir)
    amqp_urls = {svc: url for svc in SERVICES if (url := env.get(f"SAFEGUARD_AMQP_URL_{svc.upper()}"))}
    try:  # each a comma-separated list of the cluster's nodes, tried in turn
        amqp_nodes(amqp_url)
        for svc, url in amqp_urls.items():
            amqp_nodes(url, f"SAFEGUARD_AMQP_URL_{svc.upper()}")
    except ValueError as exc:
        raise ConfigError(f"environment: {exc}") from None
    smtp_url = env.get("SAFEGUARD_SMTP_URL", "smtp://127.0.0.1:8025")
    if not smtp_url.startswith(("smtp://", "smtps://")):
        raise ConfigError("environment: SAFEGUARD_SMTP_URL: must start with smtp:// or smtps://")
    return Settings(
        config_path=config_path,
        data_dir=data_dir,
        amqp_url=amqp_url,
        amqp_urls=amqp_urls,
        database_url=db_url,
        smtp_url=smtp_url,
        log_format=log_format,  # type: ignore[arg-type]
        file=load_file_config(config_path),
    )
