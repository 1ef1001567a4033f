"""The escalation service's tables (all named `escalation_*`); change them only with a new migration."""
from __future__ import annotations

from sqlalchemy import JSON, Boolean, Column, Index, Integer, MetaData, String, Table, UniqueConstraint

from shared.storage.nonces import nonce_table
from shared.storage.people import people_table
from shared.web.sessions import session_table
from shared.storage.tables import ID_TYPE, UtcDateTime, common_tables

SERVICE = "escalation"

metadata = MetaData()

outbox, processed, audit, audit_head, audit_checkpoints = common_tables(metadata, SERVICE)

# Revision 0003. Escalation's view of each referral: metadata and clock states only.
# A row may exist before its receipt (an early or unknown-reference event): then
# `received_at` is NULL and the flags say what already happened.
referrals = Table(
    "escalation_referrals", metadata,
    Column("referral_id", String(64), primary_key=True),
    Column("reference", String(40), nullable=False, index=True),
    Column("force", String(64), nullable=False),
    Column("la_code", String(9), nullable=False),
    Column("received_at", UtcDateTime(), nullable=True),
    Column("out_of_hours", Boolean, nullable=True),
    Column("immediate_risk", Boolean, nullable=True),
    Column("acknowledge_by", UtcDateTime(), nullable=True),
    Column("checks_due_by", UtcDateTime(), nullable=True),
    Column("holding", JSON, nullable=True),
    Column("acknowledged_at", UtcDateTime(), nullable=True),
    Column("decided_at", UtcDateTime(), nullable=True),
    Column("pathway", String(40), nullable=True),
    Column("checks_completed_at", UtcDateTime(), nullable=True),
    Column("checks_outcome", String(40), nullable=True),
    Column("feedback_released_at", UtcDateTime(), nullable=True),
    Column("strategy_by", UtcDateTime(), nullable=True),  # strategy-discussion-by, while one is asked for
    Column("strategy_recorded_at", UtcDateTime(), nullable=True),
    Column("la_closed_at", UtcDateTime(), nullable=True),  # the LA's track (its clocks stop)
    Column("ctp_closed_at", UtcDateTime(), nullable=True),  # CTP Prevent's track
    Column("closed_at", UtcDateTime(), nullable=True),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
)

# Every deadline, reminder, breach step and alert re-escalation: the source of truth.
timers = Table(
    "escalation_timers", metadata,
    Column("id", ID_TYPE, primary_key=True, autoincrement=True),
    Column("timer_key", String(200), nullable=False),
    Column("referral_id", String(64), nullable=False, index=True),
    Column("reference", String(40), nullable=False),
    Column("kind", String(40), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("alert_id", String(64), nullable=True),
    Column("due_at", UtcDateTime(), nullable=False),
    Column("run_at", UtcDateTime(), nullable=False),  # due_at, or the next retry after a failure
    Column("status", String(12), nullable=False),  # pending | fired | cancelled | failed
    Column("attempts", Integer, nullable=False, default=0),
    Column("last_error", String(200), nullable=True),
    Column("fired_at", UtcDateTime(), nullable=True),
    Column("created_at", UtcDateTime(), nullable=False),
    UniqueConstraint("timer_key", name="escalation_timers_timer_key_key"),
    Index("ix_escalation_timers_status_run_at", "status", "run_at"),
)

alerts = Table(
    "escalation_alerts", metadata,
    Column("alert_id", String(64), primary_key=True),
    Column("referral_id", String(64), nullable=False, index=True),
    Column("reference", String(40), nullable=False),
    Column("kind", String(40), nullable=False),
    Column("force", String(64), nullable=False),
    Column("la_code", String(9), nullable=False),
    Column("level_index", Integer, nullable=False),
    Column("level", String(40), nullable=False),
    Column("status", String(16), nullable=False),  # open | acknowledged | closed
    Column("raised_at", UtcDateTime(), nullable=False),
    Column("last_raised_at", UtcDateTime(), nullable=False),
    Column("acknowledged_at", UtcDateTime(), nullable=True),
    Column("acknowledged_by", String(100), nullable=True),
    Index("ix_escalation_alerts_force_status", "force", "status"),
    # --- revision 0006: the LA's concern an alert was raised for (one alert per concern), and
    # what the control room did about the alert (once; its notes sealed to the LA and the force)
    Column("concern_id", String(64), nullable=True),
    Column("outcome_action", String(40), nullable=True),
    Column("outcome_at", UtcDateTime(), nullable=True),
    Column("outcome_by", String(100), nullable=True),
    Column("outcome_notes_sealed", JSON, nullable=True),
    Index("ix_escalation_alerts_concern_id", "concern_id", unique=True),
)

# --- revision 0007: the pages' server-side sessions ---
web_sessions = session_table(metadata, SERVICE)

# --- revision 0008: the people named in `acknowledged_by` / `outcome_by` (DESIGN §3.7: issuer,
# subject, name), one row per person id (`person:…`), updated as they act; the console shows the name.
people = people_table(metadata, SERVICE)

# --- revision 0009: signed requests' nonces, claimed across restarts and replicas ---
nonces = nonce_table(metadata, SERVICE)
