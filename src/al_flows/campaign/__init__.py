"""al_flows.campaign.run."""
