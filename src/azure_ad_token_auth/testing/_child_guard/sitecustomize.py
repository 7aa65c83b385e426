"""Guard a Python child process of a suite run under `NetworkGuard(children=True)`.

Python imports `sitecustomize` at start-up from `PYTHONPATH`, where the parent's guard
put this directory. It loads the guard module by its path, not through the package, so
a child pays for `socket`-level checks only, not for importing azure-ad-token-auth.
"""

import os

if os.environ.get("AZURE_AD_TOKEN_AUTH_GUARD_REPORT"):
    import importlib.util

    _spec = importlib.util.spec_from_file_location(
        "_azure_ad_token_auth_child_guard",
        os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "_guard.py"),
    )
    if _spec is not None and _spec.loader is not None:
        _guard = importlib.util.module_from_spec(_spec)
        _spec.loader.exec_module(_guard)
        _guard.guard_child()
