"""The dispatch table: route by key (exact or prefix), producer per key, id, schema, handler."""
from __future__ import annotations

from datetime import UTC, datetime

import pytest

from shared.bus.dispatch import Dispatcher, model_for
from shared.bus.message import BusMessage, Reject
from shared.messages import (
    CATALOGUE, FeedbackReleased, Holding, Message, NotificationRequested, ReferralClosed, ReferralReceived,
    RetryCopy,
)

NOW = datetime(2026, 12, 4, 10, 0, tzinfo=UTC)


def closed(**over) -> ReferralClosed:
    return ReferralClosed(**{"referral_id": "r1", "reference": "SR-2026-000001", "force": "dev-force",
                             "la_code": "E99999999", "at": NOW, **over})


def request() -> NotificationRequested:
    return NotificationRequested(
        notification_id="n1", referral_id="r1", reference="SR-2026-000001", template="receipt",
        audience="la:mash_team", la_code="E99999999", force="dev-force",
        holding=Holding(no_further_sharing=True, no_family_contact=True), requested_at=NOW)


def delivery(key: str, body: bytes, producer: str, message_id: str = "m1") -> BusMessage:
    return BusMessage(message_id=message_id, routing_key=key, producer=producer, body=body, correlation_id=None)


class Seen:
    def __init__(self) -> None:
        self.calls: list[tuple[Message, str]] = []

    async def __call__(self, parsed: Message, message: BusMessage) -> None:
        self.calls.append((parsed, message.message_id))


def test_every_catalogue_model_is_filed_under_its_own_key_with_a_producer() -> None:
    for key, model in CATALOGUE.items():
        assert model.routing_key == key
        assert model.producer in {"intake", "escalation", "notifier"}


def test_prefix_keys_match_the_longest_prefix_only() -> None:
    assert model_for("notifier.retry.30s") is RetryCopy
    assert model_for("referral.received") is ReferralReceived
    assert model_for("referral.unheard_of") is None
    assert model_for("notifier.retry") is None


async def test_the_handler_gets_the_parsed_message_and_the_delivery() -> None:
    seen = Seen()
    table = Dispatcher({ReferralClosed: seen}, unknown="unknown_event")
    await table(delivery("referral.closed", closed().to_bytes(), "intake"))
    assert seen.calls == [(closed(), "m1")]
    assert table.producers == {"intake"}


async def test_retry_copies_route_by_prefix() -> None:
    seen = Seen()
    table = Dispatcher({RetryCopy: seen, NotificationRequested: Seen()}, unknown="unexpected_routing_key")
    body = RetryCopy(channel="email", attempt=2, request=request()).to_bytes()
    await table(delivery("notifier.retry.30s", body, "notifier"))
    assert seen.calls[0][0].attempt == 2
    assert table.producers == {"notifier", "escalation"}


@pytest.mark.parametrize(("key", "body", "producer", "message_id", "reason"), [
    ("referral.reopened", closed().to_bytes(), "intake", "m1", "unknown_event"),
    ("referral.feedback_released", closed().to_bytes(), "intake", "m1", "unknown_event"),
    ("referral.closed", closed().to_bytes(), "escalation", "m1", "producer_not_allowed_for_key"),
    ("referral.closed", closed().to_bytes(), "intake", "", "missing_message_id"),
    ("referral.closed", b"{not json", "intake", "m1", "schema_invalid"),
    ("referral.closed", b'{"referral_id": "r1"}', "intake", "m1", "schema_invalid"),
    ("referral.closed", closed().to_bytes().replace(b"Z\"", b"\""), "intake", "m1", "schema_invalid"),
])
async def test_what_does_not_fit_is_rejected_with_a_fixed_reason(key, body, producer, message_id, reason) -> None:
    seen = Seen()
    table = Dispatcher({ReferralClosed: seen}, unknown="unknown_event", require_id=True, aware_times=True)
    with pytest.raises(Reject) as caught:
        await table(delivery(key, body, producer, message_id))
    assert caught.value.reason == reason
    assert seen.calls == []


def test_a_table_may_only_name_catalogue_models() -> None:
    class Stray(FeedbackReleased):
        pass

    with pytest.raises(ValueError, match="Stray"):
        Dispatcher({Stray: Seen()}, unknown="unknown_event")


def test_the_notifier_handles_every_key_its_queue_is_bound_to() -> None:
    """Nothing bound to notifier.requests is parked as unexpected: every status-callback
    event (DESIGN §3.6) and every hold event has a route in the notifier's table."""
    from services.notifier.entrypoints.amqp import DISPATCH
    from shared.bus import NOTIFIER_REQUESTS, queue_spec
    from shared.messages import CALLBACK_EVENTS

    bound = queue_spec(NOTIFIER_REQUESTS).routing_keys
    assert set(CALLBACK_EVENTS) <= set(bound)
    assert all(DISPATCH.route(key) is not None for key in bound)
