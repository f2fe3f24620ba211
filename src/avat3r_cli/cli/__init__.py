"""L4: Typer commands only: parse, call L3, print."""
