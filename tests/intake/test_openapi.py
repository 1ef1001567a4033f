"""/openapi.json is OpenAPI 3.1, its schemas are valid JSON Schema, every $ref
resolves, and it lists every route the app serves."""
from __future__ import annotations

from jsonschema import Draft202012Validator

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
