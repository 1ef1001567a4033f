"""Issue 18 #14: `/metrics` was public on intake and escalation (and the example ingress routed
`/`). Now each service serves it on a listener of its own (`[services.<name>] metrics_port`,
`metrics_host`, optionally `metrics_token_env`); the public port answers 404.
The ingress half is tests/deploy/test_k8s.py."""
from __future__ import annotations

import aiohttp
import pytest

from safeguard import keys
from shared.config import ConfigError, load_settings
from shared.config_env import metrics_listener
from tests.support.metrics import metrics_page
from tests.support.processes import ServiceProcess, free_port, port_env

TOKEN = "metrics-token-" + "x" * 24


def with_service_lines(config, service: str, *lines: str) -> None:
    text = config.read_text()
    config.write_text(text.replace(f"[services.{service}]\n", f"[services.{service}]\n" + "".join(
        f"{line}\n" for line in lines), 1))


@pytest.mark.slow
async def test_a_running_service_serves_metrics_only_on_its_metrics_port(tmp_path, amqp_url, reliability):
    config = keys.init(tmp_path)
    with_service_lines(config, "intake", 'metrics_token_env = "SAFEGUARD_METRICS_TOKEN"')
    intake = ServiceProcess.serve("intake", {"SAFEGUARD_CONFIG": str(config), "SAFEGUARD_DATA_DIR": str(tmp_path),
                                             "SAFEGUARD_AMQP_URL": amqp_url, "SAFEGUARD_METRICS_TOKEN": TOKEN},
                                  logs=tmp_path)
    await intake.start()
    try:
        await intake.ready(timeout=90)
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{intake.url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}) as resp:
                public = resp.status
                assert resp.content_type == "application/problem+json"
            async with http.get(intake.metrics_url) as resp:
                assert resp.status == 401 and resp.headers["WWW-Authenticate"].startswith("Bearer")
            async with http.get(intake.metrics_url, headers={"Authorization": "Bearer wrong"}) as resp:
                assert resp.status == 401
            async with http.get(intake.metrics_url, headers={"Authorization": f"Bearer {TOKEN}"}) as resp:
                assert resp.status == 200 and resp.content_type == "text/plain"
                text = await resp.text()
            async with http.get(intake.metrics_url.replace("/metrics", "/healthz")) as resp:
                assert resp.status == 404  # the metrics listener serves /metrics and nothing else
        assert public == 404
        assert "# TYPE safeguard_messages_published_total counter" in text
    finally:
        assert await intake.stop() == 0, intake.output_tail()
    assert TOKEN not in intake.output()
    reliability.row("attacks", finding="#14", attack="GET /metrics on intake's and escalation's public port "
                    "(and through the example ingress, which routed `/`)",
                    before="200, the Prometheus page to anyone who reached the public port",
                    after=f"{public} on the public port; the page only on the metrics port "
                          f"(`metrics_port`, loopback by default), 401 there without the bearer token when "
                          "`metrics_token_env` is set; the ingress example routes only the public paths")


async def test_the_metrics_app_without_a_token_gives_the_prometheus_text():
    text = await metrics_page()
    assert "# TYPE safeguard_outbox_published_total counter" in text


def settings_for(tmp_path, **env: str):
    config = keys.init(tmp_path)
    return config, {"SAFEGUARD_CONFIG": str(config), "SAFEGUARD_DATA_DIR": str(tmp_path), **env}


def test_metrics_listener_defaults_and_overrides(tmp_path):
    config, env = settings_for(tmp_path)
    settings = load_settings(env)
    assert (lambda m: (m.host, m.port, m.token))(metrics_listener(settings, "intake", env)) == ("127.0.0.1", 9080, None)
    assert metrics_listener(settings, "notifier", env).url == "http://127.0.0.1:9082/metrics"
    with_service_lines(config, "escalation", 'metrics_port = 9181', 'metrics_host = "0.0.0.0"')
    settings = load_settings(env)
    esc = metrics_listener(settings, "escalation", env)
    assert (esc.host, esc.port, esc.loopback_only, esc.url) == ("0.0.0.0", 9181, False, "http://127.0.0.1:9181/metrics")
    port = free_port()
    assert metrics_listener(settings, "escalation", {**env, **port_env("escalation", 8081, port)}).port == port


@pytest.mark.parametrize(("lines", "env", "message"), [
    (('metrics_port = 8080',), {}, "services.intake.metrics_port: 8080 is the public port too"),
    (('metrics_token_env = "NOPE_TOKEN"',), {}, "services.intake.metrics_token_env: environment variable "
                                                "NOPE_TOKEN is not set or shorter than 16 characters"),
    (('metrics_token_env = "SHORT_TOKEN"',), {"SHORT_TOKEN": "abc"}, "services.intake.metrics_token_env"),
    ((), {"SAFEGUARD_INTAKE_METRICS_PORT": "http"}, "environment: SAFEGUARD_INTAKE_METRICS_PORT: must be a port"),
])
def test_a_bad_metrics_listener_is_refused_naming_the_key(tmp_path, lines, env, message):
    config, base = settings_for(tmp_path, **env)
    with_service_lines(config, "intake", *lines)
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        metrics_listener(load_settings(base), "intake", base)


@pytest.mark.parametrize(("line", "message"), [
    ('metrics_host = "metrics.example"', "services.intake.metrics_host: Value error, must be an IP address"),
    ('metrics_port = 70000', "services.intake.metrics_port: Input should be less than or equal to 65535"),
    ('metrics_token_env = "not a name"', "services.intake.metrics_token_env: String should match pattern"),
])
def test_a_bad_metrics_key_fails_loading_naming_it(tmp_path, line, message):
    config, env = settings_for(tmp_path)
    with_service_lines(config, "intake", line)
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        load_settings(env)
