"""L0: dataclasses, runtime helpers and the expression names. Imports nothing above it."""
