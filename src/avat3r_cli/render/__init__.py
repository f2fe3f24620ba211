"""L1: Gaussian rasterisation (gsplat on CUDA, the project's own PyTorch rasteriser elsewhere)."""
