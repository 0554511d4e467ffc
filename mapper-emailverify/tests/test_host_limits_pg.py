"""Per-mail-host caps shared through `cache_url` by the workers on one egress IP (issue 21, item 2).

Against a real PostgreSQL server: stores on one egress never hold more than the cap of sessions to
a host between them (stores on different egress IPs keep their own), a worker that dies frees its
slots when its lease runs out, the recipient rate is booked on the database's one clock, and a
database that goes away costs one WARNING (no password) and no wait. Then the real thing: three
mapper processes probing the same shared mail hosts at once never open more than
`max_connections_per_mx` connections to one of them, unless they say they are on different egress
IPs (which proves the check can fail).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from cio_sandbox import Sandbox, World
from cio_sandbox.postgres import new_database
from cio_sandbox.world import SHARED_HOST_CASE_WEIGHTS
from mapper_emailverify.stream_map.host_limits_pg import PostgresHostLimits

MAPPER = str(Path(sys.executable).parent / "mapper-emailverify")


def egress_name(tag: str) -> str:
    """An egress value of the test's own (the session's server is shared by the file's tests)."""
    return f"{tag}-{time.monotonic_ns()}"


async def peak_sessions(stores: list[PostgresHostLimits], sessions: int, cap: int) -> int:
    """Start `sessions` sessions to one host spread over `stores`; the most held at once."""
    held, peak = 0, 0

    async def session(store: PostgresHostLimits) -> None:
        nonlocal held, peak
        async with store.slot("192.0.2.25", cap):
            held += 1
            peak = max(peak, held)
            await asyncio.sleep(0.15)
            held -= 1

    await asyncio.gather(*(session(stores[i % len(stores)]) for i in range(sessions)))
    for store in stores:
        await store.aclose()
    return peak


def run(coro: Callable[[], Awaitable[Any]]) -> Any:
    return asyncio.run(asyncio.wait_for(coro(), 60))  # type: ignore[arg-type]


def test_workers_on_one_egress_ip_share_each_hosts_connection_cap(postgres_url: str) -> None:
    egress = egress_name("shared")

    async def shared() -> int:
        stores = [PostgresHostLimits(postgres_url, egress) for _ in range(3)]
        return await peak_sessions(stores, sessions=12, cap=2)

    async def apart() -> int:
        stores = [PostgresHostLimits(postgres_url, egress_name(f"own{i}")) for i in range(3)]
        return await peak_sessions(stores, sessions=12, cap=2)

    assert run(shared) == 2  # never more, and the slots were used
    assert run(apart) == 6  # each egress IP keeps its own cap


def test_a_worker_that_dies_frees_its_slots_when_its_lease_ends(postgres_url: str) -> None:
    egress = egress_name("lease")

    async def scenario() -> float:
        dead = PostgresHostLimits(postgres_url, egress, lease_seconds=1.0)
        slot = dead.slot("192.0.2.26", 1)
        await slot.__aenter__()  # taken, and never given back: the worker dies
        assert dead._renewer is not None
        dead._renewer.cancel()  # nobody renews its lease any more
        alive = PostgresHostLimits(postgres_url, egress)
        started = time.monotonic()
        async with alive.slot("192.0.2.26", 1):
            waited = time.monotonic() - started
        await alive.aclose()
        return waited

    waited = run(scenario)
    assert 0.5 < waited < 5.0, waited


def test_a_living_worker_keeps_its_slot_past_its_lease(postgres_url: str) -> None:
    egress = egress_name("renew")

    async def scenario() -> bool:
        holder = PostgresHostLimits(postgres_url, egress, lease_seconds=0.8)
        other = PostgresHostLimits(postgres_url, egress, lease_seconds=0.8)
        async with holder.slot("192.0.2.27", 1):
            try:
                async with asyncio.timeout(2.0), other.slot("192.0.2.27", 1):
                    return True  # got a slot that was still held
            except TimeoutError:
                return False
            finally:
                await other.aclose()
                await holder.aclose()

    assert run(scenario) is False


