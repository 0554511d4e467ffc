"""Verdicts already written are protected: a re-check that ends in a transient Unknown (a
greylisting server, a timeout) keeps the Person's earlier definite verdict, so nothing is
rewritten; `reverify_before` re-checks exactly the verdicts of a faulty run."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from cio_sandbox import Sandbox, World
from cio_sandbox.pipeline import MAPPER, run_piped

pytestmark = pytest.mark.slow


def test_a_transient_recheck_keeps_the_earlier_verdicts_in_the_workspace(tmp_path: Path) -> None:
    with Sandbox(World(seed=41, people=400)) as sb:
        sb.obs.faults.app_rate_limit = 0
        fast = {"requests_per_second": 200}
        first = run_piped(sb, tmp_path / "first", tap=fast)
        assert first.ok, {name: log[-2000:] for name, log in first.logs.items()}
        before = sb.obs.landed_copy()
        definite = {k for k, v in before.items() if v.get("EV_Status") not in (None, "Unknown")}
        assert len(definite) > 200

        # Every mail server now greylists: every re-check ends in Unknown/greylisted.
        sb.obs.reset_traffic()
        sb.obs.faults.smtp_fault, sb.obs.faults.smtp_fault_rate = "greylist", 1.0
        second = run_piped(
            sb,
            tmp_path / "second",
            tap=fast,
            mapper={"reverify_after_days": 0, "cache_path": str(tmp_path / "fresh.sqlite")},
        )
        assert second.ok, {name: log[-2000:] for name, log in second.logs.items()}
        after = sb.obs.landed_copy()

        def verdict(values: dict[str, object]) -> tuple[object, object]:
            return values.get("EV_Status"), values.get("EV_SubStatus")

        # Verdicts that need no mail server (disposable, DNS) are re-checked to the same verdict
        # with a new timestamp; none may turn into the greylisting Unknown.
        replaced = [k for k in definite if verdict(after[k]) != verdict(before[k])]
        assert replaced == [], [(before[k], after[k]) for k in replaced[:5]]
    assert "re-check failed, earlier verdict kept" in second.logs[MAPPER]


def test_reverify_before_rechecks_what_a_run_wrote(tmp_path: Path) -> None:
    with Sandbox(World(seed=42, people=300)) as sb:
        sb.obs.faults.app_rate_limit = 0
        fast = {"requests_per_second": 200}
        assert run_piped(sb, tmp_path / "first", tap=fast).ok
        sb.obs.reset_traffic()
        again = run_piped(sb, tmp_path / "again", tap=fast)  # fresh verdicts and cache: no probe
        assert again.ok and sum(sb.obs.smtp_connections.values()) == 0
        time.sleep(1.1)
        cutoff = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        sb.obs.reset_traffic()
        redo = run_piped(sb, tmp_path / "redo", tap=fast, mapper={"reverify_before": cutoff})
        assert redo.ok, {name: log[-2000:] for name, log in redo.logs.items()}
        assert sum(sb.obs.smtp_connections.values()) > 0  # verified again despite the cache
