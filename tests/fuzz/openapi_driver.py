"""Drive schemathesis (Python API) against a running intake: every operation of
/openapi.json, positive and negative data, each request RFC 9421-signed by a dev client
whose role reaches the operation's validation, with a fresh nonce.

Runs synchronously (requests + hypothesis), so call it from a worker thread while the
aiohttp server keeps serving on the event loop.
"""
from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import requests
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode, Response
from schemathesis.checks import (
    content_type_conformance, not_a_server_error, response_headers_conformance, response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.failures import FailureGroup
from schemathesis.openapi import from_dict

from shared.httpsig import authority_of, sign_request

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance, response_headers_conformance]
OWN_ORGANISATIONS = {"force": "dev-force", "la_code": "E99999999"}  # dev-mash's force and a configured LA


def client_for(method: str, path: str) -> str | None:
    """The dev client whose role may call the operation (None: not a signed endpoint)."""
    if not path.startswith("/v1/"):
        return None
    if path == "/v1/referrals":
        return "dev-mash" if method.upper() == "POST" else "dev-social-care"
    if path.endswith(("/checks", "/feedback")):
        return "dev-prevent"
    if path in ("/v1/stats", "/v1/report"):
        return "dev-ops"
    return "dev-social-care"


class Signer(requests.auth.AuthBase):
    """Sign the prepared request (exact path, query and body bytes) as `client_id`."""

    def __init__(self, client_id: str, key: Any) -> None:
        self.client_id, self.key = client_id, key

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        url = urlsplit(r.url or "")
        body = r.body.encode() if isinstance(r.body, str) else r.body
        r.headers.update(sign_request(method=r.method or "GET", path=url.path, query=url.query,
                                      authority=authority_of(r.url or ""),
                                      body=body or None, key_id=self.client_id, key=self.key))
        return r


def problem_failure(method: str, path: str, resp: Response) -> str | None:
    """Why an error response is not an RFC 9457 problem document (None if it is). The pages for
    people (not under /v1/) answer their errors as HTML pages, as the document says."""
    content_type = (resp.headers.get("content-type") or [""])[0]
    if resp.status_code < 400 or (not path.startswith("/v1/") and content_type.startswith("text/html")):
        return None
    if content_type.split(";")[0] != "application/problem+json":
        return f"{resp.status_code} with Content-Type {content_type!r}"
    try:
        doc = json.loads(resp.content)
    except ValueError:
        return f"{resp.status_code}: body is not JSON"
    if not (isinstance(doc, dict) and isinstance(doc.get("type"), str) and isinstance(doc.get("title"), str)
            and doc.get("status") == resp.status_code):
        return f"{resp.status_code}: problem document lacks type/title/status"
    return None


@dataclass
class OperationResult:
    method: str
    path: str
    cases: int = 0
    seconds: float = 0.0
    statuses: Counter = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)


def fuzz_operation(operation, base_url: str, session: requests.Session, keys: Callable[[str], Any], *,
                   max_examples: int, real_reference: str | None) -> OperationResult:
    method, path = operation.method.upper(), operation.path
    result, started = OperationResult(method, path), time.monotonic()
    client = client_for(method, path)
    auth = Signer(client, keys(client)) if client else None
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
        @settings(max_examples=max_examples, derandomize=True, database=None, deadline=None,
                  phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy(generation_mode=mode))
        def run(case) -> None:
            if real_reference and case.path_parameters and result.cases % 2 == 0:
                case.path_parameters["reference"] = real_reference  # half the cases hit a real referral
            if path == "/v1/referrals" and isinstance(case.body, dict) and result.cases % 2 == 0:
                case.body.update(OWN_ORGANISATIONS)  # past the organisation check, so some are accepted
            result.cases += 1
            try:
                response = case.call(base_url=base_url, session=session, auth=auth, allow_redirects=False,
                                     timeout=10)
            except (requests.exceptions.InvalidHeader, UnicodeEncodeError) as exc:
                result.statuses[f"unsendable:{type(exc).__name__}"] += 1
                return  # the HTTP client refused to send it (e.g. a header value with control characters)
            except requests.exceptions.RequestException as exc:  # no answer (timeout, connection reset)
                result.failures.append(f"{method} {path} [{mode.value}] no response: {type(exc).__name__}")
                return
            result.statuses[response.status_code] += 1
            try:
                case.validate_response(response, checks=CHECKS)
            except FailureGroup as exc:  # one Failure per failed check (a BaseExceptionGroup)
                result.failures += [f"{method} {path} [{mode.value}] {response.status_code}: "
                                    f"{type(f).__name__}: {str(f).splitlines()[0][:200]}" for f in exc.exceptions]
            if (why := problem_failure(method, path, response)) is not None:
                result.failures.append(f"{method} {path} [{mode.value}] {why}")

        try:
            run()
        except Unsatisfiable:  # nothing in the operation can be made invalid (no parameters, no body)
            assert mode is GenerationMode.NEGATIVE, (method, path)
    result.seconds = time.monotonic() - started
    return result


def fuzz_all(document: dict[str, Any], base_url: str, keys: Callable[[str], Any], *, max_examples: int,
             real_reference: str | None) -> list[OperationResult]:
    schema = from_dict(document)
    out = []
    with requests.Session() as session:
        for item in schema.get_all_operations():
            operation = item.ok()
            out.append(fuzz_operation(operation, base_url, session, keys, max_examples=max_examples,
                                      real_reference=real_reference))
    return out
