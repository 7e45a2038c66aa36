"""al_flows.structures."""
