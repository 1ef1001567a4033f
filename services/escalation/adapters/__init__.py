"""What connects the escalation service to the outside world: its tables and repository,
the outbox and audit writers, the ops dashboard's queries and the migrations."""
