"""The new core's domain: messages, read cursors and the full-state events that carry them.

Imports nothing but the standard library.
"""
