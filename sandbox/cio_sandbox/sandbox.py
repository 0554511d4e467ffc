"""Start and stop every sandbox server on loopback, in one background event loop."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from aiohttp import web

from .loopback import bind_socket, ensure_loopback
from .observe import Observatory
from .world import Person, World
from .world_data import VERIFIER_DOMAIN

T = TypeVar("T")


def _cancel_pending(loop: asyncio.AbstractEventLoop) -> None:
    """Requests stalled by a fault (or sessions held by a tarpit) end with the sandbox, quietly."""
    pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
    for task in pending:
        task.cancel()
    if pending:
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))


@dataclass(frozen=True)
class Ports:
    """Fixed ports for `cio-sandbox serve --port-base`; 0 means any free port."""

    app: int = 0
    app_other: int = 0
    pipelines: int = 0
    track: int = 0
    emailverify: int = 0
    dns: int = 0
    smtp: int = 0

    @classmethod
    def from_base(cls, base: int) -> Ports:
        return cls(*(base + k for k in range(7)))


class Sandbox:
    """Every fake of the outside world, served from a thread so tests and CLIs stay synchronous."""

    def __init__(
        self, world: World | None = None, *, host: str = "127.0.0.1", ports: Ports | None = None
    ):
        self.world = world or World()
        self.host = ensure_loopback(host)
        self.ports = ports or Ports()
        self.obs = Observatory()
        self.keys = self.world.keys
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._closers: list[Callable[[], Awaitable[Any]]] = []
        self.app_api_url = self.app_api_url_other = self.pipelines_url = ""
        self.track_url = self.emailverify_url = self.dns_nameserver = ""
        self.smtp_port = 0

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> Sandbox:
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._start())
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                loop.run_until_complete(self._close())
                loop.close()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._close())
            _cancel_pending(loop)
            loop.close()

        self._thread = threading.Thread(target=run, name="cio-sandbox", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            raise RuntimeError(f"the sandbox could not start: {failure[0]}") from failure[0]
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
        self._loop = None

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        """Run a coroutine on the sandbox loop (for tests that poke a server's state)."""
        assert self._loop is not None, "sandbox not started"
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    async def _start(self) -> None:
        # The servers are imported when a sandbox starts, not with the package: the pytest plugin,
        # `cio-sandbox world` and the report helpers need none of them (about 0.25 s per process).
        from .app_api import build_app_api
        from .dns_server import start_dns
        from .emailverify_api import build_emailverify_api
        from .pipelines_api import build_pipelines_api, build_track_api
        from .smtp_server import start_smtp

        other = "eu" if self.world.region == "us" else "us"
        w, o, p = self.world, self.obs, self.ports
        self.app_api_url = await self._serve(build_app_api(w, o, region=w.region), p.app)
        self.app_api_url_other = await self._serve(build_app_api(w, o, region=other), p.app_other)
        self.pipelines_url = await self._serve(build_pipelines_api(w, o), p.pipelines)
        self.track_url = await self._serve(build_track_api(w, o), p.track)
        self.emailverify_url = await self._serve(build_emailverify_api(w, o), p.emailverify)
        dns = await start_dns(w, o, host=self.host, port=p.dns)
        self._closers.append(dns.close)
        self.dns_nameserver = f"{self.host}:{dns.port}"
        smtp = await start_smtp(w, o, port=p.smtp)
        self._closers.append(smtp.close)
        self.smtp_port = smtp.port

    async def _serve(self, app: web.Application, port: int) -> str:
        runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        sock = bind_socket(self.host, port)
        site = web.SockSite(runner, sock)
        await site.start()
        self._closers.append(runner.cleanup)
        return f"http://{self.host}:{sock.getsockname()[1]}"

    async def _close(self) -> None:
        for close in reversed(self._closers):
            with contextlib.suppress(Exception):
                await close()
        self._closers.clear()

    # ------------------------------------------------------------------ the workspace changes
    def add_people(self, count: int) -> list[Person]:
        """``count`` new People, in App API searches, hydration and write lookups from now on.

        Their addresses are on the world's normal domains, with a ground truth the mapper can
        reach; they carry no ``EV_*`` attributes yet.
        """
        return self.world.add_people(count)

    def delete_people(self, people: Iterable[Person | int]) -> None:
        """Take People (or indexes) out of the workspace from now on: searches and hydration
        leave them out, and a write addressed to one creates a new Person, as an upsert does."""
        self.world.delete_people(people)

    # ------------------------------------------------------------------ settings for the plugins
    def tap_config(self, **overrides: Any) -> dict[str, Any]:
        return {
            "app_api_key": self.keys.app_api_key,
            "region": self.world.region,
            "api_url": self.app_api_url,
            **overrides,
        }

    def mapper_config(self, **overrides: Any) -> dict[str, Any]:
        return {
            "dns_nameservers": [self.dns_nameserver],
            # 3 s: one try waits 1 s, so the slow_dns zone (0.4 s an answer) still answers in time
            # on a loaded machine (tests on two workers); 2 s made a whole zone flap to dns_error.
            "dns_timeout": 3.0,
            "smtp_port": self.smtp_port,
            "smtp_timeout": 4.0,
            # The sandbox's mail hosts live on loopback, which production never contacts.
            "allow_private_mx": True,
            # Greylisted addresses are not waited for unless a test asks (greylist_max_wait):
            # most tests want a run over the world to end as soon as its verdicts are in.
            "greylist_max_wait": 0,
            # The sandbox's mail hosts limit no rate unless a test sets one (`max_rcpt_per_minute`):
            # the engine's own cap is tested on its own, not paid by every test.
            "max_rcpt_per_minute_per_mx": 100_000,
            "helo_hostname": VERIFIER_DOMAIN,
            "mail_from": f"probe@{VERIFIER_DOMAIN}",
            "emailverify_api_url": self.emailverify_url,
            "emailverify_api_key": self.keys.emailverify_api_key,
            **overrides,
        }

    def target_config(self, **overrides: Any) -> dict[str, Any]:
        return {
            "pipelines_api_key": self.keys.pipelines_api_key,
            "region": self.world.region,
            "api_url": self.pipelines_url,
            **overrides,
        }

    def settings(self) -> dict[str, dict[str, Any]]:
        """Everything a pipeline needs, per plugin, as printed by `cio-sandbox serve`."""
        return {
            "tap-customerio-people": self.tap_config(),
            "mapper-emailverify": self.mapper_config(),
            "target-customerio-ev": {
                **self.target_config(),
                "track_api_url": self.track_url,
                "track_site_id": self.keys.track_site_id,
                "track_api_key": self.keys.track_api_key,
                # The landing check reads back through the sandbox's App API, never the real one.
                "app_api_key": self.keys.app_api_key,
                "app_api_url": self.app_api_url,
            },
        }
