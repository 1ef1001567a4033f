"""Plain-English words for the codes a referral's metadata holds, and which actions a person's
role may take in the referral's current state (pure; what the pages show and offer)."""
from __future__ import annotations

from typing import Any

from services.intake.domain.clocks import strategy_due

TRACK_STATUS = {
    "received": "Awaiting acknowledgement", "acknowledged": "Acknowledged, awaiting decision",
    "decided": "Decided", "closed": "Closed", "checks_pending": "Checks pending",
    "checks_completed": "Checks completed", "feedback_released": "Feedback released",
}
STATUS = {"received": "Received", "acknowledged": "Acknowledged", "decided": "Decided", "closed": "Closed"}
PATHWAY = {
    "immediate_protection": "Immediate protection", "section_47": "Section 47 enquiry",
    "section_17": "Section 17 (child in need)", "early_help": "Early help", "no_further_action": "No further action",
}
OUTCOME = {
    "suitable_for_prevent": "Suitable for Prevent", "not_suitable": "Not suitable for Prevent",
    "channel_referral": "Channel referral", "police_led": "Police-led",
}
AGENCY = {"local_authority": "Local authority", "police": "Police", "ctp_prevent": "CTP Prevent",
          "health": "Health", "nspcc": "NSPCC", "other": "Other"}
STRATEGY_DECISION = {"immediate_safeguarding_action": "Immediate safeguarding action",
                     "section_47_enquiry": "Section 47 enquiry", "no_immediate_action": "No immediate action"}
CONCERN_CATEGORY = {"welfare": "Welfare", "missing": "Missing", "new_information": "New information",
                    "other": "Other"}
CONCERN_TYPE = {
    "islamist": "Islamist", "extreme_right_wing": "Extreme right-wing",
    "left_wing_anarchist_single_issue": "Left-wing, anarchist or single issue",
    "mixed_unclear_unstable": "Mixed, unclear or unstable", "school_massacre": "School massacre",
    "incel": "Incel", "conflicted": "Conflicted", "other": "Other",
}
RECEIVED_VIA = {"mash": "MASH", "out_of_hours_control_room": "Out-of-hours control room",
                "ctp_prevent": "CTP Prevent", "police_other": "Police (other)"}
AGE_BAND = {"0-10": "0 to 10", "11-15": "11 to 15", "16-17": "16 to 17"}
EVENT = {
    "received": "Referral received", "acknowledged": "Acknowledged", "decided": "Next step decided",
    "checks_completed": "CTP checks recorded", "feedback_released": "CTP feedback released",
    "strategy_discussion_recorded": "Strategy discussion recorded",
    "la_track_closed": "Local authority track closed", "ctp_track_closed": "CTP Prevent track closed",
    "closed": "Referral closed", "concern_raised": "Out-of-hours concern raised",
}
# What a success banner says once an action is done (and when it had been done before).
DONE = {
    "acknowledgement": "Referral acknowledged", "decision": "Decision recorded",
    "strategy-discussion": "Strategy discussion recorded", "concerns": "Out-of-hours concern raised for the control room",
    "checks": "CTP checks recorded", "feedback": "Feedback released", "close": "Your track is closed",
}
ALREADY = {
    "acknowledgement": "This referral had already been acknowledged", "decision": "This decision was already recorded",
    "strategy-discussion": "This strategy discussion was already recorded",
    "checks": "These CTP checks were already recorded", "feedback": "Feedback had already been released",
    "close": "Your track was already closed",
}
PAGE_ROLES = ("social_care", "prevent")  # the recipient teams: the case list and the referral page
REPORT_ROLES = ("social_care", "prevent", "control_room", "referrer", "ops")
WELFARE_ROLES = ("control_room",)  # the welfare check of a referral of their force, and nothing else
WELFARE_REASON = {"welfare_check": "A welfare check", "missing_person": "A missing person",
                  "risk_to_life": "A risk to life"}


def word(table: dict[str, str], code: str | None) -> str:
    return "" if code is None else table.get(code, code.replace("_", " ").capitalize())


def available_actions(role: str, row: Any) -> list[str]:
    """The actions `role` may take on the referral now (its organisation already checked)."""
    if role == "social_care":
        if row.la_closed_at is not None:
            return []
        out = ["acknowledgement"] if row.acknowledged_at is None else (["decision"] if row.pathway is None else [])
        if strategy_due(row):
            out.append("strategy-discussion")
        return [*out, "concerns", "close"]
    if role == "prevent":
        if row.ctp_closed_at is not None:
            return []
        out = ["checks"] if row.checks_outcome is None else (["feedback"] if row.feedback_at is None else [])
        return [*out, "close"]
    return []
