"""al_flows.frames."""
