"""The listing: every Person the search selects, listed (ids only) before anyone is hydrated.

**Why first.** Customer.io's search cursor may be an offset into the result set as it is when the
next page is asked for (its example cursor ``"MDox"`` is base64 of ``0:1``; the sandbox serves that
reading as ``Faults.app_cursor_mode = "live_offset"``). A Person leaving the result set behind such
a cursor shifts every later Person forward by one, and the one carried past the cursor is never
listed. The job itself makes People leave: the target writes ``EV_Status`` onto the People the
``unverified`` filter selects, as soon as their records are emitted. So the whole listing ends
before the first record is hydrated or emitted, and hydration reads from this snapshot.

**Why twice.** Others may still delete People while the listing runs. A second pass walks the
search again from the start, and its ids are unioned with the first's: a Person skipped by one pass
is listed by the other, unless both skip the very same Person, which takes a deletion behind each
cursor at the moment it crosses that Person. No number of passes is a guarantee over an opaque live
cursor (deletions timed against every pass can always hide someone); each pass costs
ceil(N / page_size) requests, a tenth of hydration's N / 100 at the 1000 maximum. Two passes square
an already small chance of a miss for 10 % more requests, and a Person missed anyway is read by the
next run. A first pass that fits on one page needs no second: a single answer is the result set of
one moment, and a skip needs a page boundary to carry someone past. An incremental run (a few
hundred new sign-ups) so costs one search request.

**Staggered.** The second pass runs beside the first (its own thread, the same rate budget), never
in step with it: it asks for its page k only once the first has received its page k+1. Two cursors
walking in step would meet the same deletion at the same page boundary and skip the same People;
staggered, they never stand at the same boundary at the same moment, so a deletion makes both skip
the same Person no more easily than when the passes ran one after the other, and the listing takes
about one pass's time (one page more), not two (each pass is one request at a time, latency-bound).
Both passes end before the listing returns: nothing is hydrated or emitted before then. The second
pass asks for its first page only once the first pass has a second one, so a one-page listing still
makes one request. `listing_pass` tells which pass a search request belongs to.

**Repeats** are dropped against the whole listing: a Person listed by both passes (the normal
case), or twice by one pass (a live cursor moved back by People created before it). The digest set
marks which passes saw each Person, so the summary tells the two apart however the passes
interleave, and counts the People the second pass alone listed once both are over.

**Partitions.** With ``keep`` (the ``partition`` setting), People outside it are counted
(`outside`) and dropped as each page arrives: they take no place in the snapshot, the total or
hydration; the search requests are the same as without.

**Memory.** The dedupe keeps no strings: each cio_id is a 64-bit BLAKE2b digest under a key drawn
per run, in open-addressing tables (`array('Q')`, linear probing, 3/8 to 3/4 full, 256 of them so
that growing one never needs the whole table twice): 11 to 21 bytes a Person, 134 MB at 10 million,
where a Python set of strings would take about 1 GB. Two different cio_ids share a digest (62 bits
of it: the lowest two mark the passes) with probability about n²/2^63 (1e-5 over a 10-million
listing, 1e-9 over 100,000); the loser would be
dropped as a repeat, and read by the next run (whose key differs). The first
`SPILL_AFTER` identifiers stay in memory; the rest go to an anonymous temporary file (unlinked at
creation, owner-only), `SPILL_BATCH` at a time, and are read back once, in order, while hydrating.
"""

from __future__ import annotations

import enum
import hashlib
import marshal
import os
import tempfile
import threading
from array import array
from collections.abc import Callable, Iterator
from typing import IO, TYPE_CHECKING, Any

from .people import HYDRATION_BATCH, Identifier, PeopleSearch

if TYPE_CHECKING:
    from .people import Sender
    from .stats import RunStats

LISTING_PASSES = 2  # 1 or 2: the digest set marks which of two passes saw a Person
SPILL_AFTER = 50_000  # identifiers kept in memory (about 250 bytes each) before the rest spill
DIRECTORY_BITS = 8  # the digest set's tables: 256, each growing on its own
INITIAL_SLOTS = 1 << 8  # each table's first size: 512 kB in all
MAX_LOAD = 0.75
SPILL_BATCH = 10_000  # identifiers written to (and read back from) the spill file at once
SPILL_BUFFER = 1 << 16  # bytes of the spill file's write and read buffer
_MARKS = 3  # the lowest two bits of a slot: bit p set when pass p (0 or 1) saw the Person
_PART_SHIFT = 64 - DIRECTORY_BITS

_walking = threading.local()  # the pass the calling thread walks


def listing_pass() -> int | None:
    """The listing pass (1 or 2) the calling thread walks; None outside a listing.

    Both passes send through the same `Sender` from two threads: this tells which pass a search
    request belongs to (tests key their workspace changes on it)."""
    number: int | None = getattr(_walking, "number", None)
    return number


