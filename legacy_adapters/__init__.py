"""Everything that knows the monolith: its schema, its quirks, its data (DESIGN.md)."""
