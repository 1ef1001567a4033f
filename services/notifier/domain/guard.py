"""The holding-instruction guard (DESIGN §4 "Holding instructions").

The notifier keeps its OWN record of each referral's holds, built from intake's
`referral.received`, `.checks_completed`, `.strategy_discussion_recorded` and
`.feedback_released` events; a request's `holding`
can only make things stricter, never looser. Rules:

- `guardians` audience: refused (final state `refused`, reason `holding_instruction`,
  audited) unless the notifier's record shows that a prevent feedback release lifted the
  family-contact hold and released feedback to guardians, the template is `feedback`,
  and the request itself does not still claim the hold. No record at all = refused
  (fail closed), whoever asks.
  A guardians' `feedback` request that no longer claims the hold while the record has
  not yet seen any feedback release is refused with `wait`: intake's release event and
  escalation's request travel separately, so the request can overtake the event; the
  handler hands it back to the queue a few times before it makes the refusal final.
- `no_further_sharing` (record OR request): messages carry the reference and times only.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

GUARDIANS = "guardians"
REFUSED_REASON = "holding_instruction"


@dataclass(frozen=True)
class HoldRecord:
    referral_id: str
    no_further_sharing: bool
    no_family_contact: bool
    feedback_released: bool = False
    guardians_released: bool = False

    @classmethod
    def on_received(cls, referral_id: str, *, no_further_sharing: bool, no_family_contact: bool) -> "HoldRecord":
        return cls(referral_id, no_further_sharing, no_family_contact)

    def on_feedback_released(self, *, family_contact_lifted: bool, audiences: tuple[str, ...]) -> "HoldRecord":
        """Only a prevent client's feedback release (intake checks the role) lifts a hold.
        Intake names `guardians` only once the hold is off (lifted by this release or before,
        e.g. by a strategy discussion whose event this record may not have seen yet: the
        events of one referral can be handled in any order)."""
        lifted = family_contact_lifted or not self.no_family_contact or GUARDIANS in audiences
        return HoldRecord(
            self.referral_id, self.no_further_sharing, self.no_family_contact and not lifted,
            feedback_released=True,
            guardians_released=self.guardians_released or (lifted and GUARDIANS in audiences),
        )

    def on_strategy_discussion(self, *, family_contact_lifted: bool) -> "HoldRecord":
        """A strategy discussion with CTP Prevent present and the parents informed lifts the
        family-contact hold (intake decides and says so); guardians are then told feedback."""
        return replace(self, no_family_contact=self.no_family_contact and not family_contact_lifted)

    def on_checks_completed(self) -> "HoldRecord":
        """DESIGN §4: the CTP checks outcome lifts no_further_sharing; nothing else."""
        return replace(self, no_further_sharing=False)


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    minimal: bool  # reference and times only
    reason: str | None = None
    wait: bool = False  # the record may be behind the request: worth trying again shortly


def decide(*, audience: str, template: str, request_no_family_contact: bool,
           request_no_further_sharing: bool, record: HoldRecord | None) -> Verdict:
    minimal = request_no_further_sharing or record is None or record.no_further_sharing
    if audience == GUARDIANS:
        allowed = (
            record is not None
            and template == "feedback"
            and not record.no_family_contact
            and record.guardians_released
            and not request_no_family_contact
        )
        if not allowed:
            behind = (record is not None and template == "feedback" and not record.feedback_released
                      and not request_no_family_contact)
            return Verdict(False, minimal, REFUSED_REASON, wait=behind)
    return Verdict(True, minimal)
