"""What connects the escalation service to the outside world: its database tables."""
