"""The ``partition`` setting: ``i/N`` selects a stable share of People, so N jobs split a workspace.

A Person belongs to share ``blake2b(bare cio_id, 8 bytes) mod N`` (big-endian): a fixed hash, so
the share is the same on every run, machine and Python version (Python's ``hash()`` is salted per
process). The bare cio_id (without ``cio_``) is hashed, so both forms of an id fall in one share.
The App API's search cannot filter by hash: every partition lists everyone, and drops the others
before hydration, where most of a run's requests go (tap README, "Partitioned runs").
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from .people import bare_cio_id

_FORM = re.compile(r"\s*([0-9]+)\s*/\s*([0-9]+)\s*")
PARTITION_EXAMPLE = "0/3"


def partition_of(cio_id: str, count: int) -> int:
    """The share (0 to ``count`` - 1) the Person ``cio_id`` belongs to."""
    raw = hashlib.blake2b(bare_cio_id(cio_id).encode(), digest_size=8).digest()
    return int.from_bytes(raw, "big") % count


@dataclass(frozen=True, slots=True)
class Partition:
    """Share ``index`` of ``count``."""

    index: int
    count: int

    @classmethod
    def parse(cls, value: object) -> Partition | None:
        """``"i/N"`` with 0 <= i < N as a `Partition`; None for anything else."""
        if not isinstance(value, str) or not (match := _FORM.fullmatch(value)):
            return None
        index, count = int(match[1]), int(match[2])
        if not 0 <= index < count:
            return None
        return cls(index, count)

    def selects(self, cio_id: str) -> bool:
        """Whether the Person ``cio_id`` is this partition's."""
        return partition_of(cio_id, self.count) == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def partition_error(value: object) -> str | None:
    """Why ``value`` is not a partition, in one line; None when it is one (or is unset).

    A value that is not a string is the schema's to report, once."""
    if not isinstance(value, str) or Partition.parse(value) is not None:
        return None
    return (
        f"partition must be i/N with 0 <= i < N, both integers (e.g. {PARTITION_EXAMPLE}, "
        f"1/3, 2/3 for three jobs): fix or remove partition"
    )
