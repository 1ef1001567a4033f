"""What connects the intake service to the outside world: its database tables."""
