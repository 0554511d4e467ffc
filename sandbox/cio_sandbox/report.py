"""What a run left in the sandbox's Customer.io, measured against the world's ground truth.

The demo, the end-to-end tests and the benchmarks all judge a run the same way: a Person's verdict
is what the workspace now holds for it (the traits the run wrote, else the `EV_*` attributes it
already had), and a verdict is correct when its (status, substatus) pair is one the ground truth
accepts. ``describe_world`` says what a world holds before any run; ``accuracy_by_provider`` splits
a set of verdicts by the big provider each address is on.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .world import Person, World
from .world_data import INVALID, PROVIDER_NAMES, VALID

STATUS_ORDER = ("Valid", "Invalid", "Catch-All", "Disposable", "Unknown")


@dataclass
class RunReport:
    people: int = 0
    with_address: int = 0
    verdicts: int = 0  # People holding an EV_Status after the run
    verdicts_with_address: int = 0
    written: int = 0  # People the run wrote to
    writes: int = 0  # identify calls that landed (a Person written twice counts twice)
    correct: int = 0
    false_invalid: int = 0
    missing: list[str] = field(default_factory=list)  # cio_ids with an address but no verdict
    # cio_id, got status/substatus, case
    wrong: list[tuple[str, str, str, str]] = field(default_factory=list)
    by_status: Counter[str] = field(default_factory=Counter)
    # (status, substatus); a verdict written without a substatus counts under None
    by_substatus: Counter[tuple[str, str | None]] = field(default_factory=Counter)
    timestamps_unix: bool = True

    @property
    def coverage(self) -> float:
        """Share of People with an address that hold a verdict."""
        return self.verdicts_with_address / self.with_address if self.with_address else 1.0

    @property
    def accuracy(self) -> float:
        return self.correct / self.verdicts if self.verdicts else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "people": self.people,
            "with_address": self.with_address,
            "verdicts": self.verdicts,
            "written": self.written,
            "writes": self.writes,
            "coverage": round(self.coverage, 6),
            "accuracy": round(self.accuracy, 6),
            "false_invalid": self.false_invalid,
            "by_status": dict(self.by_status),
            "timestamps_unix": self.timestamps_unix,
        }


def current_traits(person: Person, landed: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The Person's EV attributes as the workspace holds them after the run."""
    traits = {k: v for k, v in person.attributes.items() if k.startswith("EV_")}
    traits.update(landed.get(person.cio_id, {}))
    return traits


def evaluate(
    world: World,
    landed: dict[str, dict[str, Any]],
    writes: Counter[str] | None = None,
    people: list[Person] | None = None,
    prefix: str = "EV_",
) -> RunReport:
    """Score a run over ``people`` (default: the whole world)."""
    report = RunReport()
    for person in people if people is not None else world.iter_people():
        report.people += 1
        has_address = bool(person.email and person.email.strip())
        report.with_address += has_address
        if person.cio_id in landed:
            report.written += 1
        traits = current_traits(person, landed)
        status, substatus = traits.get(f"{prefix}Status"), traits.get(f"{prefix}SubStatus")
        if status is None:
            if has_address:
                report.missing.append(person.cio_id)
            continue
        report.verdicts += 1
        report.verdicts_with_address += has_address
        report.by_status[status] += 1
        report.by_substatus[(status, substatus)] += 1
        stamp = traits.get(f"{prefix}Validation_Timestamp")
        if person.cio_id in landed and not _is_unix_seconds(stamp):
            report.timestamps_unix = False
        if (status, substatus) in person.truth.accepted:
            report.correct += 1
        else:
            report.wrong.append((person.cio_id, status, str(substatus), person.truth.case))
            if status == INVALID and not person.truth.is_invalid:
                report.false_invalid += 1
    report.writes = sum(writes.values()) if writes is not None else report.written
    return report


