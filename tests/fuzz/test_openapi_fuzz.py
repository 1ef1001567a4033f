"""schemathesis against intake's own /openapi.json on the real app (RabbitMQ vhost +
PostgreSQL database): every operation, positive and negative data, signed requests.
No 5xx, every response conforms to the document (status, content type, schema,
headers), every error is an RFC 9457 problem document. Derandomized: the same cases
every run. A last run against a doctored document proves the checks do fail."""
from __future__ import annotations

import asyncio
import copy
import time

from tests.factories import referral
from tests.fuzz.openapi_driver import fuzz_all

MAX_EXAMPLES = 15  # per operation and generation mode (positive, negative): ~30 cases per endpoint


async def test_every_intake_endpoint_survives_schemathesis(fuzz_intake, reliability):
    resp = await fuzz_intake.submit(referral())
    assert resp.status == 202
    reference = (await resp.json())["reference"]
    document = await (await fuzz_intake.client.get("/openapi.json")).json()
    base_url = str(fuzz_intake.client.make_url("")).rstrip("/")
    started = time.monotonic()
    results = await asyncio.to_thread(fuzz_all, document, base_url, fuzz_intake.key,
                                      max_examples=MAX_EXAMPLES, real_reference=reference)
    elapsed = time.monotonic() - started

    operations = {(r.method, r.path) for r in results}
    listed = {(m.upper(), p) for p, item in document["paths"].items() for m in item}
    assert operations == listed
    for r in results:
        statuses = ", ".join(f"{k}: {v}" for k, v in sorted(r.statuses.items(), key=str))
        reliability.row("fuzz", target=f"{r.method} {r.path}", tool="schemathesis", cases=r.cases,
                        outcomes=statuses, failures=len(r.failures))
        print(f"{r.method} {r.path}: {r.cases} cases in {r.seconds:.1f} s ({statuses}); {len(r.failures)} failures")
    print(f"schemathesis: {sum(r.cases for r in results)} cases in {elapsed:.1f} s")
    assert all(r.cases >= (MAX_EXAMPLES if r.path.startswith("/v1/") else 1) for r in results)
    assert not any(500 <= s < 600 for r in results for s in r.statuses if isinstance(s, int))
    failures = [f for r in results for f in r.failures]
    assert not failures, "\n".join(failures[:20])

    # Found by this fuzzer, each a 500 before: a reference longer than the audit column; a date
    # whose range arithmetic overflows.
    resp = await fuzz_intake.call("GET", "/v1/referrals/PRV-2026-" + "9" * 40, "dev-social-care")
    assert (resp.status, resp.content_type) == (404, "application/problem+json")
    for path, query in (("/v1/report", "to=0001-01-05"), ("/v1/stats", "to=0001-01-05"),
                        ("/v1/stats", "to=9999-12-31")):
        resp = await fuzz_intake.call("GET", path, "dev-ops", query=query)
        assert (resp.status, resp.content_type) == (422, "application/problem+json"), (path, query)
    await _oracle_catches_an_undocumented_status(document, base_url, fuzz_intake.key)


async def _oracle_catches_an_undocumented_status(document: dict, base_url: str, keys) -> None:
    """The same driver against a copy of the document that no longer lists 403 and 404: reported.
    (An absent reference is a 403, as another organisation's; a malformed one a 404.)"""
    item = copy.deepcopy(document["paths"]["/v1/referrals/{reference}"])
    del item["get"]["responses"]["403"], item["get"]["responses"]["404"]
    [result] = await asyncio.to_thread(fuzz_all, {**document, "paths": {"/v1/referrals/{reference}": item}},
                                       base_url, keys, max_examples=3, real_reference=None)
    assert result.statuses[403] + result.statuses[404] == result.cases > 0
    assert len(result.failures) == result.cases and all(("403" in f or "404" in f) for f in result.failures)
