"""`email_only_identify: track`: People without an id go through the Track API, the rest through
Pipelines, in the same run.

Two senders in one run are sound here because they never write the same Person: a record is routed
by how it is identified (email only, or an id / cio_id), so there is no ordering between the two
APIs to get wrong. What must hold is the STATE barrier, and it does: `flush` waits for both senders
(and raises the first failure), so STATE still follows only what both APIs acknowledged. Email-only
People go with `_update: true`: the Track API never creates a Person for them (the one documented
way to address a Person by email with no creation), while Pipelines identify still creates People
with an id who do not exist.
"""

from __future__ import annotations

from .identify import Write
from .sender import BatchSender


class SplitSender:
    """Routes email-only writes to `by_email`, every other write to `main`."""

    def __init__(self, main: BatchSender, by_email: BatchSender) -> None:
        self.main = main
        self.by_email = by_email

    def _split(self, writes: list[Write]) -> tuple[list[Write], list[Write]]:
        main = [w for w in writes if w.identifier.kind != "email"]
        by_email = [w for w in writes if w.identifier.kind == "email"]
        return main, by_email

    def submit(self, writes: list[Write], stream: str) -> None:
        main, by_email = self._split(writes)
        if main:
            self.main.submit(main, stream)
        if by_email:
            self.by_email.submit(by_email, stream)

    def send(self, writes: list[Write], stream: str) -> None:
        main, by_email = self._split(writes)
        if main:
            self.main.send(main, stream)
        if by_email:
            self.by_email.send(by_email, stream)

    def flush(self) -> None:
        """Both senders drained; the first failure raised once both were waited for."""
        failures: list[Exception] = []
        for sender in (self.main, self.by_email):
            if failures:
                sender.abort()  # the run fails anyway: no retries of the other API meanwhile
            try:
                sender.flush()
            except Exception as exc:  # re-raised below, once the other sender was waited for
                failures.append(exc)
        if failures:
            raise failures[0]

    def check_rejections(self) -> None:
        self.main.check_rejections()
        self.by_email.check_rejections()

    def close(self) -> None:
        self.main.close()
        self.by_email.close()

    def abort(self) -> None:
        self.main.abort()
        self.by_email.abort()
