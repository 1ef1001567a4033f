"""The intake service's tables (all named `intake_*`); change them only with a new migration."""
from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Column, Date, ForeignKey, Index, Integer, MetaData, PrimaryKeyConstraint, String, Table

from shared.storage.nonces import nonce_table
from shared.storage.people import people_table
from shared.web.sessions import session_table
from shared.storage.tables import UtcDateTime, common_tables

SERVICE = "intake"


def _received_at(context: Any) -> Any:
    return context.get_current_parameters()["received_at"]


metadata = MetaData()

outbox, processed, audit, audit_head, audit_checkpoints = common_tables(metadata, SERVICE)

# --- revision 0003: referrals, reference counters, idempotency keys, request nonces ---

referrals = Table(
    "intake_referrals", metadata,
    Column("id", String(36), primary_key=True),
    Column("reference", String(20), nullable=False, unique=True),
    Column("client_id", String(100), nullable=False),
    Column("client_reference", String(100), nullable=False),
    Column("force", String(63), nullable=False, index=True),
    Column("la_code", String(9), nullable=False, index=True),
    Column("received_via", String(40), nullable=False),
    Column("immediate_risk", Boolean, nullable=False),
    Column("age_band", String(8), nullable=False),
    Column("concern_types", JSON, nullable=False),
    Column("referral_source_sector", String(20), nullable=True),  # clear reporting codes (optional)
    Column("gender", String(20), nullable=True),
    Column("no_further_sharing", Boolean, nullable=False),
    Column("no_family_contact", Boolean, nullable=False),
    Column("holding_review_by", Date, nullable=True),
    Column("received_at", UtcDateTime(), nullable=False, index=True),
    Column("out_of_hours", Boolean, nullable=False),
    Column("acknowledge_by", UtcDateTime(), nullable=False),
    Column("checks_due_by", UtcDateTime(), nullable=False),
    Column("status", String(20), nullable=False),
    Column("acknowledged_at", UtcDateTime(), nullable=True),
    Column("acknowledged_by", String(100), nullable=True),
    Column("pathway", String(40), nullable=True),
    Column("decided_at", UtcDateTime(), nullable=True),
    Column("decided_by", String(100), nullable=True),
    Column("rationale_sealed", JSON, nullable=True),
    Column("checks_outcome", String(40), nullable=True),
    Column("checks_at", UtcDateTime(), nullable=True),
    Column("checks_by", String(100), nullable=True),
    Column("checks_notes_sealed", JSON, nullable=True),
    Column("family_contact_hold", Boolean, nullable=False),
    Column("family_contact_lifted", Boolean, nullable=False, default=False),
    Column("feedback_at", UtcDateTime(), nullable=True),
    Column("feedback_by", String(100), nullable=True),
    Column("closed_at", UtcDateTime(), nullable=True),  # both tracks closed
    Column("closed_by", String(100), nullable=True),
    Column("la_closed_at", UtcDateTime(), nullable=True),
    Column("la_closed_by", String(100), nullable=True),
    Column("ctp_closed_at", UtcDateTime(), nullable=True),
    Column("ctp_closed_by", String(100), nullable=True),
    Column("content_sealed", JSON, nullable=False),
    Column("contacts_sealed", JSON, nullable=False),
    Column("shredded_at", UtcDateTime(), nullable=True),
    # --- revision 0004: the LA's strategy discussion (its notes sealed like the rationale) ---
    Column("strategy_at", UtcDateTime(), nullable=True),
    Column("strategy_by", String(100), nullable=True),
    Column("strategy_held_at", UtcDateTime(), nullable=True),
    Column("strategy_decision", String(40), nullable=True),
    Column("strategy_agencies", JSON, nullable=True),
    Column("strategy_legal_advice_sought", Boolean, nullable=True),
    Column("strategy_parents_informed", Boolean, nullable=True),
    Column("strategy_family_contact_lifted", Boolean, nullable=True),
    Column("strategy_notes_sealed", JSON, nullable=True),
    # --- revision 0011: when its metadata last changed (the list API's `updated_since`); the
    # repository sets it; a row inserted without it (test data, tools) takes its received_at ---
    Column("updated_at", UtcDateTime(), nullable=False, index=True, default=_received_at),
    Index("ix_intake_referrals_la_code_received_at_id", "la_code", "received_at", "id"),
    Index("ix_intake_referrals_force_received_at_id", "force", "received_at", "id"),
)

