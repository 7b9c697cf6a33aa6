"""Commands that work on the legacy database."""
