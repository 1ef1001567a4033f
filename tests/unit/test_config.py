"""Config: the dev set-up loads; bad config fails naming the file and the key."""
from __future__ import annotations

import stat

import pytest

from safeguard import keys
from shared.config import ConfigError, load_settings


@pytest.fixture
def dev_config(tmp_path):
    return keys.init(tmp_path)


def env_for(path, **extra):
    return {"SAFEGUARD_CONFIG": str(path), "SAFEGUARD_DATA_DIR": str(path.parent), **extra}


def test_keys_init_writes_a_loadable_dev_setup(dev_config):
    settings = load_settings(env_for(dev_config))
    assert settings.local_authority("E99999999").name == "Dev Borough"
    assert settings.force("dev-force") is not None
    roles = {c.id: (c.role, c.organisation) for c in settings.file.clients}
    assert roles == {
        "dev-mash": ("referrer", "dev-force"),
        "dev-social-care": ("social_care", "E99999999"),
        "dev-prevent": ("prevent", "dev-force"),
        "dev-control-room": ("control_room", "dev-force"),
        "dev-ops": ("ops", None),
    }
    assert settings.database_url_for("intake").endswith("/intake.db")


def test_private_key_files_are_0600_one_line_base64(dev_config):
    key_files = sorted((dev_config.parent / "keys").iterdir())
    names = {p.name for p in key_files}
    assert {"dev-mash.ed25519", "E99999999.x25519", "dev-force.x25519", "service-intake.ed25519"} <= names
    for p in key_files:
        assert stat.S_IMODE(p.stat().st_mode) == 0o600, p
        lines = p.read_text().splitlines()
        assert len(lines) == 1 and len(lines[0]) == 44  # base64 of 32 bytes


def test_keys_init_keeps_an_existing_setup(dev_config):
    before = dev_config.read_text()
    keys.init(dev_config.parent)
    assert dev_config.read_text() == before


def test_bad_key_is_named_with_the_file(dev_config):
    text = dev_config.read_text().replace('role = "prevent"', 'role = "janitor"')
    dev_config.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_settings(env_for(dev_config))
    message = str(err.value)
    assert str(dev_config) in message
    assert "clients[2].role" in message


def test_missing_key_is_named(dev_config):
    text = dev_config.read_text().replace('name = "Dev Borough"\n', "")
    dev_config.write_text(text)
    with pytest.raises(ConfigError, match=r"local_authorities\[0\]\.name: Field required"):
        load_settings(env_for(dev_config))


def test_unknown_key_is_refused(dev_config):
    dev_config.write_text(dev_config.read_text().replace("[system]\n", "[system]\nretention_dayz = 3\n"))
    with pytest.raises(ConfigError, match=r"system\.retention_dayz: Extra inputs are not permitted"):
        load_settings(env_for(dev_config))


def test_client_of_unknown_organisation_is_refused(dev_config):
    dev_config.write_text(dev_config.read_text().replace('organisation = "E99999999"', 'organisation = "E12345678"'))
    with pytest.raises(ConfigError, match=r"clients\[1\]\.organisation"):
        load_settings(env_for(dev_config))


def test_error_never_echoes_a_value(dev_config):
    secret = "sk-not-a-key-CANARY-0xdeadbeef-but-long-enough-to-pass"
    dev_config.write_text(dev_config.read_text().replace('role = "prevent"', f'role = "{secret}"'))
    with pytest.raises(ConfigError) as err:
        load_settings(env_for(dev_config))
    assert "CANARY" not in str(err.value)


