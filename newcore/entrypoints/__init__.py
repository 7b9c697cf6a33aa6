"""Commands and long-running processes of the new core."""
