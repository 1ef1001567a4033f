"""Revision scripts of the escalation service."""
