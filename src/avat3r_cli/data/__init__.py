"""L2: datasets, the synthetic head generator and samplers."""
