"""Issue 18 #16 (Kubernetes half): a Teams webhook URL is a bearer credential, so a route can
name the environment variable holding it (`teams_webhook_env`, filled from a Secret) instead
of carrying it in safeguard.toml (a ConfigMap). The notifier reads it at start; unset, the
start fails naming the key, never the value."""
from __future__ import annotations

import re

import pytest

from safeguard import keys
from services.notifier.bootstrap import create_app
from shared.config import ConfigError, load_settings
from shared.config_env import with_teams_webhooks

URL = "https://example.webhook.office.com/webhookb2/canary-7f3e/IncomingWebhook/abc/def"


@pytest.fixture
def config(tmp_path):
    path = keys.init(tmp_path)
    text = path.read_text()
    text = re.sub(r'mash_team = \{ email = "([^"]+)", teams_webhook = "[^"]+" \}',
                  r'mash_team = { email = "\1", teams_webhook_env = "SAFEGUARD_TEAMS_MASH_TEAM" }', text)
    text = re.sub(r'control_room = \{ email = "([^"]+)", teams_webhook = "[^"]+" \}',
                  r'control_room = { email = "\1", teams_webhook_env = "SAFEGUARD_TEAMS_CONTROL_ROOM" }', text)
    path.write_text(text)
    return path


def env_for(path, **extra):
    return {"SAFEGUARD_CONFIG": str(path), "SAFEGUARD_DATA_DIR": str(path.parent), **extra}


def test_the_notifier_reads_each_webhook_from_the_variable_its_route_names(config):
    env = env_for(config, SAFEGUARD_TEAMS_MASH_TEAM=URL, SAFEGUARD_TEAMS_CONTROL_ROOM=URL + "/2")
    settings = load_settings(env)
    assert settings.local_authority("E99999999").contacts["mash_team"].teams_webhook is None  # not read by all
    resolved = with_teams_webhooks(settings, env)
    assert resolved.local_authority("E99999999").contacts["mash_team"].teams_webhook == URL
    assert resolved.force("dev-force").contacts["control_room"].teams_webhook == URL + "/2"
    # other routes keep their literal webhook (the dev sink) and their addresses
    assert resolved.local_authority("E99999999").contacts["duty_manager"].teams_webhook.startswith("http://127.0.0.1")
    assert resolved.local_authority("E99999999").contacts["mash_team"].email == "mash-team@dev-borough.example"


def test_an_unset_webhook_variable_stops_the_notifier_naming_the_key(config, monkeypatch):
    env = env_for(config, SAFEGUARD_TEAMS_CONTROL_ROOM=URL)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("SAFEGUARD_TEAMS_MASH_TEAM", raising=False)
    with pytest.raises(ConfigError) as err:
        create_app(load_settings(env))
    assert str(err.value) == (f"{config}: local_authorities[0].contacts.mash_team.teams_webhook_env: "
                              "environment variable SAFEGUARD_TEAMS_MASH_TEAM is not set")
    assert "canary-7f3e" not in str(err.value)


def test_intake_and_escalation_load_without_the_notifiers_secrets(config):
    load_settings(env_for(config))  # the variables live only in the notifier's pod


@pytest.mark.parametrize(("route", "message"), [
    ('{ teams_webhook = "https://x.example/h", teams_webhook_env = "T" }', "set teams_webhook or teams_webhook_env"),
    ('{ teams_webhook_env = "not a name" }', "String should match pattern"),
])
def test_a_bad_webhook_key_fails_loading_naming_it(config, route, message):
    config.write_text(re.sub(r"duty_manager = \{[^}]*\}", f"duty_manager = {route}", config.read_text()))
    with pytest.raises(ConfigError, match=r"local_authorities\[0\]\.contacts\.duty_manager\.teams_webhook_env: .*"
                                          + message):
        load_settings(env_for(config))
