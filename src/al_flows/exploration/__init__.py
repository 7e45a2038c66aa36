"""al_flows.exploration."""
