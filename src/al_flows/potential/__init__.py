"""al_flows.potential."""
