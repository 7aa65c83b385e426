"""What a `TokenCache` asks of where its tokens come from: the `Binding` protocol.

Two bindings keep it: `_credential.CredentialBinding` (one credential, asked directly)
and `_store.SharedBinding` (the same, sharing its tokens through the cross-process
store). The cache is typed against this protocol alone, so neither copies the other's
members by convention only: a type checker holds both to it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Callable

    from ._credential import TokenInfo

__all__ = ["Binding"]


class Binding(Protocol):
    """What a `TokenCache` asks of where its tokens come from (`CredentialBinding`, or the
    shared store's `SharedBinding` wrapping one), and nothing more."""

    @property
    def credential(self) -> Any:
        """The credential (None until `bind()` creates the default one)."""

    @property
    def bound(self) -> bool:
        """Whether the credential exists."""

    @property
    def is_async(self) -> bool:
        """Whether `fetch_async` is the method to use."""

    @property
    def name(self) -> str:
        """`"ClassName.method()"`, for messages and logs."""

    @property
    def calls(self) -> int:
        """Calls started on the credential."""

    @property
    def store_hits(self) -> int:
        """Fetches answered by a shared store without a credential call."""

    def bind(self) -> None:
        """Create the default credential if none was given (the caller serializes it)."""

    def anew(self) -> Binding:
        """This binding as made, the credential given kept (the testing kit's reset): the default
        credential the library made is closed, and made again on first use."""

    def fetch(self, claims: str | None, *, loop: asyncio.AbstractEventLoop | None = None) -> TokenInfo:
        """A checked token from a sync credential (`loop`: the async caller's, if any)."""

    async def fetch_async(self, claims: str | None) -> TokenInfo:
        """A checked token from an async credential."""

    def rejected(self, token: str) -> None:
        """A service refused `token` (a 401)."""

    def after_landing(self) -> Callable[[], None] | None:
        """Work left once a renewal's token has reached everyone waiting for it (the shared
        store's clean-up), or None. It may read files: the renewal's thread runs it, or, for an
        async credential, the event loop's default executor, never the loop itself."""
