"""The async engine behind the synchronous SDK reader: one event loop in one background thread.

The loop is started only when the first address needs a real verification, so a run whose verdicts
are all fresh or cached never pays for it. The reader hands work over with `call_soon_threadsafe`;
verdicts come back through a callback that runs on the loop thread and must not block. A
`UserError` from the engine (a setting to fix, such as an untrusted certificate) gives no verdict:
it goes to `on_fatal`, and the mapper stops before writing the record.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from mapper_emailverify.engine.errors import UserError
from mapper_emailverify.engine.hooks import ON_GREYLIST_WAIT

#: status, substatus, the kind of rule that decided, and the engine's whole result (its evidence
#: explains an Unknown in the run report; None when the engine gave no result object).
Done = Callable[[str, str, str, Any], None]


class Engine(Protocol):
    """What the mapper needs from `mapper_emailverify.engine.verifier.Verifier`."""

    def add_hard_bounces(self, addresses: Iterable[str]) -> None: ...

    async def verify(self, address: object) -> Any: ...  # .status, .substatus

    async def aclose(self) -> None: ...


class EngineThread:
    def __init__(
        self,
        make_engine: Callable[[], Engine],
        logger: logging.Logger,
        on_fatal: Callable[[UserError], None],
    ) -> None:
        self._make_engine = make_engine
        self.logger = logger
        self._on_fatal = on_fatal
        self.engine: Engine | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._in_flight = 0
        self._count_lock = threading.Lock()

    @property
    def started(self) -> bool:
        return self._loop is not None

    @property
    def idle(self) -> bool:
        """No verification submitted and unanswered."""
        return self._in_flight == 0

    @property
    def setup_confirmed(self) -> bool:
        """The engine's verdicts describe the addresses, not its own setup (an engine that does
        not say is trusted); False before the engine started."""
        return self.engine is not None and bool(getattr(self.engine, "setup_confirmed", True))

    def start(self) -> None:
        if self._loop is not None:
            return
        self.engine = self._make_engine()
        loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(ready.set)
            loop.run_forever()

        self._thread = threading.Thread(target=run, name="emailverify-engine", daemon=True)
        self._thread.start()
        ready.wait()
        self._loop = loop

    def submit(
        self,
        address: str,
        bounced: bool,
        done: Done,
        on_wait: Callable[[], None] | None = None,
    ) -> None:
        """Verify `address` (telling the engine first when it is known to have hard-bounced);
        `on_wait` is called if the verification starts waiting for a greylisting server."""
        if self._loop is None:
            self.start()
        assert self._loop is not None
        with self._count_lock:
            self._in_flight += 1
        self._loop.call_soon_threadsafe(self._spawn, address, bounced, done, on_wait)

    def close(self, *, cancel: bool = False, timeout: float = 30.0) -> None:
        """Stop the loop; `cancel` abandons verifications still in flight (SIGTERM)."""
        loop, self._loop = self._loop, None
        if loop is None or self._thread is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self._shutdown(cancel), loop).result(timeout)
        except Exception as exc:  # closing must not turn a finished run into a failure
            self.logger.debug("Engine shutdown was not clean: %r", exc)
        loop.call_soon_threadsafe(loop.stop)
        self._thread.join(timeout=5)
        if not self._thread.is_alive():
            loop.close()

    # -- loop thread -----------------------------------------------------------------------------

    def _spawn(
        self, address: str, bounced: bool, done: Done, on_wait: Callable[[], None] | None
    ) -> None:
        context = contextvars.copy_context()
        context.run(ON_GREYLIST_WAIT.set, on_wait)
        task = asyncio.get_running_loop().create_task(
            self._verify(address, bounced, done), context=context
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _verify(self, address: str, bounced: bool, done: Done) -> None:
        assert self.engine is not None
        if bounced:
            self.engine.add_hard_bounces([address])
        try:
            result: Any = await self.engine.verify(address)
            status, substatus = str(result.status), str(result.substatus)
            evidence = getattr(result, "evidence", None)
            rule = str(getattr(evidence, "rule_family", "") or "engine")
        except asyncio.CancelledError:
            raise
        except UserError as error:
            self._on_fatal(error)
            return
        except Exception as exc:  # the engine promises not to raise; a bug must not stop the run
            self.logger.debug("Verification raised %r", exc)
            status, substatus, rule = "Unknown", "smtp_connection_failed", "internal error"
            result = None
        with self._count_lock:
            self._in_flight -= 1
        done(status, substatus, rule, result)

    async def _shutdown(self, cancel: bool) -> None:
        if cancel:
            for task in list(self._tasks):
                task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        assert self.engine is not None
        await self.engine.aclose()