def test_missing_file_and_bad_toml(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        load_settings(env_for(tmp_path / "nope.toml"))
    bad = tmp_path / "bad.toml"
    bad.write_text("[system\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(env_for(bad))


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("SAFEGUARD_LOG_FORMAT", "xml"),
        ("SAFEGUARD_DATABASE_URL", "mysql://x"),
        ("SAFEGUARD_AMQP_URL", "http://x"),
        ("SAFEGUARD_SMTP_URL", "ftp://x"),
    ],
)
def test_bad_environment_variable_is_named(dev_config, var, value):
    with pytest.raises(ConfigError, match=f"environment: {var}"):
        load_settings(env_for(dev_config, **{var: value}))


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("amqp://u:canary-pw@a:5672/v,", r"entry 2 of 2: empty"),
        ("amqp://u:canary-pw@a:5672/v, http://u:canary-pw@b/v", r"entry 2 of 2: must start with amqp://"),
        ("amqp://u:canary-pw@a:99999/v", r"entry 1 of 1: not a valid port"),
        ("amqp://u:canary-pw@:5672/v", r"entry 1 of 1: no host"),
        ("amqp://u:canary-pw@a/v,amqps://u:canary-pw@b:5671/w", r"entry 2 of 2 \(b:5671\): names another vhost"),
    ],
)
def test_a_bad_node_in_the_amqp_list_is_named_without_its_credentials(dev_config, value, why):
    with pytest.raises(ConfigError, match=f"environment: SAFEGUARD_AMQP_URL: {why}") as info:
        load_settings(env_for(dev_config, SAFEGUARD_AMQP_URL=value))
    assert "canary-pw" not in str(info.value) and "u:" not in str(info.value)


def test_the_amqp_url_takes_a_list_of_nodes(dev_config):
    value = "amqp://u:p@rabbit-0.rabbit:5672/%2F, amqp://u:p@rabbit-1.rabbit/, amqps://u:p@[::1]:5671"
    assert load_settings(env_for(dev_config, SAFEGUARD_AMQP_URL=value)).amqp_url == value
    from shared.urls import amqp_nodes, node_label

    assert [node_label(n) for n in amqp_nodes(value)] == ["rabbit-0.rabbit:5672", "rabbit-1.rabbit:5672", "[::1]:5671"]


def test_delivery_pacing_defaults_and_overrides(dev_config):
    assert load_settings(env_for(dev_config)).file.delivery.teams_per_webhook_per_s == 4.0
    dev_config.write_text(dev_config.read_text() + "\n[delivery]\nemail_per_s = 50\ndefer_after_s = 0.5\n")
    pace = load_settings(env_for(dev_config)).file.delivery
    assert (pace.email_per_s, pace.defer_after_s, pace.sms_per_s) == (50.0, 0.5, 10.0)


@pytest.mark.parametrize("line, key", [("teams_per_webhook_per_s = 10", "delivery.teams_per_webhook_per_s"),
                                       ("email_per_s = 0", "delivery.email_per_s")])
def test_delivery_pacing_out_of_range_is_named(dev_config, line, key):
    dev_config.write_text(dev_config.read_text() + f"\n[delivery]\n{line}\n")
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_settings(env_for(dev_config))


def test_the_notifier_paces_its_channels_as_configured(dev_config):
    from types import SimpleNamespace

    from services.notifier.bootstrap import build_notifier
    from services.notifier.domain.retry import RetryPolicy

    dev_config.write_text(dev_config.read_text() + "\n[delivery]\nemail_per_s = 50\nteams_per_webhook_per_s = 2\n"
                                                   "defer_after_s = 0.5\n")
    runtime = SimpleNamespace(engine=None, relay=SimpleNamespace(notify=lambda: None))
    notifier = build_notifier(load_settings(env_for(dev_config)), runtime, RetryPolicy())
    assert notifier.channels["email"].limiter.interval == pytest.approx(1 / 50)
    assert notifier.channels["teams"].limiter.interval == pytest.approx(1 / 2)
    assert notifier.defer_after_s == 0.5


def test_the_dev_setup_signs_people_in_at_the_development_provider(dev_config):
    from safeguard import devidp
    idp = load_settings(env_for(dev_config)).file.identity_providers
    assert [(p.id, p.issuer, p.client_id) for p in idp] == [("dev", devidp.issuer(), devidp.DEV_CLIENT_ID)]
    mapped = {(m.group, m.role, m.organisation) for m in idp[0].claims}
    assert mapped == {(p.group, p.role, p.organisation) for p in devidp.DEV_PEOPLE}


