"""al_flows.labelling.ase."""