def test_recipients_are_booked_on_one_clock_per_egress_ip(postgres_url: str) -> None:
    egress, interval = egress_name("rate"), 0.05

    async def waits(stores: list[PostgresHostLimits]) -> list[float]:
        host = "192.0.2.28"
        booked = [(await stores[i % len(stores)].book(host, interval, 0.0))[0] for i in range(40)]
        for store in stores:
            await store.aclose()
        return booked

    async def shared() -> list[float]:
        return await waits([PostgresHostLimits(postgres_url, egress) for _ in range(2)])

    async def apart() -> list[float]:
        names = [egress_name(f"r{i}") for i in range(2)]
        return await waits([PostgresHostLimits(postgres_url, name) for name in names])

    ladder = run(shared)
    assert ladder == sorted(ladder)  # each booking is due after the one before, whoever booked it
    assert ladder[-1] == pytest.approx(40 * interval, abs=0.5)
    alone = run(apart)
    assert max(alone) == pytest.approx(20 * interval, abs=0.5)  # two clocks, half as long each


def test_a_lost_database_costs_one_warning_and_no_wait(
    make_postgres: Callable[[], Any], caplog: pytest.LogCaptureFixture
) -> None:
    server = make_postgres()
    password = urlsplit(server.url).password
    assert password

    async def scenario() -> tuple[float, float]:
        store = PostgresHostLimits(server.url, "lost", logger=logging.getLogger("limits"))
        async with store.slot("192.0.2.29", 1):
            pass
        assert await store.book("192.0.2.29", 1.0, 0.0) >= (0, 0)
        server.stop()
        started = time.monotonic()
        async with store.slot("192.0.2.29", 1), store.slot("192.0.2.29", 1):
            pass  # both at once: the store no longer holds anyone back
        await store.pause("192.0.2.29", 60.0)
        wait = sum(await store.book("192.0.2.29", 60.0, 0.0))
        await store.aclose()
        return time.monotonic() - started, wait

    with caplog.at_level(logging.WARNING, logger="limits"):
        elapsed, wait = run(scenario)
    assert wait == 0.0 and elapsed < 6.0
    [warning] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "cache_url" in warning and "***" in warning and password not in warning


def test_a_host_that_asks_one_worker_to_slow_down_pauses_them_all(postgres_url: str) -> None:
    egress = egress_name("pause")

    async def scenario() -> tuple[tuple[float, float], tuple[float, float], tuple[float, float]]:
        asked, other = (PostgresHostLimits(postgres_url, egress) for _ in range(2))
        elsewhere = PostgresHostLimits(postgres_url, egress_name("elsewhere"))
        await asked.pause("192.0.2.30", 30.0)
        booked = (
            await other.book("192.0.2.30", 0.1, 1.0),
            await other.book("192.0.2.31", 0.1, 1.0),  # another host: not paused
            await elsewhere.book("192.0.2.30", 0.1, 1.0),  # another egress IP: not paused
        )
        for store in (asked, other, elsewhere):
            await store.aclose()
        return booked

    paused, other_host, other_ip = run(scenario)
    assert paused[1] == pytest.approx(30.0, abs=2.0) and paused[0] > 28.0
    assert other_host == (0.0, 0.0) and other_ip == (0.0, 0.0)


def test_a_worker_defers_recipients_of_a_host_paused_by_another(
    make_sandbox: Callable[..., Sandbox],
) -> None:
    """The prober side: a pause read from the shared store sends the recipient to the in-run
    retry (Unknown/greylisted here, the retry being off) without a RCPT to the host."""
    from mapper_emailverify.engine.verifier import Verifier

    class PausedEverywhere:
        def __init__(self) -> None:
            self.booked = 0

        @contextlib.asynccontextmanager
        async def slot(self, ip: str, cap: int) -> AsyncIterator[None]:
            yield

        async def book(self, ip: str, interval: float, burst: float) -> tuple[float, float]:
            self.booked += 1
            return 0.0, 120.0

        async def pause(self, ip: str, seconds: float) -> None:
            pass

        def reset_loop(self) -> None:
            pass

        async def aclose(self) -> None:
            pass

    sb = make_sandbox(World(seed=45, people=200))
    address = next(p.email for p in sb.world.iter_people() if p.email and p.truth.case == "normal")
    shared = PausedEverywhere()
    sb.obs.reset_counters()
    [result] = Verifier(sb.mapper_config(), host_limits=shared).verify_many_sync([address])
    assert (str(result.status), str(result.substatus)) == ("Unknown", "greylisted")
    assert shared.booked >= 1
    assert sb.obs.snapshot()["rcpt"] == 0


