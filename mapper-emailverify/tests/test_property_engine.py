"""Property: fed any string or object, the engine returns a taxonomy pair and never raises.

Strings go through the real engine against the sandbox DNS and mail servers: random domains meet
NXDOMAIN, mutations of world addresses reach the SMTP paths.
"""

from __future__ import annotations

import asyncio
from typing import Any

from cio_sandbox import Sandbox
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mapper_emailverify import PAIRS, Verifier


class Hostile:
    """An object whose every conversion fails."""

    def __str__(self) -> str:
        raise RuntimeError("no str for you")

    __repr__ = __str__

    def __eq__(self, other: object) -> bool:
        raise RuntimeError("no comparison either")

    __hash__ = object.__hash__


def world_addresses(sandbox_world: Any) -> list[str]:
    return [p.email for p in sandbox_world.iter_people() if p.email][:300]


objects = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True),
    st.binary(max_size=40),
    st.lists(st.text(max_size=10), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
    st.just(Hostile()),
    st.just(object()),
    st.just(float("inf")),
)
address_like = st.builds(
    lambda local, domain, pad: f"{pad}{local}@{domain}{pad}",
    st.text(min_size=0, max_size=70),
    st.one_of(
        st.text(max_size=80),
        st.from_regex(r"[a-z0-9-]{1,20}\.(example|com|xn--p1ai)", fullmatch=True),
    ),
    st.sampled_from(["", " ", "\t", "\u00a0", "\n"]),
)


def mutations(world: list[str]) -> st.SearchStrategy[str]:
    return st.builds(
        lambda address, cut, insert, upper: (
            (address[:cut] + insert + address[cut:]).upper()
            if upper
            else address[:cut] + insert + address[cut:]
        ),
        st.sampled_from(world),
        st.integers(0, 40),
        st.text(max_size=3),
        st.booleans(),
    )


def test_engine_never_raises_and_always_answers_in_the_taxonomy(sandbox: Sandbox) -> None:
    verifier = Verifier(sandbox.mapper_config(smtp_timeout=1.0))
    candidates = st.one_of(
        objects, st.text(max_size=300), address_like, mutations(world_addresses(sandbox.world))
    )

    @settings(max_examples=250, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.lists(candidates, min_size=1, max_size=8))
    def check(batch: list[object]) -> None:
        # A new event loop per example; the Verifier's caches carry over.
        results = asyncio.run(verifier.verify_many(batch))
        assert len(results) == len(batch)
        for result in results:
            assert (str(result.status), str(result.substatus)) in PAIRS
            result.to_dict()  # the evidence always serializes

    check()
