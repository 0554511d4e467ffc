"""The first-contact gate: no verdict leaves the mapper before the engine has shown that its
verdicts describe the addresses, not its own setup.

When mail servers refuse the probe itself (an unroutable `mail_from` domain, an IP on block lists),
the engine stops the run (`engine/smtp/setup_watch.py`); the gate makes sure that by then nothing
was written, not even the verdicts that needed no probe. It opens for good once the engine confirms
its setup (a mail server judged a recipient). Until then, whenever the engine has nothing in flight
(no refusal of ours can be pending), what is finished may go out, but the gate closes behind it.
A run whose verdicts all come from the cache or the record itself never starts the engine and only
waits for the reader's next barrier, full window or end of input.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from mapper_emailverify.stream_map.engine_thread import EngineThread
from mapper_emailverify.stream_map.ordering import ReorderBuffer


class FirstContactGate:
    def __init__(
        self,
        out: ReorderBuffer,
        engine: EngineThread,
        logger: logging.Logger,
        *,
        active: bool,
        veto: Callable[[], bool] = lambda: False,
    ) -> None:
        self.out = out
        self.engine = engine
        self.logger = logger
        #: Asked before what is finished goes out unconfirmed: True stops that (the run is
        #: stopping, see `health.py`).
        self.veto = veto
        self.open = not active
        if active:
            out.hold()

    def check(self) -> None:
        """From either thread, after a verdict and when the reader must move on."""
        if self.open:
            return
        if self.engine.setup_confirmed:
            self.open = True
            self.out.release(stay_open=True)
            self.logger.debug("First contact: mail servers answer about mailboxes; gate open.")
        elif self.engine.idle and not self.veto():
            self.out.release(stay_open=False)