# -- three mapper processes at once -------------------------------------------------------------


def shared_host_addresses(sb: Sandbox) -> list[str]:
    """The addresses whose domains live on the world's three shared mail hosts."""
    return [
        p.email
        for p in sb.world.iter_people()
        if p.email and p.email == p.email.strip() and p.truth.case.startswith("shared_")
    ]


def mapper_input(addresses: list[str]) -> str:
    schema = {
        "type": "SCHEMA",
        "stream": "people",
        "key_properties": ["cio_id"],
        "schema": {"type": "object", "properties": {"cio_id": {}, "email": {}}},
    }
    lines: list[Any] = [schema]
    lines += [
        {"type": "RECORD", "stream": "people", "record": {"cio_id": str(i), "email": email}}
        for i, email in enumerate(addresses)
    ]
    return "".join(json.dumps(line) + "\n" for line in lines)


def three_mappers(sb: Sandbox, url: str, tmp_path: Path, egress: list[str | None]) -> int:
    """Run three mappers at once, each on a third of the shared-host addresses; the most
    connections one mail host had at once."""
    addresses = shared_host_addresses(sb)
    assert len(addresses) >= 150, len(addresses)
    url = new_database(url, "limits")
    sb.obs.reset_counters()
    workers = []
    for i, name in enumerate(egress):
        config = sb.mapper_config(
            cache_url=url, max_connections_per_mx=2, concurrency=40, progress_interval_seconds=0
        )
        if name is not None:
            config["egress_ip"] = name
        path = tmp_path / f"mapper-{i}-{time.monotonic_ns()}.json"
        path.write_text(json.dumps(config))
        workers.append(
            subprocess.Popen(
                [MAPPER, "--config", str(path)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    texts = [mapper_input(addresses[i::3]) for i in range(3)]
    # Written to all three before any is read: they probe at the same time.
    for worker, text in zip(workers, texts, strict=True):
        assert worker.stdin is not None
        worker.stdin.write(text)
        worker.stdin.flush()
    for worker, text in zip(workers, texts, strict=True):
        stdout, stderr = worker.communicate(timeout=180)
        assert worker.returncode == 0, stderr[-3000:]
        assert stdout.count('"type":"RECORD"') + stdout.count('"type": "RECORD"') == text.count(
            '"RECORD"'
        )
        assert "WARNING" not in stderr or "cache_url" not in stderr, stderr[-3000:]
    peaks = sb.obs.snapshot()["smtp_peak_concurrency"]
    assert peaks, "no SMTP connection was made"
    return max(peaks.values())


@pytest.mark.slow
def test_three_mappers_on_one_egress_ip_hold_each_hosts_connection_cap(
    make_sandbox: Callable[..., Sandbox], postgres_url: str, tmp_path: Path
) -> None:
    world = World(
        seed=44,
        people=600,
        shared_domains=30,
        smtp_latency=0.05,
        case_weights=SHARED_HOST_CASE_WEIGHTS,
    )
    sb = make_sandbox(world)
    tag = egress_name("x")
    # Told they are on three egress IPs, they open up to three times the cap: the check can fail.
    assert three_mappers(sb, postgres_url, tmp_path, [f"{tag}-a", f"{tag}-b", f"{tag}-c"]) > 2
    # On one (the default), never more than the cap between them.
    assert three_mappers(sb, postgres_url, tmp_path, [None, None, None]) <= 2
