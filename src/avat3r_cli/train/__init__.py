"""L3: training loop and losses."""
