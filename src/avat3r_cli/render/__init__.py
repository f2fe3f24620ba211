"""L1: Gaussian rasterisation (gsplat on CUDA, the project's own PyTorch rasteriser elsewhere)."""

from avat3r_cli.render.api import RenderOutput, parse_background, render

__all__ = ["RenderOutput", "parse_background", "render"]
