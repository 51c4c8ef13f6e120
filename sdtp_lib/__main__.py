"""`python -m sdtp_lib ...`: the command-line interface (see sdtp_lib.cli)."""
from .cli import main

raise SystemExit(main())
