"""pytest fixtures that start the sandbox for a test session or a single test and always stop it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from .sandbox import Sandbox
from .world import World

DEFAULT_SEED = 7
DEFAULT_PEOPLE = 3000


@pytest.fixture(scope="session")
def sandbox() -> Iterator[Sandbox]:
    """One shared sandbox over the default world; tests that change faults must reset them."""
    with Sandbox(World(seed=DEFAULT_SEED, people=DEFAULT_PEOPLE)) as sb:
        yield sb


@pytest.fixture
def sandbox_faults_reset(sandbox: Sandbox) -> Iterator[Sandbox]:
    """The shared sandbox with faults, counters and People added or deleted reset before and
    after the test."""
    sandbox.obs.reset_faults()
    sandbox.obs.reset_counters()
    sandbox.world.reset_changes()
    yield sandbox
    sandbox.obs.reset_faults()
    sandbox.world.reset_changes()


@pytest.fixture
def make_sandbox() -> Iterator[Callable[..., Sandbox]]:
    """Start sandboxes with their own world: ``make_sandbox(world=None, **world_kwargs)``."""
    started: list[Sandbox] = []

    def make(world: World | None = None, **world_kwargs: Any) -> Sandbox:
        sb = Sandbox(world or World(**world_kwargs)).start()
        started.append(sb)
        return sb

    yield make
    for sb in started:
        sb.stop()


def _postgres_or_skip() -> Any:
    from .postgres import PostgresServer, find_bin_dir

    bin_dir = find_bin_dir()
    if bin_dir is None:
        pytest.skip(
            "PostgreSQL binaries (initdb, pg_ctl) not found: run scripts/ensure_postgres.sh "
            "(as root: apt-get install postgresql)"
        )
    return PostgresServer(bin_dir)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A PostgreSQL server on loopback for the session: its postgresql://…@127.0.0.1:PORT/db URL."""
    with _postgres_or_skip() as server:
        yield server.url


@pytest.fixture
def make_postgres() -> Iterator[Callable[[], Any]]:
    """Start PostgreSQL servers of the test's own (to stop one mid-run): ``make_postgres()``."""
    started: list[Any] = []

    def make() -> Any:
        server = _postgres_or_skip()
        started.append(server)
        return server.start()

    yield make
    for server in started:
        server.cleanup()
