"""L1: reading and writing files (images, .ply, video, weights)."""
