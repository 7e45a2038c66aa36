"""al_flows.workflow."""
