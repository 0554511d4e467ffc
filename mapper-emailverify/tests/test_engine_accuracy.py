"""Accuracy against the world's ground truth: at least 99% correct and not one false Invalid.

Every Person of the default sandbox world (3000 People, every behaviour of the mail world) is
verified in one run, with the hard-bounce history fed from the world's bounce suppressions as the
mapper feeds it from the `suppressions` stream. The measured figures are printed (run with -s) for
the report.
"""

from __future__ import annotations

import asyncio
import collections

from cio_sandbox import Sandbox
from mapper_emailverify import Verifier


def test_accuracy_against_ground_truth(sandbox: Sandbox) -> None:
    world = sandbox.world
    people = list(world.iter_people())
    bounces = [row["email"] for kind in world.HARD_BOUNCE_KINDS for row in world.suppressions(kind)]

    async def go():
        settings = sandbox.mapper_config(smtp_timeout=1.5, hard_bounces=bounces)
        async with Verifier(settings) as verifier:
            return await verifier.verify_many(p.email for p in people)

    results = asyncio.run(go())
    correct = 0
    misses: collections.Counter[tuple[str, str, str]] = collections.Counter()
    false_invalid = []
    for person, result in zip(people, results, strict=True):
        got = (str(result.status), str(result.substatus))
        if got in person.truth.accepted:
            correct += 1
        else:
            misses[
                (
                    person.truth.case,
                    f"{person.truth.status}/{person.truth.substatus}",
                    "/".join(got),
                )
            ] += 1
        # An Invalid the truth accepts is no false one: a greylisting domain gives its honest
        # answer to a recipient asked again after the window (an earlier test may have asked).
        if result.is_invalid and not person.truth.is_invalid and got not in person.truth.accepted:
            false_invalid.append((person.truth.case, got))
    accuracy = correct / len(people)
    print(f"\naccuracy {accuracy:.4f} over {len(people)} people; misses: {dict(misses)}")
    assert not false_invalid
    assert accuracy >= 0.99
