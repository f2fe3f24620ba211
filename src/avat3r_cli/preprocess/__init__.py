"""L2: photos to model inputs (faces, crops, cameras, position maps, features)."""
