"""Revision scripts of the intake service."""
