"""/openapi.json is OpenAPI 3.1, its schemas are valid JSON Schema, every $ref
resolves, and it lists every route the app serves."""
from __future__ import annotations

from datetime import UTC, datetime

from jsonschema import Draft202012Validator

from tests.factories import referral
from tests.support.documents import refs


async def test_openapi_document_is_valid_and_complete(intake):
    resp = await intake.client.get("/openapi.json")
    assert resp.status == 200
    doc = await resp.json()
    assert doc["openapi"].startswith("3.1") and doc["info"]["title"] and doc["info"]["version"]
    schemas = doc["components"]["schemas"]
    for name, schema in schemas.items():
        Draft202012Validator.check_schema(schema)
    for ref in refs(doc):
        assert ref.startswith("#/components/schemas/") and ref.rsplit("/", 1)[1] in schemas, ref
    assert schemas["Referral"]["additionalProperties"] is False
    for path, item in doc["paths"].items():
        for method, op in item.items():
            assert op["responses"], (path, method)
            params = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert params == set(seg[1:-1] for seg in path.split("/") if seg.startswith("{")), path
    served = {(r.resource.canonical, r.method.lower()) for r in intake.app.router.routes()
              if r.method != "HEAD"}
    listed = {(p, m) for p, item in doc["paths"].items() for m in item}
    assert served == listed


def _check(doc: dict, name: str, value) -> None:
    Draft202012Validator({"$ref": f"#/components/schemas/{name}", "components": doc["components"]}).validate(value)


async def test_every_reply_matches_its_schema(intake):
    """The reply schemas are full (not `object`): real replies of every operation validate, and
    each operation's 200/201/202 names its schema."""
    doc = await (await intake.client.get("/openapi.json")).json()
    for path, item in doc["paths"].items():
        for method, op in item.items():
            ok = next((r for s, r in op["responses"].items() if s in ("200", "201", "202")), None)
            if path.startswith("/v1/referrals") and ok is not None:
                assert "$ref" in ok["content"]["application/json"]["schema"], (method, path)
    accepted = await (await intake.submit(referral(immediate_risk=True))).json()
    _check(doc, "Accepted", accepted)
    ref = accepted["reference"]
    steps = [("acknowledgement", "dev-social-care", None, "AcknowledgementReply"),
             ("decision", "dev-social-care", {"pathway": "section_47", "rationale": "r"}, "DecisionReply"),
             ("strategy-discussion", "dev-social-care", {
                 "held_at": datetime.now(UTC).isoformat(), "agencies": ["police", "ctp_prevent"],
                 "legal_advice_sought": False, "decision": "section_47_enquiry", "parents_informed": True},
              "StrategyReply"),
             ("concerns", "dev-social-care", {"category": "welfare"}, "ConcernRaised"),
             ("checks", "dev-prevent", {"outcome": "not_suitable"}, "ChecksReply"),
             ("feedback", "dev-prevent", None, "FeedbackReply"),
             ("close", "dev-prevent", None, "CloseReply"), ("close", "dev-social-care", None, "CloseReply")]
    for action, client_id, body, schema in steps:
        resp = await intake.call("POST", f"/v1/referrals/{ref}/{action}", client_id, body)
        assert resp.status in (200, 201), (action, await resp.text())
        _check(doc, schema, await resp.json())
    for client_id in ("dev-social-care", "dev-prevent", "dev-mash"):
        _check(doc, "ReferralStatus", await (await intake.call("GET", f"/v1/referrals/{ref}", client_id)).json())
    _check(doc, "Sealed", await (await intake.call("GET", f"/v1/referrals/{ref}/sealed", "dev-prevent")).json())
    listed = await (await intake.call("GET", "/v1/referrals", "dev-social-care", query="limit=1")).json()
    _check(doc, "ReferralList", listed)
    problem = await (await intake.call("GET", "/v1/referrals", "dev-mash")).json()
    _check(doc, "Problem", problem)