# Every sealed envelope a referral row holds: retention shreds them all, `keys rewrap` re-seals them all.
SEALED_COLUMNS = ("content_sealed", "contacts_sealed", "rationale_sealed", "checks_notes_sealed",
                  "strategy_notes_sealed")


def section_of(column: str) -> str:
    """The section name an envelope of `column` is sealed as (bound in its associated data):
    `content`, `contacts`, `rationale`, `checks_notes`, `strategy_notes`."""
    if column not in SEALED_COLUMNS:
        raise ValueError(f"not a sealed column: {column}")
    return column.removesuffix("_sealed")

reference_counters = Table(
    "intake_reference_counters", metadata,
    Column("year", Integer, primary_key=True, autoincrement=False),
    Column("last", Integer, nullable=False),
)

idempotency_keys = Table(
    "intake_idempotency_keys", metadata,
    Column("client_id", String(100), nullable=False),
    Column("key", String(200), nullable=False),
    Column("body_sha256", String(64), nullable=False),
    Column("response", JSON, nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    PrimaryKeyConstraint("client_id", "key", name="pk_intake_idempotency_keys"),
)

nonces = nonce_table(metadata, SERVICE)

# --- revision 0006: concerns the LA raises for its force's control room (DESIGN §3.3) ---
# Not once-only: one row per concern. A category code, when and who: never what it is about.
concerns = Table(
    "intake_concerns", metadata,
    Column("id", String(36), primary_key=True),
    Column("referral_id", String(36), nullable=False, index=True),
    Column("reference", String(20), nullable=False),
    Column("category", String(20), nullable=False),
    Column("raised_at", UtcDateTime(), nullable=False),
    Column("raised_by", String(100), nullable=False),
)

# --- revision 0009: the people named in `*_by` columns (DESIGN §3.7: issuer, subject, name) ---
# One row per person id (`person:…`), updated as they act; the timeline shows the name.
people = people_table(metadata, SERVICE)

# --- revision 0008: the pages' server-side sessions ---
web_sessions = session_table(metadata, SERVICE)

# --- revision 0010: welfare-check grants (DESIGN §3.7): one signed-in session of a force's
# control room may read one referral's sealed content for 15 minutes after the audited step.
# The session is named by its row's `id_hash`; signing out or expiry of the session drops it.
welfare_grants = Table(
    "intake_welfare_grants", metadata,
    Column("session_hash", String(64), ForeignKey(f"{web_sessions.name}.id_hash", ondelete="CASCADE"),
           primary_key=True),
    Column("reference", String(20), primary_key=True),
    Column("person_id", String(100), nullable=False),
    Column("granted_at", UtcDateTime(), nullable=False),
    Column("expires_at", UtcDateTime(), nullable=False, index=True),
)

# --- revision 0012: the per-client rate limit shared by every replica (DESIGN §5) ---
# One row per authenticated client: the minute last counted in, the requests admitted in it
# and in the minute before, and whether the latest was admitted (adapters/ratelimits.py).
rate_limits = Table(
    "intake_rate_limits", metadata,
    Column("client_id", String(100), primary_key=True),
    Column("minute", BigInteger, nullable=False),  # minutes since the epoch
    Column("n", Integer, nullable=False),
    Column("prev_n", Integer, nullable=False),
    Column("admitted", Boolean, nullable=False),
)
