"""L3: evaluation metrics and protocol."""
