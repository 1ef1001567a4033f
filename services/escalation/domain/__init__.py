"""Pure escalation rules: no I/O, no clock reads."""
