"""A stand-in for the Microsoft Entra ID token endpoint, over TLS on loopback.

azure-identity's service-principal and workload-identity credentials talk to Entra ID
through MSAL, which insists on https and first fetches the tenant's OpenID
configuration (``{authority}/{tenant}/v2.0/.well-known/openid-configuration``) to
learn the token endpoint. `EntraIdStandIn` serves both, with a certificate from the
kit's throwaway CA (`_tls`: `trustme`, imported when the stand-in is created) that the
credential is told to trust (`REQUESTS_CA_BUNDLE` or `connection_verify=`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import shutil
import tempfile
import time
import weakref
from collections.abc import Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl

from . import _tls
from ._environ import patched_environ
from ._http import _FaultQueue, _LoopbackService, _Request, _Response
from ._token_registry import DEFAULT_APP_ID, DEFAULT_TENANT, TokenRegistry

__all__ = ["EntraIdStandIn", "EntraTokenRequest"]

ClientAuth = Literal["secret", "certificate", "federated"]
_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


@dataclass(frozen=True)
class EntraTokenRequest:
    """One token-endpoint request seen by `EntraIdStandIn`; holds no secret and no token."""

    grant_type: str
    client_id: str
    client_auth: ClientAuth | None
    scope: str
    claims: str | None
    """The `claims` form field as sent (JSON text), or None."""
    status: int
    time: float


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _error(status: int, error: str, code: str, description: str) -> _Response:
    return _Response.of_json(
        status,
        {"error": error, "error_description": f"{code}: {description}", "error_codes": [int(code[6:])]},
    )


class EntraIdStandIn(_LoopbackService):
    """Entra ID (`https://127.0.0.1:PORT/{tenant}/oauth2/v2.0/token`) for `client_credentials`.

    Accepts one app (`client_id`) in one tenant, authenticated by `client_secret`, by an
    assertion signed with the certificate at `certificate_path`, or by the federated
    token in `federated_token_file` (what AKS workload identity mounts). Tokens come
    from `registry`, so an `AzureOpenAIStandIn` sharing it accepts them. A `claims`
    form field (a CAE challenge, or client capabilities) is recorded in `requests`.

    Point credentials here with `env(kind)` / `patched_env(kind)` (environment
    variables, as `DefaultAzureCredential` reads them) or `credential_kwargs()`
    (`authority=`, `disable_instance_discovery=True`, `connection_verify=`).
    """

    def __init__(
        self,
        *,
        registry: TokenRegistry | None = None,
        lifetime: float = 3600.0,
        refresh_in: float | None = None,
        tenant: str = DEFAULT_TENANT,
        client_id: str = DEFAULT_APP_ID,
        client_secret: str = "loopback-client-secret",  # noqa: S107 - a fixture value
    ) -> None:
        super().__init__(tls=True)
        client = _tls.client_certificate()
        self.registry = registry if registry is not None else TokenRegistry()
        self.tenant = tenant
        self.client_id = client_id
        self.client_secret = client_secret
        self._lifetime = lifetime
        self._refresh_in = refresh_in
        self._dir = Path(tempfile.mkdtemp(prefix="entra-stand-in-"))
        weakref.finalize(self, shutil.rmtree, self._dir, ignore_errors=True)
        self.certificate_path = str(self._dir / "client-certificate.pem")
        """PEM holding the app's private key and certificate, for `CertificateCredential`."""
        client.private_key_and_cert_chain_pem.write_to_path(self.certificate_path)
        self._certificate = client.cert_chain_pems[0].bytes()
        self.federated_token = f"loopback-federated.{secrets.token_urlsafe(24)}"
        self.federated_token_file = str(self._dir / "federated-token")
        """The file AKS would mount (`AZURE_FEDERATED_TOKEN_FILE`)."""
        Path(self.federated_token_file).write_text(self.federated_token, encoding="utf-8")
        self._calls = 0
        self._discoveries = 0
        self._requests: list[EntraTokenRequest] = []
        self._faults = _FaultQueue()

    # -- pointing credentials here ---------------------------------------------

    @property
    def authority(self) -> str:
        """``https://127.0.0.1:PORT``: `AZURE_AUTHORITY_HOST` or `authority=` for a credential."""
        return self.base_url

    @property
    def token_url(self) -> str:
        """The token endpoint, ``{authority}/{tenant}/oauth2/v2.0/token``."""
        return f"{self.base_url}/{self.tenant}/oauth2/v2.0/token"

    def credential_kwargs(self) -> dict[str, Any]:
        """Keyword arguments that point an azure-identity credential here without the environment."""
        return {"authority": self.authority, "disable_instance_discovery": True, "connection_verify": self.ca_path}

    def env(self, kind: Literal["workload-identity", "secret", "certificate"]) -> dict[str, str]:
        """Variables for `WorkloadIdentityCredential` / `EnvironmentCredential` (secret or certificate).

        `REQUESTS_CA_BUNDLE` makes azure-identity's transport trust this stand-in;
        `DefaultAzureCredential` still needs `disable_instance_discovery=True`.
        """
        env = {
            "AZURE_AUTHORITY_HOST": self.authority,
            "AZURE_TENANT_ID": self.tenant,
            "AZURE_CLIENT_ID": self.client_id,
            "REQUESTS_CA_BUNDLE": self.ca_path,
        }
        if kind == "workload-identity":
            env["AZURE_FEDERATED_TOKEN_FILE"] = self.federated_token_file
        elif kind == "secret":
            env["AZURE_CLIENT_SECRET"] = self.client_secret
        elif kind == "certificate":
            env["AZURE_CLIENT_CERTIFICATE_PATH"] = self.certificate_path
        else:
            raise ValueError(f"kind must be 'workload-identity', 'secret' or 'certificate', not {kind!r}")
        return env

    def patched_env(
        self, kind: Literal["workload-identity", "secret", "certificate"]
    ) -> AbstractContextManager[dict[str, str]]:
        """`env(kind)` in `os.environ` for a `with` block (see `patched_environ`)."""
        return patched_environ(self.env(kind))

    # -- inspection and faults -------------------------------------------------

    @property
    def calls(self) -> int:
        """How many tokens were issued."""
        with self._lock:
            return self._calls

    @property
    def discoveries(self) -> int:
        """How many OpenID configuration documents were served."""
        with self._lock:
            return self._discoveries

    @property
    def requests(self) -> list[EntraTokenRequest]:
        """A snapshot of every token request seen, oldest first."""
        with self._lock:
            return list(self._requests)

    def fail_next(self, count: int = 1, status: int = 500, body: Mapping[str, object] | None = None) -> None:
        """Answer the next ``count`` token requests with ``status`` and an OAuth error body."""
        if body is None:
            body = {"error": "temporarily_unavailable", "error_description": "AADSTS50196: Injected failure"}
        self._faults.push(count, _Response.of_json(status, dict(body)))

    def set_lifetime(self, seconds: float) -> None:
        """Lifetime of tokens issued from now on."""
        with self._lock:
            self._lifetime = seconds

    # -- the endpoints -----------------------------------------------------------

    def _handle(self, request: _Request) -> _Response:
        prefix = f"/{self.tenant}"
        if request.method == "GET" and request.path == f"{prefix}/v2.0/.well-known/openid-configuration":
            with self._lock:
                self._discoveries += 1
            return _Response.of_json(200, self._openid_configuration())
        if request.path != f"{prefix}/oauth2/v2.0/token":
            if request.path.endswith("/.well-known/openid-configuration") or request.path.endswith("/token"):
                return _error(400, "invalid_tenant", "AADSTS90002", f"Tenant '{request.path.split('/')[1]}' not found.")
            return _Response.of_json(404, {"error": "not_found"})
        if request.method != "POST":
            return _Response.of_json(405, {"error": "invalid_request"})
        form = dict(parse_qsl(request.body.decode("utf-8", "replace"), keep_blank_values=True))
        client_auth = self._client_auth(form)
        response = self._faults.take() or self._token(form, client_auth)
        record = EntraTokenRequest(
            grant_type=form.get("grant_type", ""),
            client_id=form.get("client_id", ""),
            client_auth=client_auth,
            scope=form.get("scope", ""),
            claims=form.get("claims"),
            status=response.status,
            time=time.time(),
        )
        with self._lock:
            self._requests.append(record)
        return response

    def _openid_configuration(self) -> dict[str, object]:
        base = f"{self.base_url}/{self.tenant}"
        return {
            "token_endpoint": f"{base}/oauth2/v2.0/token",
            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
            "issuer": f"{base}/v2.0",
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "tenant_region_scope": "EU",
        }

    def _client_auth(self, form: Mapping[str, str]) -> ClientAuth | None:
        if "client_secret" in form:
            return "secret"
        assertion = form.get("client_assertion")
        if form.get("client_assertion_type") != _ASSERTION_TYPE or not assertion:
            return None
        return "federated" if assertion == self.federated_token else "certificate"

    def _token(self, form: Mapping[str, str], client_auth: ClientAuth | None) -> _Response:
        if form.get("grant_type") != "client_credentials":
            return _error(400, "unsupported_grant_type", "AADSTS70003", "The app requested an unsupported grant type.")
        if form.get("client_id") != self.client_id:
            return _error(
                400, "unauthorized_client", "AADSTS700016", f"Application '{form.get('client_id')}' was not found."
            )
        if client_auth is None:
            return _error(401, "invalid_client", "AADSTS7000218", "The request body must contain a client credential.")
        if client_auth == "secret" and not secrets.compare_digest(form["client_secret"], self.client_secret):
            return _error(401, "invalid_client", "AADSTS7000215", "Invalid client secret provided.")
        if client_auth == "certificate" and not self._valid_assertion(form["client_assertion"]):
            return _error(401, "invalid_client", "AADSTS700027", "Client assertion failed signature validation.")
        scope = form.get("scope", "")
        resources = [s for s in scope.split() if s.endswith("/.default")]
        if len(resources) != 1:
            return _error(400, "invalid_scope", "AADSTS1002012", f"The provided value for scope {scope} is not valid.")
        with self._lock:
            lifetime, refresh_in = self._lifetime, self._refresh_in
        claims: dict[str, object] = {"appid": self.client_id}
        if form.get("claims"):
            claims["xms_cc"] = ["CP1"]  # as Entra marks a token for a CAE-capable client
        token, expires_on = self.registry.issue(
            lifetime, audience=resources[0].removesuffix("/.default"), tenant=self.tenant, claims=claims
        )
        expires_in = max(expires_on - int(time.time()), 0)
        payload: dict[str, object] = {
            "token_type": "Bearer",
            "expires_in": expires_in,
            "ext_expires_in": expires_in,
            "access_token": token,
        }
        if refresh_in is not None:
            payload["refresh_in"] = int(refresh_in)
        with self._lock:
            self._calls += 1
        return _Response.of_json(200, payload)

    def _valid_assertion(self, assertion: str) -> bool:
        """Whether a client assertion is a JWT for this app and endpoint, signed by the app's certificate."""
        from cryptography import x509
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding, rsa
        from cryptography.hazmat.primitives.serialization import Encoding

        try:
            header_part, payload_part, signature_part = assertion.split(".")
            header = json.loads(_b64url_decode(header_part))
            payload = json.loads(_b64url_decode(payload_part))
            signature = _b64url_decode(signature_part)
        except ValueError:
            return False
        certificate = x509.load_pem_x509_certificate(self._certificate)
        der = certificate.public_bytes(Encoding.DER)
        thumbprints = {
            header.get("x5t"): hashlib.sha1(der).digest(),  # noqa: S324 - the header's legacy thumbprint
            header.get("x5t#S256"): hashlib.sha256(der).digest(),
        }
        if not any(sent and _b64url_decode(sent) == want for sent, want in thumbprints.items()):
            return False
        if payload.get("iss") != self.client_id or payload.get("sub") != self.client_id:
            return False
        if payload.get("aud") != self.token_url or float(payload.get("exp", 0)) < time.time():
            return False
        key = certificate.public_key()
        if not isinstance(key, rsa.RSAPublicKey):
            return False
        pad: padding.AsymmetricPadding = (
            padding.PSS(padding.MGF1(hashes.SHA256()), padding.PSS.DIGEST_LENGTH)
            if header.get("alg") == "PS256"
            else padding.PKCS1v15()
        )
        try:
            key.verify(signature, f"{header_part}.{payload_part}".encode("ascii"), pad, hashes.SHA256())
        except InvalidSignature:
            return False
        return True
