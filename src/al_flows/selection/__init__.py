"""al_flows.selection.trust_levels."""
