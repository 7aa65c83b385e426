"""The kit's throwaway certificate authority: TLS for the loopback stand-ins.

One CA per process (`trustme`, imported when the first TLS stand-in is made, never by
the pytest plugin or `import azure_ad_token_auth.testing`) signs every stand-in's server
certificate, so one CA file makes a client trust them all: `CA_ENV` names the
variables the clients read (`SSL_CERT_FILE`: httpx, httpx2 and so openai >= 1, and
OpenSSL's default paths, which aiohttp reads when it is imported; `REQUESTS_CA_BUNDLE`:
requests, so openai 0.28 and azure-identity).
"""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import ssl
import tempfile
from typing import Any, Final

__all__ = ["CA_ENV", "ca_path", "client_certificate", "client_context", "server_context", "trust_env"]

CA_ENV: Final = ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE")
"""The variables that point the HTTP clients at a CA file (see the module's docstring)."""

# What a stand-in's certificate names: the addresses its `base_url` can be reached at.
_SERVER_NAMES: Final = ("127.0.0.1", "localhost", "::1")


@functools.lru_cache(maxsize=1)
def _ca() -> Any:
    try:
        import trustme
    except ImportError:
        raise ImportError(
            "the loopback stand-ins serve TLS with a throwaway CA from 'trustme': "
            'pip install "azure-ad-token-auth[testing]" (or pip install trustme); '
            "for a plain-http stand-in pass tls=False, and allow_http=True to the adapter or provider",
            name="trustme",
        ) from None
    return trustme.CA()


@functools.lru_cache(maxsize=1)
def _server_certificate() -> Any:
    return _ca().issue_cert(*_SERVER_NAMES)


@functools.lru_cache(maxsize=1)
def client_certificate() -> Any:
    """An RSA certificate from the CA (Entra ID's `CertificateCredential` signs with RSA); made once."""
    import trustme

    return _ca().issue_cert("loopback-client.invalid", key_type=trustme.KeyType.RSA)


def server_context() -> ssl.SSLContext:
    """A server-side context presenting the stand-ins' certificate."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    _server_certificate().configure_cert(context)
    return context


@functools.lru_cache(maxsize=1)
def ca_path() -> str:
    """A PEM file holding the CA's certificate, written once per process and removed at its exit."""
    directory = tempfile.mkdtemp(prefix="azure-ad-token-auth-ca-")
    owner = os.getpid()

    def remove() -> None:
        if os.getpid() == owner:  # only the process that made it: a forked child exiting must not
            shutil.rmtree(directory, ignore_errors=True)

    atexit.register(remove)
    path = os.path.join(directory, "ca.pem")
    _ca().cert_pem.write_to_path(path)
    return path


def client_context() -> ssl.SSLContext:
    """A client-side context trusting the CA (and nothing else): aiohttp's `ssl=`, httpx's `verify=`."""
    return ssl.create_default_context(cafile=ca_path())


def trust_env() -> dict[str, str]:
    """`CA_ENV`, each naming `ca_path()`."""
    path = ca_path()
    return dict.fromkeys(CA_ENV, path)
