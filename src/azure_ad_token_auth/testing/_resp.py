"""Just enough of the Redis protocol (RESP) for the Azure Redis stand-in's front.

- `CommandReader`: splits the bytes a client sends into whole commands (arrays of bulk
  strings, as every client library sends them, or inline commands), so the front can
  read each command's name and arguments and pass the bytes on unchanged.
- `encode_command`: a command as the array of bulk strings a client would send.
- `ReplyReader`: replies from a blocking socket, one at a time (the front's admin
  connection only: the replies to clients are relayed as bytes, never parsed).
"""

from __future__ import annotations

import socket

__all__ = ["Command", "CommandReader", "ProtocolError", "ReplyError", "ReplyReader", "encode_command"]

# A client would never send more than this in one argument; past it, the stream is garbage.
_LONGEST = 512 * 1024 * 1024


class ProtocolError(ValueError):
    """The bytes are not the Redis protocol."""


class ReplyError(Exception):
    """The server answered an admin command with an error (`-ERR ...`)."""


class Command:
    """One whole command from a client: its bytes as sent, and its arguments."""

    __slots__ = ("args", "raw")

    def __init__(self, raw: bytes, args: list[bytes]) -> None:
        self.raw = raw
        self.args = args

    @property
    def name(self) -> str:
        """The command's name, upper case (`""` for an empty inline line)."""
        return self.args[0].decode("latin-1").upper() if self.args else ""


class CommandReader:
    """Feed it bytes as they arrive; it hands back each command once it is whole."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Command]:
        self._buffer += data
        commands: list[Command] = []
        while self._buffer:
            parsed = self._parse()
            if parsed is None:
                break
            end, args = parsed
            commands.append(Command(bytes(self._buffer[:end]), args))
            del self._buffer[:end]
        return commands

    def _parse(self) -> tuple[int, list[bytes]] | None:
        buffer = self._buffer
        if buffer[0:1] != b"*":
            line_end = buffer.find(b"\n")
            if line_end < 0:
                return None
            return line_end + 1, bytes(buffer[:line_end]).strip().split()
        header_end = buffer.find(b"\r\n")
        if header_end < 0:
            return None
        count = _number(buffer[1:header_end])
        position, args = header_end + 2, []
        for _ in range(count):
            if buffer[position : position + 1] == b"":
                return None
            if buffer[position : position + 1] != b"$":
                raise ProtocolError("a command's arguments must be bulk strings")
            length_end = buffer.find(b"\r\n", position)
            if length_end < 0:
                return None
            length = _number(buffer[position + 1 : length_end])
            start = length_end + 2
            if len(buffer) < start + length + 2:
                return None
            args.append(bytes(buffer[start : start + length]))
            position = start + length + 2
        return position, args


def _number(text: bytes | bytearray) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ProtocolError(f"expected a length, got {bytes(text)[:20]!r}") from None
    if not 0 <= value <= _LONGEST:
        raise ProtocolError(f"length out of range: {value}")
    return value


def encode_command(*args: str | bytes) -> bytes:
    """The array of bulk strings a client sends for `args`."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg.encode() if isinstance(arg, str) else arg
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


class ReplyReader:
    """RESP2 replies from a blocking socket: `reply()` reads the next one."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buffer = bytearray()

    def line(self) -> bytes:
        while b"\r\n" not in self._buffer:
            self._more()
        line, _, rest = bytes(self._buffer).partition(b"\r\n")
        self._buffer[:] = rest
        return line

    def exactly(self, count: int) -> bytes:
        while len(self._buffer) < count:
            self._more()
        data = bytes(self._buffer[:count])
        del self._buffer[:count]
        return data

    def _more(self) -> None:
        chunk = self._sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        self._buffer += chunk

    def reply(self) -> object:
        """The next reply; `ReplyError` for an error reply."""
        line = self.line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise ReplyError(rest.decode(errors="replace"))
        if kind == b":":
            return int(rest)
        if kind == b"$":
            length = int(rest)
            return None if length < 0 else self.exactly(length + 2)[:-2]
        if kind == b"*":
            count = int(rest)
            return None if count < 0 else [self.reply() for _ in range(count)]
        raise ProtocolError(f"unexpected reply {line[:20]!r}")
