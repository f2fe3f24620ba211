"""avat3r-cli: a few photos of a head in, an animatable 3D Gaussian avatar out."""

__version__ = "0.1.0"
