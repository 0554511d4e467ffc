"""The classifier against real server replies, each with its public source (see `real_replies`).

Zero false Invalid is the hard rule: a false Invalid costs a customer a real user. The rows that
say a mailbox is missing, disabled or full must also be read so (both figures count); the README's
confusion table shows where each group lands and which rule decided.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from mapper_emailverify.taxonomy import Status

sys.path.insert(0, str(Path(__file__).parent))
from real_replies import (  # a helper module beside the tests, not a package
    EXPECTED,
    Row,
    acceptable,
    markdown,
    read,
    rows,
    verdict,
)

ROWS = rows()
#: Invalid replies the classifier leaves Unknown, each for a reason (never the other way round:
#: a false Invalid has no place here). Strict: a row that starts passing must leave this list.
MISSES = {
    "550 #2175041 unavailable mail user": "no standard wording; 'unavailable' alone is a block too",
    "551 5.7.1 Domain not found (#id-5.9.2)": "a policy code with a domain-level phrase",
    "521 Server does not accept mail": "a greeting refusal never condemns one address",
    "550 5.7.1 Policy rejection on the target address": "Yandex's wording for a blocked account "
    "says 'policy' under a policy code",
    "552 5.1.1 <example@zoho.com> Mailbox delivery failure policy error": "says 'policy'",
    "550 5.7.1 <kijitora@example.com>: Recipient address rejected: User kijitora@example.com "
    "temporary locked. Please try again later!": "'temporary' and 'try again later': not for good",
}


def test_the_table_is_big_and_sourced() -> None:
    assert len(ROWS) >= 200
    assert all(row.source.startswith(("http", "RFC")) for row in ROWS)
    assert all(row.expected in EXPECTED for row in ROWS)
    assert len({(row.code, row.text) for row in ROWS}) == len(ROWS), "duplicate rows"


@pytest.mark.parametrize(
    "row",
    [
        pytest.param(
            row,
            marks=[pytest.mark.xfail(strict=True, reason=MISSES[row.line])]
            if row.line in MISSES
            else [],
        )
        for row in ROWS
    ],
    ids=[f"{r.provider}:{r.line[:50]}" for r in ROWS],
)
def test_real_reply(row: Row) -> None:
    reading = read(row)
    given = verdict(reading)
    assert acceptable(row, given), (
        f"{row.line!r} ({row.provider}, {row.source}) must give {row.expected}; "
        f"got {given[0]}/{given[1]} by rule {reading.family}: {reading.rule}"
    )


def test_misses_are_real_rows_that_expect_invalid() -> None:
    lines = {row.line: row for row in ROWS}
    assert set(MISSES) <= set(lines)
    assert all(EXPECTED[lines[line].expected][0] is Status.INVALID for line in MISSES)


def test_no_false_invalid() -> None:
    wrong = [
        row
        for row in ROWS
        if EXPECTED[row.expected][0] is not Status.INVALID
        and verdict(read(row))[0] is Status.INVALID
    ]
    assert wrong == []


def test_readme_shows_the_confusion_table() -> None:
    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    assert markdown() in readme, "run: python scripts/reply_table.py --write"
