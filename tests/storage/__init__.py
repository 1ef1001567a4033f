"""Tests of shared.storage against the real SQLite and PostgreSQL."""
