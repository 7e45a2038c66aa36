"""al_flows.validation."""
