"""L1: pure nn.Modules (tensors in, tensors out)."""
