"""al_flows.pool_study.strategies."""
