"""The shipped meltano.yml runs production unless the sandbox is asked for: a run without
`--environment` (and `meltano schedule run`, which ignores the default) must never point the
plugins at the sandbox's endpoints or keys."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent


def project() -> dict[str, Any]:
    loaded = yaml.safe_load((ROOT / "meltano.yml").read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def test_production_is_the_default_environment() -> None:
    assert project()["default_environment"] == "prod"


def test_only_the_sandbox_environment_mentions_the_sandbox() -> None:
    data = project()
    outside = {key: value for key, value in data.items() if key != "environments"}
    assert "CIO_SANDBOX" not in yaml.safe_dump(outside)
    prod = [env for env in data["environments"] if env["name"] == "prod"]
    assert prod and "CIO_SANDBOX" not in yaml.safe_dump(prod)


def test_the_target_checks_landing_with_the_taps_key() -> None:
    [target] = [p for p in project()["plugins"]["loaders"] if p["name"] == "target-customerio-ev"]
    assert target["config"]["app_api_key"] == "$TAP_CUSTOMERIO_PEOPLE_APP_API_KEY"


def test_no_mapper_setting_default_hides_a_meltano_config_set() -> None:
    """A `value:` in the mapper's setting definitions would be passed to the mapping and win over
    what `meltano config set mapper-emailverify ...` wrote (see stream_map/meltano_config.py)."""
    [mapper] = [p for p in project()["plugins"]["mappers"] if p["name"] == "mapper-emailverify"]
    assert [s["name"] for s in mapper["settings"] if "value" in s] == []
