"""The search cursor: when paging ends, and when a server that never advances must stop us.

Customer.io ends a search with ``next`` null, missing or ``""``; an empty page that still carries a
cursor also ends it. A cursor seen before, or a page whose People were all delivered already, means
the server is going round in circles: stop with an error rather than loop forever or emit
duplicates.
"""

from __future__ import annotations

from collections.abc import Sequence

from .errors import StuckCursorError


class SearchCursor:
    """Tracks the ``start``/``next`` cursor of one search and guards it against loops."""

    def __init__(self) -> None:
        self.start: str | None = None
        self.pages = 0
        self.finished = False
        self._seen_cursors: set[str] = set()
        self._seen_pages: set[tuple[str, str, int]] = set()

    def advance(self, next_cursor: object, page_ids: Sequence[str]) -> None:
        """Record a page (its cio_ids in order) and the ``next`` it carried."""
        self.pages += 1
        if page_ids:
            signature = (page_ids[0], page_ids[-1], len(page_ids))
            if signature in self._seen_pages:
                raise StuckCursorError(self._stuck_message("returned the same page twice"))
            self._seen_pages.add(signature)
        cursor = "" if next_cursor is None else str(next_cursor)
        if not cursor or not page_ids:
            self.finished = True
            return
        if cursor == self.start or cursor in self._seen_cursors:
            raise StuckCursorError(self._stuck_message("returned a cursor it had already given"))
        self._seen_cursors.add(cursor)
        self.start = cursor

    def _stuck_message(self, what: str) -> str:
        return (
            f"Customer.io's People search {what} (page {self.pages}); stopping instead of looping. "
            f"Run the tap again; if it persists, report it to Customer.io support."
        )
