"""The routing proxy in front of the monolith: phases per room, capture, shadow reads (DESIGN.md)."""