def _is_unix_seconds(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return 1_000_000_000 <= value < 10_000_000_000
    return (
        isinstance(value, str) and value.isdigit() and 1_000_000_000 <= int(value) < 10_000_000_000
    )


def bar_chart(counts: Counter[str], width: int = 40) -> list[str]:
    total = sum(counts.values()) or 1
    biggest = max(counts.values(), default=1) or 1
    lines = []
    for status in [*STATUS_ORDER, *sorted(set(counts) - set(STATUS_ORDER))]:
        n = counts.get(status, 0)
        bar = "█" * round(width * n / biggest)
        lines.append(f"  {status:<11} {bar:<{width}} {n:>7}  {100 * n / total:5.1f}%")
    return lines


def render(report: RunReport, title: str = "Email verification results") -> str:
    """A short report a marketer can read."""
    lines = [
        title,
        "=" * len(title),
        f"People in the workspace:        {report.people:>8}",
        f"People with an email address:   {report.with_address:>8}",
        f"People holding a verdict:       {report.verdicts:>8}  "
        f"(coverage {100 * report.coverage:.1f}%)",
        f"People written in this run:     {report.written:>8}",
        "",
        "EV_Status of every Person:",
        *bar_chart(report.by_status),
        "",
        f"Accuracy against the sandbox's ground truth: {100 * report.accuracy:.2f}% "
        f"({report.correct}/{report.verdicts}); false Invalids: {report.false_invalid}",
    ]
    return "\n".join(lines)


@dataclass
class ProviderAccuracy:
    """How the verdicts of one provider's People compare with their ground truth."""

    people: int = 0  # People of this provider whose address has a verdict
    correct: int = 0  # the verdict is one the truth accepts (``Truth.accepted``)
    exact: int = 0  # the verdict is the truth's own (status, substatus)
    false_invalid: int = 0  # Invalid while the truth is not Invalid
    false_valid: int = 0  # Valid while the truth is not Valid

    @property
    def accuracy(self) -> float:
        """Share of correct verdicts (0.0 for no People)."""
        return self.correct / self.people if self.people else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "people": self.people,
            "correct": self.correct,
            "exact": self.exact,
            "false_invalid": self.false_invalid,
            "false_valid": self.false_valid,
            "accuracy": round(self.accuracy, 6),
        }


def accuracy_by_provider(
    world: World, verdicts: Mapping[str, tuple[str, str]]
) -> dict[str, ProviderAccuracy]:
    """Verdicts scored against the ground truth, per big provider.

    ``verdicts`` maps an address, exactly as the People carry it (``Person.email``), to the
    ``(status, substatus)`` a verifier gave it. Every Person of the workspace whose address has a
    verdict counts once (People sharing an address each count). The keys are the provider names
    of ``world_data.PROVIDER_NAMES`` that have People with a verdict, in that order, then
    ``"other"`` for People on any other domain (``Truth.provider`` None).
    """
    found: dict[str, ProviderAccuracy] = {}
    for person in world.iter_people():
        if person.email is None or person.email not in verdicts:
            continue
        verdict = tuple(verdicts[person.email])
        truth = person.truth
        row = found.setdefault(truth.provider or "other", ProviderAccuracy())
        row.people += 1
        row.correct += verdict in truth.accepted
        row.exact += verdict == (truth.status, truth.substatus)
        row.false_invalid += verdict[0] == INVALID and truth.status != INVALID
        row.false_valid += verdict[0] == VALID and truth.status != VALID
    order = [*PROVIDER_NAMES, "other"]
    return {name: found[name] for name in order if name in found}


def describe_world(world: World) -> str:
    """What a world holds, by ground-truth status (`cio-sandbox world`, `serve` and the demo)."""
    stats = world.stats()
    lines = [
        f"World seed {world.seed}, region {world.region}: {stats['people']} People "
        f"({stats['email_only']} email-only), {stats['domains']} domains, "
        f"{stats['mail_hosts']} mail hosts.",
        "Ground truth by EV_Status:",
    ]
    for status, count in sorted(stats["by_status"].items(), key=lambda kv: -kv[1]):
        lines.append(f"  {status:<11} {count:>7}")
    return "\n".join(lines)