def test_an_older_dev_setup_gains_the_development_provider_once(dev_config):
    text = dev_config.read_text()
    dev_config.write_text(text[:text.index("# People sign in")])
    keys.init(dev_config.parent)
    keys.init(dev_config.parent)
    assert dev_config.read_text().count("[[identity_providers]]") == 1
    assert load_settings(env_for(dev_config)).file.identity_providers[0].id == "dev"


@pytest.mark.parametrize("old, new, key", [
    ('group = "sg-ops"\nrole = "ops"\n', 'group = "sg-ops"\nrole = "ops"\norganisation = "E99999999"\n', r"identity_providers\[0\]\.claims\[4\]\.organisation"),
    ('group = "sg-prevent-dev-force"\nrole = "prevent"\norganisation = "dev-force"',
     'group = "sg-prevent-dev-force"\nrole = "prevent"\norganisation = "nowhere"',
     r"identity_providers\[0\]\.claims\[2\]\.organisation"),
    ('issuer = "http://127.0.0.1:9400"', 'issuer = "https://login.example.com"',
     r"identity_providers\[0\]\.client_secret: .*client_secret_env"),
    ('group = "sg-social-care-E99999999"\nrole = "social_care"', 'group = "sg-social-care-E99999999"\nrole = "superuser"',
     r"identity_providers\[0\]\.claims\[0\]\.role"),
])
def test_bad_identity_provider_config_is_named(dev_config, old, new, key):
    text = dev_config.read_text()
    assert old in text
    dev_config.write_text(text.replace(old, new, 1))
    with pytest.raises(ConfigError, match=key):
        load_settings(env_for(dev_config))



def test_the_dev_config_is_readable_by_its_user_only(dev_config):
    assert stat.S_IMODE(dev_config.stat().st_mode) == 0o600  # issue 18 #16: it was 0644


OLD_PARKING_KEY = ("[system.parking_key]\n" 'key_id = "parking-1"\n'
                   'public_key = "xIe5RUt0EBL+8Y+P5ZzXx5tTgnJ6bCVl0+fKh4n2jXk="\n\n')


def test_the_dev_setup_has_no_parking_key(dev_config):
    """Parked submissions are sealed to their recipient teams (DESIGN §5): no ops-held parking key."""
    assert "parking_key" not in dev_config.read_text()
    assert not (dev_config.parent / "keys" / "parking.x25519").exists()
    system = load_settings(env_for(dev_config)).file.system
    assert system.parking_ttl_days == 14 and not hasattr(system, "parking_key")


@pytest.mark.parametrize("old", [
    OLD_PARKING_KEY,  # as an earlier `safeguard keys init` wrote it
    "parking_key = { key_id = \"p-1\", public_key = \"short\" }\n",  # even a malformed one
])
def test_an_older_setup_with_a_parking_key_still_loads_with_one_warning(dev_config, old):
    from shared.config import ObsoleteConfigKey

    text = dev_config.read_text()
    at = text.index("[services.intake]") if old.startswith("[") else text.index("[system]\n") + len("[system]\n")
    dev_config.write_text(text[:at] + old + text[at:])
    with pytest.warns(ObsoleteConfigKey) as caught:
        settings = load_settings(env_for(dev_config))
    assert [str(w.message) for w in caught] == [
        f"{dev_config}: system.parking_key is obsolete and ignored: rejected AMQP submissions are now parked "
        "sealed to their recipient teams' keys (DESIGN §5; docs/configuration.md#parked-messages); remove it"]
    assert "short" not in str(caught[0].message) and "parking-1" not in str(caught[0].message)  # never its value
    assert settings.local_authority("E99999999") is not None and not hasattr(settings.file.system, "parking_key")
    keys.init(dev_config.parent)  # keys init leaves an older set-up's file loadable, adds no parking key
    assert not (dev_config.parent / "keys" / "parking.x25519").exists()


def test_bad_parking_config_is_named(tmp_path):
    config = keys.init(tmp_path)
    config.write_text(config.read_text().replace("[system]\n", "[system]\nparking_ttl_days = 0\n", 1))
    with pytest.raises(ConfigError, match=r"system\.parking_ttl_days"):
        load_settings(env_for(config))
