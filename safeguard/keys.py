"""`safeguard keys init`: a working development set-up (DESIGN §3.1), and the look-ups of
an organisation and its key files that `keys rotate` (rotation.py) and `keys rewrap`
(rewrap.py) share.

Writes `DIR/safeguard.toml` and one private key file per client, organisation and
service under `DIR/keys/` (base64 of the 32-byte seed/key, one line, mode 0600). Never
overwrites an existing set-up unless asked to; an older dev set-up gains what it lacks
(the dev sign-in). A rejected submission is parked sealed to its recipient teams' keys
(`keys/E99999999.x25519`, `keys/dev-force.x25519`), so there is no parking key: one an
older set-up still names is ignored with a warning (shared/config.py OBSOLETE_KEYS).
"""
from __future__ import annotations

from pathlib import Path

from safeguard import devidp
from shared.config import FileConfig, LocalAuthority, Organisation
from shared.crypto import b64e, generate_sealing_key, generate_signing_key, write_private_key

DEV_LA = ("E99999999", "Dev Borough")
DEV_FORCE = ("dev-force", "Dev Force")
DEV_CLIENTS = (
    ("dev-mash", "referrer", "dev-force"),
    ("dev-social-care", "social_care", "E99999999"),
    ("dev-prevent", "prevent", "dev-force"),
    ("dev-control-room", "control_room", "dev-force"),
    ("dev-ops", "ops", None),
)
SERVICES = ("intake", "escalation", "notifier")
TEAMS_SINK = "http://127.0.0.1:8026"  # `safeguard sink` stands in for Teams webhooks (SMTP on 8025)


def _signing(keys: Path, name: str) -> str:
    key = generate_signing_key()
    write_private_key(keys / f"{name}.ed25519", bytes(key))
    return b64e(bytes(key.verify_key))


def _sealing(keys: Path, name: str) -> str:
    key = generate_sealing_key()
    write_private_key(keys / f"{name}.x25519", bytes(key))
    return b64e(bytes(key.public_key))


def _route(local_part: str, domain: str) -> str:
    return (
        f'{{ email = "{local_part}@{domain}", '
        f'teams_webhook = "{TEAMS_SINK}/teams/{local_part}.{domain.split(".")[0]}" }}'
    )


def render_config(keys: Path) -> str:
    la_code, la_name = DEV_LA
    force, force_name = DEV_FORCE
    la_pub, force_pub = _sealing(keys, la_code), _sealing(keys, force)
    notifier_pub = _sealing(keys, "notifier")
    out = [
        "# Safeguard Relay development configuration, written by `safeguard keys init`.",
        "# Paths are relative to this file. Private keys live in keys/ (mode 0600).",
        "",
        "[system]",
        'public_base_url = "http://127.0.0.1:8080"',
        'console_base_url = "http://127.0.0.1:8081"',
        "",
    ]
    for svc in SERVICES:
        out += [f"[services.{svc}]", f'verify_key = "{_signing(keys, "service-" + svc)}"',
                f'signing_key_file = "keys/service-{svc}.ed25519"']
        if svc == "notifier":
            out += ['sealing_key_file = "keys/notifier.x25519"', f'sealing_public_key = "{notifier_pub}"',
                    'sealing_key_id = "notifier-1"']
        out.append("")
    la_domain = "dev-borough.example"
    out += [
        "[[local_authorities]]", f'code = "{la_code}"', f'name = "{la_name}"',
        f'sealing_keys = [{{ key_id = "{la_code}-1", public_key = "{la_pub}" }}]',
        "[local_authorities.working_hours]", 'start = "09:00:00"', 'end = "17:00:00"',
        "[local_authorities.contacts]",
        *(f"{role} = {_route(role.replace('_', '-'), la_domain)}"
          for role in ("mash_team", "duty_manager", "team_manager", "head_of_service", "emergency_duty_team",
                       "health_safeguarding", "nspcc")),
        "",
    ]
    force_domain = "dev-force.example"
    out += [
        "[[forces]]", f'slug = "{force}"', f'name = "{force_name}"',
        f'sealing_keys = [{{ key_id = "{force}-1", public_key = "{force_pub}" }}]',
        "[forces.contacts]",
        *(f"{role} = {_route(role.replace('_', '-'), force_domain)}"
          for role in ("police_mash", "ctp_prevent", "ctp_prevent_lead", "ctp_prevent_out_of_hours", "control_room",
                       "duty_inspector")),
        "",
    ]
    for client_id, role, org in DEV_CLIENTS:
        out += ["[[clients]]", f'id = "{client_id}"', f'role = "{role}"']
        if org:
            out.append(f'organisation = "{org}"')
        out += [f'verify_key = "{_signing(keys, client_id)}"', ""]
    out += ["# People sign in to the pages at the development identity provider `make run` starts.",
            *devidp.config_lines(), ""]
    return "\n".join(out)


def init(directory: Path, force: bool = False) -> Path:
    """Create the dev set-up in `directory`; return the config path."""
    config = directory / "safeguard.toml"
    if config.exists() and not force:
        _add_dev_sign_in(config)
        config.chmod(0o600)
        return config
    keys = directory / "keys"
    keys.mkdir(parents=True, exist_ok=True, mode=0o700)
    text = render_config(keys)
    config.touch(mode=0o600)  # it names every key file: readable by this user only
    config.chmod(0o600)
    config.write_text(text + "\n", encoding="utf-8")
    return config


def _add_dev_sign_in(config: Path) -> None:
    """A dev set-up written before people could sign in gets the dev identity provider."""
    text = config.read_text(encoding="utf-8")
    if text.startswith("# Safeguard Relay development configuration") and "[[identity_providers]]" not in text:
        config.write_text(text.rstrip("\n") + "\n\n" + "\n".join(devidp.config_lines()) + "\n", encoding="utf-8")


def find_org(fc: FileConfig, code: str) -> Organisation | None:
    """The local authority with ONS code `code` or the force with slug `code`."""
    la: LocalAuthority | None = next((la for la in fc.local_authorities if la.code == code), None)
    return la or next((f for f in fc.forces if f.slug == code), None)


def key_file(config_path: Path, org: str, key_id: str) -> Path:
    """Where a team's private key lives: `keys/<key_id>.x25519` (`keys/<org>.x25519` from `keys init`)."""
    keys = config_path.parent / "keys"
    own = keys / f"{key_id}.x25519"
    return own if own.exists() or key_id != f"{org}-1" else keys / f"{org}.x25519"
