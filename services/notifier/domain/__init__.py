"""The notifier's pure rules: lifecycle, holding guard, recipients, retry policy (no I/O)."""
