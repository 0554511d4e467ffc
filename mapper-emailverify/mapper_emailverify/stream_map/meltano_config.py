"""Settings set the ordinary Meltano way reach the mapper.

Meltano runs a mapper only through one of its mappings (`meltano run tap emailverify target`),
and a mapping's `config:` *replaces* the mapper plugin's own `config:` in `meltano.yml` instead of
adding to it; environment config and environment variables still apply. So `meltano config set
mapper-emailverify smtp_timeout 5`, which writes the plugin's `config:`, would never reach the
mapper. When Meltano runs it as a mapping, the mapper therefore reads its plugin's `config:` from
the project's `meltano.yml` and puts it under everything Meltano passed (mapping config,
environments, environment variables), which keep precedence.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

_MAPPING_NAME = "__MAPPING_NAME"
_VARIABLE = re.compile(r"\$\{(\w+)\}|\$(\w+)")


def meltano_plugin_config(
    environ: Mapping[str, str] = os.environ, logger: logging.Logger | None = None
) -> dict[str, Any]:
    """See the module docstring; problems reading meltano.yml are logged, never fatal."""
    return _read(environ, logger)


def describe(names: Iterable[str]) -> str:
    """The log line that says which settings came from meltano.yml this way."""
    shown = ", ".join(sorted(names))
    return f"Settings from meltano.yml's mapper config, under the mapping's: {shown}."


def _read(environ: Mapping[str, str], logger: logging.Logger | None) -> dict[str, Any]:
    """The `config:` of the mapper plugin whose mapping Meltano is running, or {} elsewhere."""
    root = environ.get("MELTANO_PROJECT_ROOT")
    mapping = next((v for k, v in environ.items() if k.endswith(_MAPPING_NAME)), None)
    if not root or not mapping:
        return {}
    path = Path(root) / "meltano.yml"
    try:
        project = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        if logger is not None:
            logger.warning("Could not read %s for the mapper's settings: %s", path, exc)
        return {}
    mappers = (project.get("plugins") or {}).get("mappers") or []
    for plugin in mappers:
        names = {m.get("name") for m in plugin.get("mappings") or [] if isinstance(m, dict)}
        if mapping in names and isinstance(plugin.get("config"), dict):
            return {str(k): _expanded(v, environ) for k, v in plugin["config"].items()}
    return {}


def _expanded(value: Any, environ: Mapping[str, str]) -> Any:
    """Meltano expands $VAR and ${VAR} in config values; so does this."""
    if isinstance(value, str):
        return _VARIABLE.sub(lambda m: environ.get(m.group(1) or m.group(2), ""), value)
    if isinstance(value, list):
        return [_expanded(v, environ) for v in value]
    return value
