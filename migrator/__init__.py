"""Batch jobs: backfill, parity, repair, cutover and rollback (DESIGN.md)."""
