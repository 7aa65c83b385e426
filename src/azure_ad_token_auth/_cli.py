"""The `azure-ad-token-auth` command."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from ._advice import CREDENTIALS
from ._clouds import DEFAULT_SCOPE
from ._demo_setup import DEMO_CREDENTIALS
from ._version import __version__


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="azure-ad-token-auth",
        description="Refreshing Azure AD tokens for requests, httpx and openai.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser(
        "demo",
        help="run an Azure OpenAI completion through this package's auth (on loopback stand-ins by default)",
        description=(
            "Runs a completion several times through the installed openai with this package's auth: the "
            "README's AzureOpenAI recipe on openai >= 1, the cookbook's on openai 0.28. By default everything "
            "runs on loopback stand-ins (an Azure OpenAI endpoint and an identity endpoint issuing short-lived "
            "tokens to a real azure-identity credential, chosen with --credential); "
            "with --endpoint and --deployment it calls a real Azure OpenAI resource."
        ),
    )
    demo.add_argument("--requests", type=int, default=8, help="completions to run (default 8)")
    demo.add_argument("--interval", type=float, default=0.75, help="seconds between requests (default 0.75)")
    demo.add_argument(
        "--token-lifetime", type=float, default=4.0, help="lifetime of the stand-in's tokens in seconds (default 4)"
    )
    demo.add_argument(
        "--credential",
        choices=list(DEMO_CREDENTIALS),
        help=(
            "the real azure-identity credential to use, each against its loopback stand-in: workload-identity "
            "(WorkloadIdentityCredential, Entra ID over TLS), service-principal (ClientSecretCredential), imds "
            "(ManagedIdentityCredential on a VM), cli (AzureCliCredential with a fake az), app-service "
            "(DefaultAzureCredential with App Service managed identity; the default)"
        ),
    )
    demo.add_argument("--endpoint", help="a real Azure OpenAI endpoint, https://<resource>.openai.azure.com")
    demo.add_argument("--deployment", help="the deployment to call (required with --endpoint)")
    demo.add_argument("--api-version", default="2024-10-21", help="Azure OpenAI api-version (default 2024-10-21)")
    demo.add_argument("--verbose", action="store_true", help="show the traceback of a failure (for a bug report)")
    demo.add_argument(
        "--workers",
        type=int,
        default=0,
        help="run this many worker processes sharing one token through the shared cache (shared_cache)",
    )

    token = commands.add_parser(
        "token",
        help="get a token and show who issued it, when it expires and its claims (not the token)",
        description=(
            "Gets a token through this package's TokenCache and shows which credential answered, when the token "
            "expires and will be renewed, and its audience, tenant, object id, app id, user and permissions, read "
            "from the token without verifying it. The token itself is printed only with --show-token."
        ),
    )
    token.add_argument("--scope", default=DEFAULT_SCOPE, help=f"the scope to ask for (default {DEFAULT_SCOPE})")
    token.add_argument(
        "--credential",
        choices=list(CREDENTIALS),
        default="default",
        help="the azure-identity credential to ask (default: DefaultAzureCredential)",
    )
    token.add_argument("--json", action="store_true", help="print JSON instead of a table")
    token.add_argument("--show-token", action="store_true", help="also print the access token (a secret!)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "demo":
        from ._demo import run_demo

        return run_demo(args)
    if args.command == "token":
        from ._inspect import run_token

        return run_token(args.scope, args.credential, as_json=args.json, show_token=args.show_token)
    return 2  # pragma: no cover - argparse rejects unknown commands
