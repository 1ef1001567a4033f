"""The `safeguard` command: wires the services and the shared package together."""