class Seen(enum.Enum):
    """What adding an id found."""

    NEW = "new"  # not listed before
    AGAIN = "again"  # listed by the other pass only so far: expected
    REPEAT = "repeat"  # listed before by this same pass: the cursor went back


class DigestSet:
    """A set of strings kept as keyed 64-bit digests in open-addressing ``array('Q')`` tables.

    A slot holds a digest with its lowest two bits replaced by pass marks (bit p: seen by pass p);
    0 is an empty slot, and no digest is stored as 0 to 3. The top `DIRECTORY_BITS` of a digest
    pick one of 256 tables; each doubles on its own when 3/4 full (so it stays 3/8 to 3/4 full),
    so a doubling briefly needs 1/256 of the memory again, not all of it: 134 MB (2^24 slots) for
    6.3 to 12.6 million ids, and never much more.
    """

    def __init__(self, slots: int = INITIAL_SLOTS) -> None:
        """``slots``: each table's first size (a power of two)."""
        if slots < 2 or slots & (slots - 1):
            raise ValueError("slots must be a power of two")
        self._key = os.urandom(16)
        self._tables = [array("Q", [0]) * slots for _ in range(1 << DIRECTORY_BITS)]
        self._sizes = [0] * (1 << DIRECTORY_BITS)
        self.size = 0

    @property
    def slots(self) -> int:
        return sum(len(table) for table in self._tables)

    def digest(self, text: str) -> int:
        raw = hashlib.blake2b(text.encode(), digest_size=8, key=self._key).digest()
        return (int.from_bytes(raw, "little") & ~_MARKS) or 4

    def add(self, text: str, mark: int = 0) -> Seen:
        """Add ``text`` as seen by pass ``mark`` (0 or 1); say whether (and by whom) it was seen."""
        entry = self.digest(text)
        bit = 1 << mark
        part = entry >> _PART_SHIFT
        table = self._tables[part]
        mask = len(table) - 1
        i = (entry >> 2) & mask
        while True:
            slot = table[i]
            if slot == 0:
                table[i] = entry | bit
                self.size += 1
                self._sizes[part] += 1
                if self._sizes[part] > MAX_LOAD * len(table):
                    self._grow(part)
                return Seen.NEW
            if slot & ~_MARKS == entry:
                if slot & bit:
                    return Seen.REPEAT
                table[i] = slot | bit
                return Seen.AGAIN
            i = (i + 1) & mask

    def __contains__(self, text: object) -> bool:
        if not isinstance(text, str):
            return False
        entry = self.digest(text)
        table = self._tables[entry >> _PART_SHIFT]
        mask = len(table) - 1
        i = (entry >> 2) & mask
        while slot := table[i]:
            if slot & ~_MARKS == entry:
                return True
            i = (i + 1) & mask
        return False

    def __len__(self) -> int:
        return self.size

    def _grow(self, part: int) -> None:
        old = self._tables[part]
        table = array("Q", [0]) * (2 * len(old))
        mask = len(table) - 1
        for slot in old:
            if slot:
                i = (slot >> 2) & mask
                while table[i]:
                    i = (i + 1) & mask
                table[i] = slot
        self._tables[part] = table


