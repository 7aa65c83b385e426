"""The Redis stand-in's protocol reader: whole commands out of bytes as they arrive."""

from __future__ import annotations

import socket

import pytest

from azure_ad_token_auth.testing._resp import CommandReader, ProtocolError, ReplyError, ReplyReader, encode_command


def test_commands_split_anywhere_come_out_whole_and_unchanged() -> None:
    stream = encode_command("AUTH", "user", "token") + b"PING\r\n" + encode_command("SET", b"k", b"\x00\r\nv")
    for cut in range(1, len(stream)):
        reader = CommandReader()
        commands = reader.feed(stream[:cut]) + reader.feed(stream[cut:])
        assert [c.args for c in commands] == [[b"AUTH", b"user", b"token"], [b"PING"], [b"SET", b"k", b"\x00\r\nv"]]
        assert b"".join(c.raw for c in commands) == stream
        assert [c.name for c in commands] == ["AUTH", "PING", "SET"]


def test_an_empty_inline_line_is_a_command_without_a_name() -> None:
    (command,) = CommandReader().feed(b"\r\n")
    assert command.name == "" and command.args == []


@pytest.mark.parametrize("garbage", [b"*x\r\n", b"*1\r\n:5\r\n", b"*1\r\n$-3\r\n", b"*1\r\n$99999999999\r\n"])
def test_what_is_not_the_protocol_is_refused(garbage: bytes) -> None:
    with pytest.raises(ProtocolError):
        CommandReader().feed(garbage)


def test_replies_of_every_kind_are_read_one_at_a_time() -> None:
    left, right = socket.socketpair()
    with left, right:
        right.sendall(b"+OK\r\n:42\r\n$3\r\nabc\r\n$-1\r\n*2\r\n+a\r\n$1\r\nb\r\n*-1\r\n-ERR no\r\n")
        replies = ReplyReader(left)
        assert [replies.reply() for _ in range(6)] == ["OK", 42, b"abc", None, ["a", b"b"], None]
        with pytest.raises(ReplyError, match="ERR no"):
            replies.reply()
        right.sendall(b"?what\r\n")
        with pytest.raises(ProtocolError):
            replies.reply()
        right.close()
        with pytest.raises(ConnectionError):
            replies.reply()
