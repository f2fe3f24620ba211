"""L3: orchestration of the user-facing jobs (render, create, animate, track)."""
