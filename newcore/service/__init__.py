"""Use cases of the new core: capture (hints -> events) and update (events -> read model)."""
