"""What keep-fresh and prefetch need of a token cache (`TokenSource`), and nothing more."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ._state import CachedToken

__all__ = ["TokenSource"]


class TokenSource(Protocol):
    """A cache as keep-fresh and prefetch see it (`TokenCache` is one)."""

    @property
    def current(self) -> CachedToken | None:
        """The token held now (read without a lock), or None."""

    @property
    def renewing(self) -> bool:
        """Whether a credential call started in a thread has not returned yet (a hung one included)."""

    @property
    def is_async(self) -> bool:
        """Whether tokens come from an async credential (only `get_token_async` can fetch them)."""

    def get_token(self) -> str:
        """A valid token, renewing it if due."""

    async def get_token_async(self) -> str:
        """`get_token` for coroutines."""
