"""The hostile mail servers misbehave exactly as described, survive any client, and stop cleanly.

Every test drives a server with a raw asyncio client, runs under a few seconds' budget, and ends by
checking that no task is left behind once the server is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

import dns.asyncresolver
import dns.rdatatype
import dns.resolver
import pytest
from cio_sandbox import Observatory, World
from cio_sandbox.dns_server import start_dns
from cio_sandbox.hostile_smtp import (
    BEHAVIOURS,
    MAX_COMMANDS,
    MAX_LINE,
    HostileSmtp,
    add_hostile_zone,
    start_hostile_fleet,
    start_hostile_smtp,
)

BANNER = b"220 hostile.example ESMTP\r\n"
EHLO_REPLY = b"250-hostile.example\r\n250 ENHANCEDSTATUSCODES\r\n"
ENDLESS_LINE = b"250-X" + b"-" * 60 + b"\r\n"
#: Parameters that make every behaviour quick enough for a test.
QUICK: dict[str, dict[str, Any]] = {
    "slow_banner": {"delay": 0.2},
    "trickle": {"byte_delay": 0.01},
    "just_under": {"delay": 0.2},
    "rcpt_code": {"reply": "600 odd"},
    "many_lines": {"lines": 50},
}
Reader = asyncio.StreamReader
Writer = asyncio.StreamWriter


def run(body: Callable[[], Awaitable[None]], budget: float = 5.0) -> None:
    """Run one test body under a time budget; afterwards no task may be left pending."""

    async def main() -> None:
        async with asyncio.timeout(budget):
            await body()
        left = asyncio.all_tasks() - {asyncio.current_task()}
        assert not left, f"tasks left pending: {left}"

    asyncio.run(main())


async def connect(server: HostileSmtp) -> tuple[Reader, Writer]:
    return await asyncio.open_connection(server.host, server.port)


async def reply(reader: Reader, timeout: float = 1.0) -> bytes:
    """One whole SMTP reply (every line up to the first without a hyphen), as received."""
    data = b""
    async with asyncio.timeout(timeout):
        while True:
            line = await reader.readline()
            assert line.endswith(b"\r\n"), data + line
            data += line
            if line[3:4] != b"-":
                return data


async def talk(reader: Reader, writer: Writer, line: bytes) -> bytes:
    writer.write(line)
    await writer.drain()
    return await reply(reader)


async def hang_up(writer: Writer) -> None:
    writer.close()
    with contextlib.suppress(ConnectionError, OSError):
        await writer.wait_closed()


async def until_closed(reader: Reader, timeout: float = 1.0) -> bytes:
    """Everything the server still sends until it closes (a reset counts as closed)."""
    data = b""
    async with asyncio.timeout(timeout):
        with contextlib.suppress(ConnectionError):
            while chunk := await reader.read(1 << 20):
                data += chunk
    return data


async def sessions_end(server: HostileSmtp, timeout: float = 1.0) -> None:
    async with asyncio.timeout(timeout):
        while server.open_connections:
            await asyncio.sleep(0.01)


async def nothing_for(reader: Reader, seconds: float) -> None:
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(seconds):
            await reader.read(1)


# ------------------------------------------------------------------------------ the API itself
def test_behaviours_are_the_documented_ones() -> None:
    assert set(BEHAVIOURS) == {
        "silent",
        "slow_banner",
        "endless_ehlo",
        "huge_line",
        "trickle",
        "just_under",
        "rcpt_code",
        "echo",
        "many_lines",
        "drop_after_banner",
        "pipelining_fewer",
        "pipelining_more",
        "pipelining_strict",
        "no_pipelining",
        "rset_refused",
        "drop_mid_transaction",
    }
    assert all(isinstance(text, str) and "\n" not in text for text in BEHAVIOURS.values())


def test_bad_behaviours_parameters_and_hosts_are_value_errors() -> None:
    async def body() -> None:
        with pytest.raises(ValueError, match=r"'polite'.*silent.*drop_after_banner"):
            await start_hostile_smtp("polite")
        with pytest.raises(ValueError, match="delays"):
            await start_hostile_smtp("slow_banner", delays=1.0)
        with pytest.raises(ValueError, match="delay"):
            await start_hostile_smtp("just_under")
        with pytest.raises(ValueError, match="reply"):
            await start_hostile_smtp("rcpt_code")
        with pytest.raises(ValueError, match="byte_delay"):
            await start_hostile_smtp("trickle", byte_delay=-1)
        with pytest.raises(ValueError, match="lines"):
            await start_hostile_smtp("many_lines", lines=2.5)
        with pytest.raises(ValueError, match="parameter"):
            await start_hostile_smtp("echo", delay=1)
        with pytest.raises(ValueError, match="missing"):
            await start_hostile_smtp("pipelining_fewer", missing=0)
        with pytest.raises(ValueError, match="after"):
            await start_hostile_smtp("drop_mid_transaction", after="2")
        with pytest.raises(ValueError, match="pipelining"):
            await start_hostile_smtp("rset_refused", pipelining=1)
        with pytest.raises(ValueError, match="parameter"):
            await start_hostile_smtp("pipelining_more", pipelining=True)
        for host in ("0.0.0.0", "10.0.0.1", "::"):
            with pytest.raises(ValueError, match="loopback"):
                await start_hostile_smtp("echo", host=host)

    run(body)


def test_defaults_and_context_manager() -> None:
    async def body() -> None:
        async with await start_hostile_smtp("trickle") as server:
            assert server.settings.byte_delay == 1.0
            assert (server.host, server.connections, server.commands, server.bytes_sent) == (
                "127.0.0.1",
                0,
                [],
                0,
            )
            assert server.port > 0
        async with await start_hostile_smtp("many_lines") as server:
            assert server.settings.lines == 10_000
        with pytest.raises(ConnectionRefusedError):
            await connect(server)  # closed on leaving the block

    run(body)


# ------------------------------------------------------------------------------ the ordinary server
def test_echo_is_an_ordinary_accepting_server_and_records_every_line() -> None:
    async def body() -> None:
        async with await start_hostile_smtp("echo") as server:
            reader, writer = await connect(server)
            assert await reply(reader) == BANNER
            sent = [
                (b"EHLO me.example\r\n", EHLO_REPLY),
                (b"HELO me.example\r\n", b"250 hostile.example\r\n"),
                (b"MAIL FROM:<probe@me.example>\r\n", b"250 2.1.0 OK\r\n"),
                (b"RCPT TO:<anyone@hostile.example>\r\n", b"250 2.1.5 OK\r\n"),
                (b"rcpt to:<lower@hostile.example>\r\n", b"250 2.1.5 OK\r\n"),
                (b"NOOP\r\n", b"250 2.0.0 OK\r\n"),
                (b"RSET\r\n", b"250 2.0.0 OK\r\n"),
                (b"VRFY x\r\n", b"252 2.5.2 Cannot VRFY user\r\n"),
                (b"STARTTLS\r\n", b"502 5.5.1 STARTTLS not offered\r\n"),
                (b"XYZZY\r\n", b"500 5.5.2 Command unrecognized\r\n"),
                (b"DATA\r\n", b"354 End data with <CR><LF>.<CR><LF>\r\n"),
                (b"Subject: x\r\n\r\n.\r\n", b"250 2.0.0 OK queued\r\n"),
            ]
            for line, expected in sent:
                assert await talk(reader, writer, line) == expected, line
            assert await talk(reader, writer, b"QUIT\r\n") == b"221 2.0.0 Bye\r\n"
            assert await until_closed(reader) == b""
            await hang_up(writer)
            data_lines = [b"Subject: x\r\n", b"\r\n", b".\r\n"]
            assert server.commands == [line for line, _ in sent[:-1]] + data_lines + [b"QUIT\r\n"]
            assert server.connections == 1
            expected_bytes = len(BANNER) + sum(len(r) for _, r in sent) + len(b"221 2.0.0 Bye\r\n")
            assert server.bytes_sent == expected_bytes
            await sessions_end(server)

    run(body)


def test_echo_shows_injected_line_breaks_as_separate_lines() -> None:
    async def body() -> None:
        async with await start_hostile_smtp("echo") as server:
            reader, writer = await connect(server)
            await reply(reader)
            writer.write(b"EHLO a\r\nRCPT TO:<x>\r\n")  # one write, two commands
            assert await reply(reader) == EHLO_REPLY
            assert await reply(reader) == b"250 2.1.5 OK\r\n"
            writer.write(b"NOOP\nRCPT TO:<y>\r\n")  # a bare LF ends a line too
            assert await reply(reader) == b"250 2.0.0 OK\r\n"
            assert await reply(reader) == b"250 2.1.5 OK\r\n"
            writer.write(b"NOOP a\rRCPT TO:<z>\r\n")  # a bare CR does not
            assert await reply(reader) == b"250 2.0.0 OK\r\n"
            writer.write(b"NOOP\x00RCPT TO:<w>\r\n")  # nor does a NUL
            assert await reply(reader) == b"500 5.5.2 Command unrecognized\r\n"
            writer.write(b"half a line")  # received, recorded, never answered
            await writer.drain()
            writer.write_eof()
            assert await until_closed(reader) == b""
            await hang_up(writer)
            await sessions_end(server)
            assert server.commands == [
                b"EHLO a\r\n",
                b"RCPT TO:<x>\r\n",
                b"NOOP\n",
                b"RCPT TO:<y>\r\n",
                b"NOOP a\rRCPT TO:<z>\r\n",
                b"NOOP\x00RCPT TO:<w>\r\n",
                b"half a line",
            ]

    run(body)


def test_an_overlong_line_is_recorded_in_pieces_and_refused_once() -> None:
    async def body() -> None:
        async with await start_hostile_smtp("echo") as server:
            reader, writer = await connect(server)
            await reply(reader)
            line = b"RCPT TO:<" + b"a" * (3 * MAX_LINE) + b">\r\n"
            writer.write(line)
            assert await reply(reader) == b"500 5.5.6 Line too long\r\n"
            assert await talk(reader, writer, b"NOOP\r\n") == b"250 2.0.0 OK\r\n"
            assert b"".join(server.commands[:-1]) == line
            assert all(len(piece) <= MAX_LINE for piece in server.commands)
            assert len(server.commands) == 5  # 4 pieces of the long line, then NOOP
            await hang_up(writer)

    run(body)


def test_garbage_gets_500_and_the_session_goes_on() -> None:
    async def body() -> None:
        async with await start_hostile_smtp("echo") as server:
            reader, writer = await connect(server)
            await reply(reader)
            for junk in (b"\x00\xff\xfe\x80\r\n", b"\r\n", b"   \r\n", b"\x1b[2J\r\n"):
                assert await talk(reader, writer, junk) == b"500 5.5.2 Command unrecognized\r\n"
            assert await talk(reader, writer, b"EHLO x\r\n") == EHLO_REPLY
            await hang_up(writer)

    run(body)


def test_commands_are_capped() -> None:
    async def body() -> None:
        async with await start_hostile_smtp("silent") as server:
            _, writer = await connect(server)
            writer.write(b"NOOP\r\n" * (MAX_COMMANDS + 50))
            await writer.drain()
            await hang_up(writer)
            await sessions_end(server)
            assert len(server.commands) == MAX_COMMANDS
            assert set(server.commands) == {b"NOOP\r\n"}

    run(body)


# ------------------------------------------------------------------------------ each misbehaviour
def test_silent_reads_and_never_sends() -> None:
    async def body() -> None:
        async with await start_hostile_smtp("silent") as server:
            reader, writer = await connect(server)
            writer.write(b"EHLO x\r\n")
            await nothing_for(reader, 0.3)
            assert server.commands == [b"EHLO x\r\n"]
            assert server.bytes_sent == 0
            assert server.open_connections == 1
            await hang_up(writer)
            await sessions_end(server)

    run(body)


def test_slow_banner_waits_then_behaves() -> None:
    async def body() -> None:
        async with await start_hostile_smtp("slow_banner", delay=0.5) as server:
            start = time.monotonic()
            reader, writer = await connect(server)
            assert await reply(reader) == BANNER
            assert time.monotonic() - start >= 0.49
            start = time.monotonic()
            assert await talk(reader, writer, b"EHLO x\r\n") == EHLO_REPLY
            assert time.monotonic() - start < 0.4  # not delayed again
            await hang_up(writer)
            assert server.bytes_sent == len(BANNER) + len(EHLO_REPLY)
        async with await start_hostile_smtp("slow_banner", delay=30) as server:
            _, writer = await connect(server)  # gives up during the wait
            await asyncio.sleep(0.05)
            await hang_up(writer)
            await sessions_end(server)  # the session ends then, not after the delay
            assert server.bytes_sent == 0

    run(body)


def test_endless_ehlo_streams_continuation_lines_at_the_clients_pace() -> None:
    async def body() -> None:
        async with await start_hostile_smtp("endless_ehlo") as server:
            reader, writer = await connect(server)
            await reply(reader)
            writer.write(b"EHLO x\r\n")
            assert await reader.readline() == b"250-hostile.example\r\n"
            received = 0
            while received < 1_000_000:
                line = await reader.readline()
                assert line == ENDLESS_LINE
                received += len(line)
            # The client stops reading: backpressure stops the server soon after.
            await asyncio.sleep(0.2)
            stalled = server.bytes_sent
            await asyncio.sleep(0.1)
            assert server.bytes_sent == stalled
            assert received < stalled < received + 32 * 1024 * 1024
            await hang_up(writer)
            await sessions_end(server)

    run(body)


def test_huge_line_never_ends_its_line() -> None:
    async def body() -> None:
        async with await start_hostile_smtp("huge_line") as server:
            reader, writer = await connect(server)
            await reply(reader)
            writer.write(b"EHLO x\r\n")
            data = b""
            while len(data) < 1_000_000:
                data += await reader.read(1 << 16)
            assert data.startswith(b"250 hostile.example xxx")
            assert b"\n" not in data and b"\r" not in data
            await hang_up(writer)
            await sessions_end(server)
            assert server.bytes_sent >= len(BANNER) + 1_000_000

    run(body)


def test_trickle_sends_one_byte_at_a_time() -> None:
    async def body() -> None:
        async with await start_hostile_smtp("trickle", byte_delay=0.01) as server:
            start = time.monotonic()
            reader, writer = await connect(server)
            pieces: list[bytes] = []
            while sum(map(len, pieces)) < len(BANNER):
                pieces.append(await reader.read(100))
            assert b"".join(pieces) == BANNER
            assert time.monotonic() - start >= 0.01 * (len(BANNER) - 1) * 0.9
            assert len(pieces) >= len(BANNER) // 3  # many small pieces, not one write
            await hang_up(writer)
        async with await start_hostile_smtp("trickle", byte_delay=30) as server:
            reader, writer = await connect(server)
            assert await reader.read(100) == b"2"  # mid-reply, the client hangs up
            await hang_up(writer)
            await sessions_end(server)  # the session ends then, not 30 s later
            assert server.bytes_sent == 1

    run(body)


def test_just_under_delays_every_reply_whole() -> None:
    async def body() -> None:
        async with await start_hostile_smtp("just_under", delay=0.2) as server:
            start = time.monotonic()
            reader, writer = await connect(server)
            await nothing_for(reader, 0.15)
            assert await reply(reader) == BANNER
            assert 0.19 <= time.monotonic() - start < 0.6
            start = time.monotonic()
            writer.write(b"EHLO x\r\n")
            assert await reader.read(1000) == EHLO_REPLY  # whole, in one piece
            assert time.monotonic() - start >= 0.19
            await hang_up(writer)
        async with await start_hostile_smtp("just_under", delay=30) as server:
            _, writer = await connect(server)  # the client gives up during the wait
            await asyncio.sleep(0.05)
            await hang_up(writer)
            await sessions_end(server)  # the session ends then, not 30 s later

    run(body)


@pytest.mark.parametrize(
    ("configured", "expected"),
    [
        ("600 odd", b"600 odd\r\n"),
        ("999 what", b"999 what\r\n"),
        ("354 go ahead", b"354 go ahead\r\n"),
        ("299 ok", b"299 ok\r\n"),
        ("25 short", b"25 short\r\n"),
        ("2x0 bad", b"2x0 bad\r\n"),
        ("550-first\r\n451 second", b"550-first\r\n451 second\r\n"),
        (b"250 bytes too\r\n", b"250 bytes too\r\n"),
        ("", b"\r\n"),
    ],
)
def test_rcpt_code_answers_rcpt_with_the_reply_given(
    configured: str | bytes, expected: bytes
) -> None:
    async def body() -> None:
        async with await start_hostile_smtp("rcpt_code", reply=configured) as server:
            reader, writer = await connect(server)
            assert await reply(reader) == BANNER
            assert await talk(reader, writer, b"EHLO x\r\n") == EHLO_REPLY
            assert await talk(reader, writer, b"MAIL FROM:<>\r\n") == b"250 2.1.0 OK\r\n"
            writer.write(b"RCPT TO:<a@hostile.example>\r\n")
            async with asyncio.timeout(1):
                assert await reader.readexactly(len(expected)) == expected
            # Nothing else came with it: the next reply is the next command's.
            assert await talk(reader, writer, b"QUIT\r\n") == b"221 2.0.0 Bye\r\n"
            await hang_up(writer)

    run(body)


@pytest.mark.parametrize("lines", [10_000, 3, 1])
def test_many_lines_answers_ehlo_with_a_huge_but_legitimate_reply(lines: int) -> None:
    async def body() -> None:
        params: dict[str, Any] = {} if lines == 10_000 else {"lines": lines}
        async with await start_hostile_smtp("many_lines", **params) as server:
            reader, writer = await connect(server)
            await reply(reader)
            writer.write(b"EHLO x\r\n")
            got = (await reply(reader)).splitlines(keepends=True)
            assert got[0] == b"250-hostile.example\r\n"
            assert got[-1] == b"250 OK\r\n"
            assert len(got) == lines + 1
            assert all(line.startswith(b"250-") for line in got[:-1])
            assert await talk(reader, writer, b"NOOP\r\n") == b"250 2.0.0 OK\r\n"
            await hang_up(writer)

    run(body)


def test_drop_after_banner_closes_after_the_banner() -> None:
    async def body() -> None:
        async with await start_hostile_smtp("drop_after_banner") as server:
            for _ in range(2):
                reader, writer = await connect(server)
                assert await until_closed(reader) == BANNER
                await hang_up(writer)
            await sessions_end(server)
            assert server.connections == 2
            assert server.bytes_sent == 2 * len(BANNER)

    run(body)


# -------------------------------------------------------------------------- pipelining (issue 19)
EHLO_PIPELINING = b"250-hostile.example\r\n250-PIPELINING\r\n250 ENHANCEDSTATUSCODES\r\n"
MAIL_OK = b"250 2.1.0 OK\r\n"
RCPT_OK = b"250 2.1.5 OK\r\n"
RSET_OK = b"250 2.0.0 OK\r\n"


def burst(count: int, *, mail: bool = True) -> bytes:
    """MAIL FROM (unless told not to) and `count` RCPTs, for one write."""
    rcpts = b"".join(b"RCPT TO:<r%d@hostile.example>\r\n" % k for k in range(count))
    return (b"MAIL FROM:<probe@me.example>\r\n" if mail else b"") + rcpts


async def ehlo_session(
    server: HostileSmtp, expected: bytes = EHLO_PIPELINING
) -> tuple[Reader, Writer]:
    """Connected, banner read and EHLO answered as `expected`."""
    reader, writer = await connect(server)
    assert await reply(reader) == BANNER
    assert await talk(reader, writer, b"EHLO me.example\r\n") == expected
    return reader, writer


def test_pipelining_fewer_leaves_one_rcpt_of_each_transaction_unanswered() -> None:
    async def body() -> None:
        async with await start_hostile_smtp("pipelining_fewer") as server:
            reader, writer = await ehlo_session(server)
            writer.write(burst(3))
            assert await reply(reader) == MAIL_OK
            assert await reply(reader) == RCPT_OK
            assert await reply(reader) == RCPT_OK  # the third RCPT's; the second's never comes
            await nothing_for(reader, 0.3)
            # A client that goes on reads the next reply as the one it is missing.
            assert await talk(reader, writer, b"RSET\r\n") == RSET_OK
            writer.write(burst(1))  # a new transaction: only its second RCPT goes unanswered
            assert await reply(reader) == MAIL_OK
            assert await reply(reader) == RCPT_OK
            await hang_up(writer)
            assert server.commands[1:5] == burst(3).splitlines(keepends=True)
        async with await start_hostile_smtp("pipelining_fewer", missing=1) as server:
            reader, writer = await ehlo_session(server)
            writer.write(burst(2))
            assert await reply(reader) == MAIL_OK
            assert await reply(reader) == RCPT_OK
            await nothing_for(reader, 0.2)
            await hang_up(writer)
            await sessions_end(server)

    run(body)


def test_pipelining_more_sends_one_reply_too_many_per_transaction() -> None:
    async def body() -> None:
        async with await start_hostile_smtp("pipelining_more") as server:
            reader, writer = await ehlo_session(server)
            writer.write(burst(3))
            replies = [await reply(reader) for _ in range(5)]
            assert replies == [MAIL_OK, RCPT_OK, RCPT_OK, RCPT_OK, RCPT_OK]  # 3 RCPTs, 4 replies
            await nothing_for(reader, 0.2)
            # Everything after is off by one: RSET's reply is the extra 250 2.1.5 already read.
            assert await talk(reader, writer, b"RSET\r\n") == RSET_OK
            writer.write(burst(1))  # one RCPT, sent alone: its reply, then the extra one
            assert [await reply(reader) for _ in range(3)] == [MAIL_OK, RCPT_OK, RCPT_OK]
            assert await talk(reader, writer, b"RCPT TO:<again@hostile.example>\r\n") == RCPT_OK
            await nothing_for(reader, 0.2)  # once per transaction
            await hang_up(writer)
            await sessions_end(server)

    run(body)


def test_pipelining_strict_refuses_commands_sent_before_the_previous_reply() -> None:
    async def body() -> None:
        async with await start_hostile_smtp("pipelining_strict") as server:
            reader, writer = await ehlo_session(server, EHLO_REPLY)  # no PIPELINING
            assert await talk(reader, writer, b"MAIL FROM:<probe@me.example>\r\n") == MAIL_OK
            writer.write(burst(3, mail=False))
            refused = b"554 5.5.0 pipelining not allowed\r\n"
            assert [await reply(reader) for _ in range(3)] == [RCPT_OK, refused, refused]
            # Line by line, the same commands are fine.
            for _ in range(2):
                assert await talk(reader, writer, b"RCPT TO:<x@hostile.example>\r\n") == RCPT_OK
            assert await talk(reader, writer, b"RSET\r\n") == RSET_OK
            writer.write(burst(1))  # MAIL arrives in turn; its RCPT before MAIL's reply
            assert [await reply(reader) for _ in range(2)] == [MAIL_OK, refused]
            await hang_up(writer)
            assert server.commands.count(b"RCPT TO:<r1@hostile.example>\r\n") == 1

    run(body)


def test_no_pipelining_answers_a_burst_line_by_line() -> None:
    async def body() -> None:
        async with await start_hostile_smtp("no_pipelining") as server:
            reader, writer = await ehlo_session(server, EHLO_REPLY)
            writer.write(burst(3) + b"RSET\r\n")
            replies = [await reply(reader) for _ in range(5)]
            assert replies == [MAIL_OK, RCPT_OK, RCPT_OK, RCPT_OK, RSET_OK]
            await hang_up(writer)
            assert server.commands[1:] == (burst(3) + b"RSET\r\n").splitlines(keepends=True)

    run(body)


def test_rset_refused_keeps_the_transaction() -> None:
    async def body() -> None:
        async with await start_hostile_smtp("rset_refused") as server:
            reader, writer = await ehlo_session(server)
            writer.write(burst(2) + b"RSET\r\nMAIL FROM:<probe@me.example>\r\n")
            replies = [await reply(reader) for _ in range(5)]
            assert replies == [
                MAIL_OK,
                RCPT_OK,
                RCPT_OK,
                b"502 5.5.2 Error: command not recognized\r\n",
                b"503 5.5.1 Error: nested MAIL command\r\n",
            ]
            # EHLO starts over (as the RFC says it does); a client can go on that way.
            assert await talk(reader, writer, b"EHLO me.example\r\n") == EHLO_PIPELINING
            assert await talk(reader, writer, b"MAIL FROM:<probe@me.example>\r\n") == MAIL_OK
            await hang_up(writer)
            assert server.commands.count(b"RSET\r\n") == 1
        async with await start_hostile_smtp("rset_refused", pipelining=False) as server:
            reader, writer = await ehlo_session(server, EHLO_REPLY)
            await hang_up(writer)

    run(body)


def test_drop_mid_transaction_hangs_up_after_the_kth_rcpt() -> None:
    async def body() -> None:
        async with await start_hostile_smtp("drop_mid_transaction") as server:
            reader, writer = await ehlo_session(server)
            writer.write(burst(4))
            assert await until_closed(reader) == MAIL_OK + RCPT_OK + RCPT_OK  # then EOF
            await hang_up(writer)
            await sessions_end(server)
            assert server.commands[1:] == burst(4).splitlines(keepends=True)
            # Counted per transaction: RSET starts over.
            reader, writer = await ehlo_session(server)
            assert await talk(reader, writer, burst(1)) == MAIL_OK
            assert await reply(reader) == RCPT_OK
            assert await talk(reader, writer, b"RSET\r\n") == RSET_OK
            assert await talk(reader, writer, burst(1)) == MAIL_OK
            assert await reply(reader) == RCPT_OK
            assert await talk(reader, writer, b"RCPT TO:<two@hostile.example>\r\n") == RCPT_OK
            assert await until_closed(reader) == b""
            await hang_up(writer)
        async with await start_hostile_smtp(
            "drop_mid_transaction", after=1, pipelining=False
        ) as server:
            reader, writer = await ehlo_session(server, EHLO_REPLY)
            assert await talk(reader, writer, burst(1)) == MAIL_OK
            assert await until_closed(reader) == RCPT_OK
            await hang_up(writer)
            await sessions_end(server)

    run(body)


# ------------------------------------------------------------------------------ robustness, close
@pytest.mark.parametrize("behaviour", sorted(BEHAVIOURS))
def test_clients_that_vanish_never_hurt_the_server(behaviour: str) -> None:
    async def body() -> None:
        async with await start_hostile_smtp(behaviour, **QUICK.get(behaviour, {})) as server:
            _, writer = await connect(server)  # says nothing, leaves
            await hang_up(writer)
            _, writer = await connect(server)  # leaves mid-command
            writer.write(b"EHLO x\r\nRCPT TO:<a@b>\r\nMAIL FR")
            await writer.drain()
            await hang_up(writer)
            sock = socket.create_connection((server.host, server.port))  # resets the connection
            sock.sendall(b"EHLO x\r\n\x00\xff\r\n")
            await asyncio.sleep(0.05)
            sock.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
            )
            sock.close()
            await sessions_end(server, timeout=0.5)
            reader, writer = await connect(server)  # the server still serves
            if behaviour != "silent":
                assert (await reader.readexactly(1)) == b"2"
            await hang_up(writer)
            await sessions_end(server, timeout=0.5)
            assert server.connections == 4

    run(body)


@pytest.mark.parametrize("behaviour", sorted(BEHAVIOURS))
def test_close_drops_every_connection_and_leaves_no_task(behaviour: str) -> None:
    async def body() -> None:
        server = await start_hostile_smtp(behaviour, **QUICK.get(behaviour, {}))
        clients = [await connect(server) for _ in range(3)]
        for _, writer in clients:
            writer.write(b"EHLO x\r\n")  # endless ones are streaming, slow ones waiting
            await writer.drain()
        await asyncio.sleep(0.05)
        await asyncio.gather(server.close(), server.close())  # concurrent calls are fine
        assert server.open_connections == 0
        for reader, writer in clients:
            await until_closed(reader)  # EOF or reset, at once
            await hang_up(writer)
        with pytest.raises(ConnectionRefusedError):
            await connect(server)
        await server.close()  # and again, later
        assert server.connections == 3

    run(body)


def test_close_with_a_client_that_stopped_reading_mid_stream() -> None:
    async def body() -> None:
        server = await start_hostile_smtp("many_lines", lines=2_000_000)
        reader, writer = await connect(server)
        writer.write(b"EHLO x\r\n")
        await reader.readline()
        await asyncio.sleep(0.1)  # the server is blocked on backpressure
        start = time.monotonic()
        await server.close()
        assert time.monotonic() - start < 1.0  # dropped, not flushed
        await until_closed(reader, timeout=2.0)
        await hang_up(writer)

    run(body)


# ------------------------------------------------------------------------------ several on one port
def test_a_fleet_shares_one_port_on_several_addresses() -> None:
    async def body() -> None:
        fleet = await start_hostile_fleet(
            {
                "127.0.66.1": "silent",
                "127.0.66.2": ("rcpt_code", {"reply": "299 ok"}),
                "127.0.66.3": "drop_after_banner",
            }
        )
        try:
            assert len({s.port for s in fleet.values()}) == 1
            assert [s.behaviour for s in fleet.values()] == [
                "silent",
                "rcpt_code",
                "drop_after_banner",
            ]
            reader, writer = await connect(fleet["127.0.66.2"])
            await reply(reader)
            assert await talk(reader, writer, b"RCPT TO:<a@b>\r\n") == b"299 ok\r\n"
            await hang_up(writer)
            reader, writer = await connect(fleet["127.0.66.3"])
            assert await until_closed(reader) == BANNER
            await hang_up(writer)
            assert fleet["127.0.66.1"].connections == 0
        finally:
            for server in fleet.values():
                await server.close()
        with pytest.raises(ValueError, match="reply"):
            await start_hostile_fleet({"127.0.66.1": "silent", "127.0.66.2": "rcpt_code"})
        with pytest.raises(ValueError, match="loopback"):
            await start_hostile_fleet({"10.0.0.1": "silent"})

    run(body)


def test_ipv6_loopback() -> None:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback here")

    async def body() -> None:
        async with await start_hostile_smtp("echo", host="::1") as server:
            reader, writer = await connect(server)
            assert await reply(reader) == BANNER
            await hang_up(writer)

    run(body)


# ------------------------------------------------------------------------------ hostile DNS
def test_add_hostile_zone_is_served_by_the_sandbox_dns_server() -> None:
    world = World(seed=5, people=10, domains=2)
    silent_ip = "127.0.66.1"
    add_hostile_zone(
        world,
        "multicast.hostile.example",
        mx=[
            "mx1.multicast.hostile.example",
            "mx2.multicast.hostile.example",
            "mx3.multicast.hostile.example",
        ],
        hosts={
            "mx1.multicast.hostile.example": ["224.0.0.1"],
            "mx2.multicast.hostile.example": ["255.255.255.255"],
            "mx3.multicast.hostile.example": ["ff02::1"],
        },
    )
    thirty = [f"mx{k}.thirty.hostile.example" for k in range(30)]
    add_hostile_zone(
        world, "thirty.hostile.example", mx=thirty, hosts={host: [silent_ip] for host in thirty}
    )
    hundred = [f"127.0.0.{k}" for k in range(1, 101)]
    add_hostile_zone(
        world,
        "hundred.hostile.example",
        mx=["mx.hundred.hostile.example"],
        hosts={"mx.hundred.hostile.example": hundred},
    )
    private = ["10.0.0.1", "169.254.169.254", "::ffff:10.0.0.1", "0.0.0.0", "fc00::1"]
    private_hosts = {f"mx{k}.private.hostile.example": [ip] for k, ip in enumerate(private)}
    add_hostile_zone(world, "private.hostile.example", mx=list(private_hosts), hosts=private_hosts)
    add_hostile_zone(world, "implicit.hostile.example", a=["127.0.66.9"], aaaa=["::1"])
    add_hostile_zone(
        world, "ip-literal.hostile.example", mx=["10.0.0.1"], hosts={"10.0.0.1": ["10.0.0.1"]}
    )

    async def body() -> None:
        dns_server = await start_dns(world, Observatory())
        smtp = await start_hostile_smtp("silent", host=silent_ip)
        try:
            resolver = dns.asyncresolver.Resolver(configure=False)
            resolver.nameservers = ["127.0.0.1"]
            resolver.port = dns_server.port
            resolver.lifetime = 3.0

            async def mx(domain: str) -> list[tuple[int, str]]:
                answer = await resolver.resolve(domain, "MX")
                return sorted((r.preference, r.exchange.to_text()) for r in answer)

            async def addresses(name: str, rdtype: str) -> list[str]:
                try:
                    answer = await resolver.resolve(name, rdtype)
                except dns.resolver.NoAnswer:
                    return []
                return [r.address for r in answer]

            hosts = [f"mx{k}.multicast.hostile.example" for k in (1, 2, 3)]
            assert await mx("multicast.hostile.example") == [
                (10 * k, f"{host}.") for k, host in enumerate(hosts, 1)
            ]
            assert await addresses(hosts[0], "A") == ["224.0.0.1"]
            assert await addresses(hosts[1], "A") == ["255.255.255.255"]
            assert await addresses(hosts[2], "A") == []
            assert await addresses(hosts[2], "AAAA") == ["ff02::1"]

            # 30 MX: too big for 512-byte UDP, the resolver retries over TCP.
            assert await mx("thirty.hostile.example") == [
                (10 * (k + 1), f"{host}.") for k, host in enumerate(thirty)
            ]
            for host in thirty:
                assert await addresses(host, "A") == [silent_ip]
            # ... and every one of them is the silent server.
            _, writer = await asyncio.open_connection(silent_ip, smtp.port)
            await hang_up(writer)
            assert smtp.connections == 1

            assert sorted(await addresses("mx.hundred.hostile.example", "A")) == sorted(hundred)

            assert [ex for _, ex in await mx("private.hostile.example")] == [
                f"{host}." for host in private_hosts
            ]
            found = []
            for host in private_hosts:
                found += await addresses(host, "A") + await addresses(host, "AAAA")
            assert found == ["10.0.0.1", "169.254.169.254", "::ffff:10.0.0.1", "0.0.0.0", "fc00::1"]
            assert dns.rdatatype.AAAA in {
                rrset.rdtype
                for rrset in (
                    await resolver.resolve("mx2.private.hostile.example", "AAAA")
                ).response.answer
            }

            assert await addresses("implicit.hostile.example", "MX") == []  # NODATA: implicit MX
            assert await addresses("implicit.hostile.example", "A") == ["127.0.66.9"]
            assert await addresses("implicit.hostile.example", "AAAA") == ["::1"]

            assert await mx("ip-literal.hostile.example") == [(10, "10.0.0.1.")]
            assert await addresses("10.0.0.1", "A") == ["10.0.0.1"]
        finally:
            await smtp.close()
            await dns_server.close()

    run(body)


def test_add_hostile_zone_replaces_and_checks_before_changing_anything() -> None:
    world = World(seed=5, people=10, domains=2)
    add_hostile_zone(
        world,
        "Twice.Hostile.Example.",
        mx=["a.twice.example"],
        hosts={"a.twice.example": ["127.0.0.2", "::1"]},
    )
    assert world.zone["twice.hostile.example"] == {"MX": ["10 a.twice.example."]}
    assert world.zone["a.twice.example"] == {"A": ["127.0.0.2"], "AAAA": ["::1"]}
    add_hostile_zone(
        world,
        "twice.hostile.example",
        mx=["b.twice.example", "c.twice.example"],
        hosts={"a.twice.example": ["::2"]},
    )
    assert world.zone["twice.hostile.example"] == {
        "MX": ["10 b.twice.example.", "20 c.twice.example."]
    }
    assert world.zone["a.twice.example"] == {"A": [], "AAAA": ["::2"]}

    # A second call with hosts only leaves the domain's MX alone (MX first, addresses later).
    add_hostile_zone(world, "twice.hostile.example", hosts={"b.twice.example": ["127.0.0.3"]})
    assert world.zone["twice.hostile.example"] == {
        "MX": ["10 b.twice.example.", "20 c.twice.example."]
    }
    assert world.zone["b.twice.example"] == {"A": ["127.0.0.3"], "AAAA": []}

    before = {
        name: {k: list(v) for k, v in records.items()} for name, records in world.zone.items()
    }
    bad_calls: list[dict[str, Any]] = [
        {"a": ["::1"]},
        {"aaaa": ["127.0.0.1"]},
        {"a": ["not an address"]},
        {"mx": ["ok.example", "a..b"]},
        {"mx": ["x" * 64 + ".example"]},
        {"hosts": {"ok.example": ["127.0.0.1"], "bad.example": ["300.1.1.1"]}},
        {"hosts": {"": ["127.0.0.1"]}},
    ]
    for kwargs in bad_calls:
        with pytest.raises(ValueError):
            add_hostile_zone(world, "bad.hostile.example", **kwargs)
    assert world.zone == before
