"""`python -m azure_ad_token_auth` runs the command-line interface."""

from ._cli import main

raise SystemExit(main())
