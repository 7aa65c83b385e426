"""A logging filter hiding credential headers that other libraries log.

openai's realtime API opens its websocket with the `websockets` package, which logs every
handshake header at DEBUG (`"> %s: %s"`, name and value as arguments) on the
`websockets.client` logger: `Authorization: Bearer <token>` included. The filter rewrites
such a record's arguments before any handler sees it; the providers and
`install_openai_session` put it on that logger when they are made.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable

__all__ = ["WEBSOCKETS_LOGGERS", "CredentialHeaderFilter", "hide_credentials_in_logs"]

# The loggers `websockets` writes a client's handshake to (its default; a `logger=` of your
# own passed to `connect()` needs the filter added by you).
WEBSOCKETS_LOGGERS = ("websockets.client",)
_HIDDEN = "<hidden>"
# Header names whose values are credentials (compared lower-cased).
_CREDENTIAL_HEADERS = frozenset({"authorization", "proxy-authorization", "api-key"})
# A bearer token in a value, wherever it stands in a string.
_SCHEME_VALUE = re.compile(r"(?i)\b(bearer)\s+[^\s'\",]+")
_lock = threading.Lock()


class CredentialHeaderFilter(logging.Filter):
    """Hide credential header values in log records (`logging.Filter`; never drops a record).

    An argument that follows a credential header's name (`Authorization`,
    `Proxy-Authorization`, `api-key`: websockets logs `"> %s: %s"` with the name and the
    value as arguments) becomes `<hidden>`; any string argument, and the message itself,
    has `Bearer <token>` rewritten to `Bearer <hidden>`.

    ```python
    import logging
    from azure_ad_token_auth import CredentialHeaderFilter

    logging.getLogger("my.websocket.logger").addFilter(CredentialHeaderFilter())
    ```
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and _SCHEME_VALUE.search(record.msg):
            record.msg = _SCHEME_VALUE.sub(r"\1 " + _HIDDEN, record.msg)
        args = record.args
        if isinstance(args, tuple) and args:
            record.args = tuple(_hidden_args(args))
        return True


def _hidden_args(args: tuple[object, ...]) -> Iterable[object]:
    after_name = False
    for arg in args:
        if isinstance(arg, str):
            if after_name:
                yield _HIDDEN
            else:
                yield _SCHEME_VALUE.sub(r"\1 " + _HIDDEN, arg)
            after_name = arg.strip().lower() in _CREDENTIAL_HEADERS
        else:
            yield arg
            after_name = False


def hide_credentials_in_logs(names: Iterable[str] = WEBSOCKETS_LOGGERS) -> None:
    """Put one `CredentialHeaderFilter` on each logger named (once: calling again adds none)."""
    with _lock:
        for name in names:
            logger = logging.getLogger(name)
            if not any(isinstance(f, CredentialHeaderFilter) for f in logger.filters):
                logger.addFilter(CredentialHeaderFilter())
