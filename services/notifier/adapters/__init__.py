"""What connects the notifier service to the outside world: its database tables."""
