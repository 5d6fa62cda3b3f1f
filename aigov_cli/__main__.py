"""``python -m aigov_cli``."""

from aigov_cli.main import main

main()