class Snapshot:
    """The listed identifiers, each once, in the order first listed; spilled to disk past
    ``spill_after``. `chunks` reads them back once, sequentially; `close` drops the file."""

    def __init__(self, spill_after: int = SPILL_AFTER) -> None:
        self.seen = DigestSet()
        self.spill_after = spill_after
        self._memory: list[Identifier] = []
        self._pending: list[tuple[str | None, ...]] = []  # the next batch to spill
        self._file: IO[bytes] | None = None
        self.spilled = 0

    def add(self, hit: Identifier, mark: int = 0) -> Seen:
        seen = self.seen.add(hit.cio_id, mark)
        if seen is Seen.NEW:
            if len(self._memory) < self.spill_after:
                self._memory.append(hit)
            else:
                self._pending.append(tuple(hit))
                self.spilled += 1
                if len(self._pending) >= SPILL_BATCH:
                    self._spill()
        return seen

    def __len__(self) -> int:
        return len(self._memory) + self.spilled

    def _spill(self) -> None:
        if self._file is None:
            # Anonymous: unlinked at creation (O_TMPFILE where it exists), mode 0600.
            self._file = tempfile.TemporaryFile(  # noqa: SIM115  # open until close(): read back
                buffering=SPILL_BUFFER, prefix="tap-customerio-people-"
            )
        # marshal: strings and None only, written and read by this process (C speed either way).
        marshal.dump(self._pending, self._file)
        self._pending = []

    def identifiers(self) -> Iterator[Identifier]:
        """Every identifier, in order: memory first, then the spill file from its start."""
        yield from self._memory
        if self._pending:
            self._spill()
        if self._file is None:
            return
        self._file.flush()
        self._file.seek(0)
        while True:
            try:
                batch = marshal.load(self._file)
            except EOFError:
                return
            yield from map(Identifier._make, batch)

    def chunks(self, size: int = HYDRATION_BATCH) -> Iterator[list[Identifier]]:
        chunk: list[Identifier] = []
        for hit in self.identifiers():
            chunk.append(hit)
            if len(chunk) == size:
                yield chunk
                chunk = []
        if chunk:
            yield chunk

    def close(self) -> None:
        self._pending = []
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> Snapshot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class PeopleListing:
    """Walks the search ``passes`` times into one `Snapshot`: the second pass (only when the first
    took more than one page) runs beside the first, a page behind it at least (see "Staggered")."""

    def __init__(
        self,
        api: Sender,
        body: dict[str, Any],
        page_size: int,
        *,
        stats: RunStats | None = None,
        passes: int = LISTING_PASSES,
        spill_after: int = SPILL_AFTER,
        keep: Callable[[str], bool] | None = None,
    ) -> None:
        """``keep``: whether a cio_id is this run's (a partition); None keeps everyone."""
        if passes not in (1, 2):
            raise ValueError("passes must be 1 or 2")
        self.api, self.body, self.page_size = api, body, page_size
        self.stats = stats
        self.passes = passes
        self.keep = keep
        self.snapshot = Snapshot(spill_after)
        self.passes_run = 0
        self.pages = 0  # search requests answered, every pass
        self.hits = 0  # identifiers they held, repeats included
        self.duplicates = 0  # listed twice by the same pass
        self.outside = 0  # identifiers `keep` dropped, every pass (so about passes x the others)
        self.second_pass_only = 0  # listed by the second pass alone: skipped by the first, or new
        self._adding = threading.Lock()  # the snapshot and the counts, shared by both passes
        self._turn = threading.Condition()  # the second pass waits on the first's progress
        self._received = 0  # pages of the first pass answered
        self._first_over = False
        self._stop = False  # a pass failed: the other stands down
        self._failure: BaseException | None = None  # the second pass's, raised by `run`
        self._only_second = 0  # NEW to the second pass, less those the first listed afterwards

    def run(self) -> Snapshot:
        """List every Person the search selects, each once; the caller closes the snapshot.

        Returns once both passes are over (the second runs in a thread of its own)."""
        second = None
        if self.passes == 2:
            second = threading.Thread(target=self._second_pass, name="listing-pass-2", daemon=True)
        try:
            if second is not None:
                second.start()
            try:
                self._walk(0)
            except BaseException:
                self._halt()  # before the second pass hears the first is over
                raise
            finally:
                self._first_pass_over()
            if second is not None:
                second.join()
            if self._failure is not None:
                raise self._failure
        except BaseException:
            self._halt()
            if second is not None:
                second.join()
            self.snapshot.close()
            raise
        self.second_pass_only = self._only_second
        if self._only_second:
            self._count("listing_second_pass_only", self._only_second)
        return self.snapshot

    def _first_pass_over(self) -> None:
        with self._turn:
            self._first_over = True
            self._turn.notify_all()

    def _second_pass(self) -> None:
        try:
            self._walk(1)
        except BaseException as exc:  # raised by `run`, in the caller's thread
            self._failure = exc
            self._halt()

    def _halt(self) -> None:
        with self._turn:
            self._stop = True
            self._turn.notify_all()

    def _may_ask(self, number: int, page: int) -> bool:
        """Whether pass ``number`` (0 or 1) may ask for its ``page`` (1-based) now; the second
        waits until the first has received its page + 1 (or is over, having taken two or more)."""
        with self._turn:
            if number == 0:
                return not self._stop
            self._turn.wait_for(lambda: self._stop or self._first_over or self._received > page)
            if self._stop or not (self._received > page or self._received > 1):
                return False
            if page == 1:
                self.passes_run += 1
            return True

    def _walk(self, number: int) -> None:
        _walking.number = number + 1
        try:
            if number == 0:
                self.passes_run += 1
            pages = PeopleSearch(self.api, self.body, self.page_size).pages()
            asked = 1
            while self._may_ask(number, asked):
                page = next(pages, None)
                if page is None:
                    return
                self._add(page, number)
                if number == 0:
                    with self._turn:
                        self._received = asked
                        self._turn.notify_all()
                asked += 1
        finally:
            _walking.number = None

    def _add(self, page: list[Identifier], number: int) -> None:
        with self._adding:
            self._count("listing_pages")
            self.pages += 1
            self.hits += len(page)
            for hit in page:
                if self.keep is not None and not self.keep(hit.cio_id):
                    self.outside += 1
                    continue
                seen = self.snapshot.add(hit, number)
                if seen is Seen.REPEAT:
                    self.duplicates += 1
                    self._count("listing_duplicates")
                elif seen is Seen.NEW and number:
                    self._only_second += 1
                elif seen is Seen.AGAIN and not number:
                    self._only_second -= 1  # the second pass listed it first: not its alone

    def _count(self, name: str, n: int = 1) -> None:
        if self.stats is not None:
            self.stats.count(name, n)
