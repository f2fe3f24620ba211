"""``python -m avat3r_cli``."""

from avat3r_cli.cli.app import main

main()
