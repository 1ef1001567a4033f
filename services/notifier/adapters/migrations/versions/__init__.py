"""Revision scripts of the notifier service."""
