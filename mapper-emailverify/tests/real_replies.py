"""The table of real server replies (`tests/data/real_replies/*.tsv`) and what the classifier makes
of it: the parametrized test reads it, and `scripts/reply_table.py` writes its confusion table into
the mapper's README.

Each row is a reply a real mail server wrote, with its source and the verdict it must give. RCPT
and DATA replies are read as RCPT replies (a reply about the message must not condemn the
mailbox either); MAIL and banner replies are read as refusals before any recipient, which can never
make an address Invalid (so do HELO and AUTH replies).
"""

from __future__ import annotations

import csv
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

from mapper_emailverify.engine.smtp.replies import (
    VERDICT_OF,
    Outcome,
    Reading,
    Reply,
    read_rcpt,
    read_refusal,
)
from mapper_emailverify.taxonomy import Status, SubStatus

DATA = Path(__file__).parent / "data" / "real_replies"
LABELS = (
    "not_found",
    "disabled",
    "full",
    "bad_address",
    "full_temporary",
    "sender",
    "blocked",
    "rate",
    "message",
    "deferred",
    "policy_recipient",
)
#: The verdict each label must give; for the Unknown labels any Unknown reason will do.
EXPECTED: dict[str, tuple[Status, SubStatus | None]] = {
    "not_found": (Status.INVALID, SubStatus.MAILBOX_NOT_FOUND),
    "disabled": (Status.INVALID, SubStatus.MAILBOX_DISABLED),
    "full": (Status.INVALID, SubStatus.MAILBOX_FULL),
    "bad_address": (Status.INVALID, SubStatus.INVALID_SYNTAX),
    "full_temporary": (Status.UNKNOWN, SubStatus.MAILBOX_FULL),
    **{label: (Status.UNKNOWN, None) for label in LABELS[5:]},
}
#: Invalid sub-statuses that may stand for one another in the confusion table's columns.
COLUMNS = (
    "Invalid/not_found",
    "Invalid/disabled",
    "Invalid/full",
    "Invalid/syntax",
    "Unknown",
    "Valid",
)


@dataclass(frozen=True)
class Row:
    code: int
    stage: str
    text: str
    expected: str
    provider: str
    source: str

    @property
    def line(self) -> str:
        return f"{self.code} {self.text}"


def rows() -> list[Row]:
    found = []
    for path in sorted(DATA.glob("*.tsv")):
        with path.open(encoding="utf-8", newline="") as handle:
            for record in csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE):
                found.append(
                    Row(
                        int(record["code"]),
                        record["stage"],
                        record["text"],
                        record["expected"],
                        record["provider"],
                        record["source"],
                    )
                )
    return found


def read(row: Row) -> Reading:
    reply = Reply(row.code, (row.text,))
    if row.stage in ("MAIL", "banner", "HELO", "AUTH"):
        return read_refusal(reply, row.stage)
    return read_rcpt(reply)


def verdict(reading: Reading) -> tuple[Status, SubStatus | None]:
    if reading.outcome is Outcome.ACCEPTED:
        return Status.VALID, SubStatus.MAILBOX_EXISTS
    return VERDICT_OF[reading.outcome]


def column(given: tuple[Status, SubStatus | None]) -> str:
    status, substatus = given
    if status is Status.INVALID:
        short = {
            SubStatus.MAILBOX_NOT_FOUND: "not_found",
            SubStatus.MAILBOX_DISABLED: "disabled",
            SubStatus.MAILBOX_FULL: "full",
            SubStatus.INVALID_SYNTAX: "syntax",
        }
        return f"Invalid/{short[substatus]}" if substatus in short else "Invalid/other"
    return str(status)


def acceptable(row: Row, given: tuple[Status, SubStatus | None]) -> bool:
    """The verdict the row's label asks for. A reply that says the account exists (Gmail's
    "receiving mail at a rate") may give Valid instead of Unknown: never Invalid."""
    status, substatus = EXPECTED[row.expected]
    if status is Status.UNKNOWN and given[0] is Status.VALID:
        return row.expected == "rate"
    if given[0] is not status:
        return False
    if {substatus, given[1]} <= _NO_MAILBOX:
        return True  # missing or disabled: both say no mailbox takes this address's mail
    return substatus is None or given[1] is substatus


_NO_MAILBOX = {SubStatus.MAILBOX_NOT_FOUND, SubStatus.MAILBOX_DISABLED}


def confusion() -> tuple[dict[str, Counter[str]], dict[str, Counter[str]]]:
    """Per expected label: the verdict columns given, and the rule families that decided."""
    table: dict[str, Counter[str]] = defaultdict(Counter)
    rules: dict[str, Counter[str]] = defaultdict(Counter)
    for row in rows():
        reading = read(row)
        table[row.expected][column(verdict(reading))] += 1
        rules[row.expected][reading.family] += 1
    return table, rules


def markdown() -> str:
    """The confusion table the README shows."""
    table, rules = confusion()
    total = sum(sum(c.values()) for c in table.values())
    invalid_labels = {label for label, (status, _) in EXPECTED.items() if status is Status.INVALID}
    false_invalid = sum(
        n
        for label, counts in table.items()
        if label not in invalid_labels
        for col, n in counts.items()
        if col.startswith("Invalid")
    )
    should = sum(sum(table[label].values()) for label in invalid_labels)
    caught = sum(
        n
        for label in invalid_labels
        for col, n in table[label].items()
        if col.startswith("Invalid")
    )
    lines = [
        f"{total} real replies; false Invalid: **{false_invalid}**; "
        f"Invalid replies read as Invalid: **{caught} of {should}**.",
        "",
        "| expected | rows | " + " | ".join(COLUMNS) + " | rules that decided |",
        "|---|---|" + "---|" * len(COLUMNS) + "---|",
    ]
    for label in LABELS:
        counts = table.get(label, Counter())
        if not counts:
            continue
        decided = ", ".join(f"{name} ({n})" for name, n in rules[label].most_common(3))
        cells = " | ".join(str(counts.get(col, 0) or "") for col in COLUMNS)
        lines.append(f"| {label} | {sum(counts.values())} | {cells} | {decided} |")
    return "\n".join(lines)
