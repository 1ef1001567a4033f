"""Delivery lifecycle per notification and channel, modelled on GOV.UK Notify.

    created ──▶ sending ──▶ delivered
                   │ ├────▶ temporary-failure ──▶ sending (retry through a delay queue)
                   │ ├────▶ permanent-failure   (final: the recipient/channel refuses it,
                   │ │                           or temporary failures ran out of time)
                   │ └────▶ technical-failure   (final: our side cannot build it)
    created ──▶ refused                          (final: a holding instruction forbids it)

`sending` is written (and committed) *before* the channel is called and the outcome
*after*; a crash between the two is the only window in which a message can be sent
twice: the redelivered request finds `sending`, waits for the row's lease to run out
and sends again — at-least-once, because a lost safeguarding alert is worse than a
duplicate one (emails carry a stable Message-ID so a mail system can drop the copy).
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Status(StrEnum):
    CREATED = "created"
    SENDING = "sending"
    DELIVERED = "delivered"
    TEMPORARY_FAILURE = "temporary-failure"
    PERMANENT_FAILURE = "permanent-failure"
    TECHNICAL_FAILURE = "technical-failure"
    REFUSED = "refused"


FINAL = frozenset({Status.DELIVERED, Status.PERMANENT_FAILURE, Status.TECHNICAL_FAILURE, Status.REFUSED})

TRANSITIONS: dict[Status, frozenset[Status]] = {
    Status.CREATED: frozenset({Status.SENDING, Status.REFUSED, Status.TECHNICAL_FAILURE, Status.PERMANENT_FAILURE}),
    Status.SENDING: frozenset({Status.SENDING, Status.DELIVERED, Status.TEMPORARY_FAILURE,
                               Status.PERMANENT_FAILURE, Status.TECHNICAL_FAILURE}),
    Status.TEMPORARY_FAILURE: frozenset({Status.SENDING, Status.PERMANENT_FAILURE, Status.TECHNICAL_FAILURE,
                                         Status.REFUSED}),
}


class InvalidTransition(Exception):
    pass


def check_transition(current: Status, new: Status) -> None:
    if new not in TRANSITIONS.get(current, frozenset()):
        raise InvalidTransition(f"{current} -> {new}")


def is_final(status: Status | str) -> bool:
    return Status(status) in FINAL


def may_attempt(status: Status | str, row_attempts: int, message_attempt: int) -> bool:
    """Whether a delivery (original request: attempt 0, or a retry copy: attempt n) may
    try the channel now, given the stored row. Stale copies and finished rows: no.

    - `created`: the first try (or a fallback row) — only the attempt-0 message;
    - `temporary-failure` after n tries: only the retry copy scheduled for it (attempt n);
    - `sending` after n tries: the message that was being sent when the process died
      (attempt n-1) is redelivered — try again (the documented at-least-once window).
    """
    status = Status(status)
    if status == Status.CREATED:
        return message_attempt == 0
    if status == Status.TEMPORARY_FAILURE:
        return message_attempt == row_attempts
    if status == Status.SENDING:
        return message_attempt == row_attempts - 1
    return False


class Outcome(StrEnum):
    DELIVERED = "delivered"
    TEMPORARY = "temporary"
    PERMANENT = "permanent"
    TECHNICAL = "technical"


@dataclass(frozen=True)
class SendResult:
    """What a channel reports. `reason` is a fixed code (e.g. `smtp_550`, `http_429`)."""

    outcome: Outcome
    reason: str | None = None
    retry_after_s: float | None = None

    @classmethod
    def delivered(cls) -> "SendResult":
        return cls(Outcome.DELIVERED)

    @classmethod
    def temporary(cls, reason: str, retry_after_s: float | None = None) -> "SendResult":
        return cls(Outcome.TEMPORARY, reason, retry_after_s)

    @classmethod
    def permanent(cls, reason: str) -> "SendResult":
        return cls(Outcome.PERMANENT, reason)

    @classmethod
    def technical(cls, reason: str) -> "SendResult":
        return cls(Outcome.TECHNICAL, reason)


FINAL_STATUS = {Outcome.DELIVERED: Status.DELIVERED, Outcome.PERMANENT: Status.PERMANENT_FAILURE,
                Outcome.TECHNICAL: Status.TECHNICAL_FAILURE}
