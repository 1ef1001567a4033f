"""What connects the notifier to the outside world: its tables and repository, the outbox
and audit writes (effects), rendering, and the delivery channels."""
