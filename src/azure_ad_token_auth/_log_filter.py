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
# A credential header's value after its name, however the record spells it: websockets'
# `"> %s: %s"`, a mapping's repr (`'Authorization': 'Bearer ...'`), bytes (`b'api-key': b'...'`),
# `name=value`. The value is one or two words (`Bearer <token>`): hiding a word too many is safe.
_HEADER_VALUE = re.compile(
    r"""(?ix)
    \b((?:proxy-)?authorization|api-key)     # the name
    (['"]?\s*[:=,]+\s*)                     # its separator(s), after a mapping's closing quote
    ((?:b(?=['"]))?['"]?)                   # the value's opening quote (bytes': b')
    [^\s'",}\]]+(?:\s+[^\s'",}\]]+)?       # the value
    """
)
# A bearer token in a value, wherever it stands in a string.
_SCHEME_VALUE = re.compile(r"(?i)\b(bearer)\s+[^\s'\",]+")
_lock = threading.Lock()


class CredentialHeaderFilter(logging.Filter):
    """Hide credential header values in log records (`logging.Filter`; never drops a record).

    The record is rendered (its message with its arguments, whatever their types: strings,
    bytes, a header mapping), and the value after a credential header's name
    (`Authorization`, `Proxy-Authorization`, `api-key`) becomes `<hidden>`, as does the token
    of any `Bearer <token>`. A record that changes keeps the rendered text, without arguments.

    ```python
    import logging
    from azure_ad_token_auth import CredentialHeaderFilter

    logging.getLogger("my.websocket.logger").addFilter(CredentialHeaderFilter())
    ```

    A filter on a logger sees only that logger's own records, not its children's: on a
    handler it sees every record the handler writes.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a record that cannot render: logging reports it when emitting
            return True
        hidden = _HEADER_VALUE.sub(r"\1\2\3" + _HIDDEN, _SCHEME_VALUE.sub(r"\1 " + _HIDDEN, message))
        if hidden != message:
            record.msg, record.args = hidden, None
        return True


def hide_credentials_in_logs(names: Iterable[str] = WEBSOCKETS_LOGGERS) -> None:
    """Put one `CredentialHeaderFilter` on each logger named (once: calling again adds none)."""
    with _lock:
        for name in names:
            logger = logging.getLogger(name)
            if not any(isinstance(f, CredentialHeaderFilter) for f in logger.filters):
                logger.addFilter(CredentialHeaderFilter())
