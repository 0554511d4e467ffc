"""Meltano Hub-format plugin definitions (`hub/<type>/<name>/<variant>.yml`), built from each
plugin's `--about` so they cannot drift from it.

The layout is the Hub repository's own (`_data/meltano/<type>/<name>/<variant>.yml` in
meltano/hub); the folder is `hub/`, not `plugins/`, because `plugins/` is where Meltano keeps the
lock files of the project in this repository. `meltano add --plugin-type <type> <name> --from-ref
<file>` reads them (README.md, "Add to an existing Meltano project"; tests/test_meltano_add.py).

What comes from where:
- from `--about`: description, capabilities (those the Hub's schema lists for the plugin type),
  every setting (the plugin's own and the singer-sdk built-ins its capabilities bring), its
  description, whether it is `sensitive`, and the required ones (`settings_group_validation`);
- from the repository's `meltano.yml`: each setting's `label`, `kind` and `options` where declared
  there (it knows Meltano's quirks: a fractional number from an environment variable is a Decimal
  Meltano cannot pass on, so some numbers are `integer`), and the extractor's `select`;
- from `METADATA` below: name, namespace, variant, label, pip_url and the Hub's own fields.

No setting carries a `value:` default: Meltano sends a `value:` to the plugin as if the user had set
it, which would hide a `meltano config set` of a mapper setting (the mapping's config wins) and
would make the tap treat `region` as chosen. The plugins apply their own defaults (README.md,
"Settings").
"""

from __future__ import annotations

from typing import Any

VARIANT = "emailverify"
#: pip_url installs from a checkout of this repository (the packages are not on PyPI);
#: Meltano expands the variable when it installs.
CHECKOUT_VARIABLE = "CUSTOMERIO_EV_CHECKOUT"

PLUGIN_TYPES = {
    "tap-customerio-people": "extractors",
    "mapper-emailverify": "mappers",
    "target-customerio-ev": "loaders",
}

METADATA: dict[str, dict[str, Any]] = {
    "tap-customerio-people": {
        "label": "Customer.io People",
        "keywords": ["meltano_sdk", "api", "customer.io", "email verification"],
        "domain_url": "https://customer.io",
        # The App API key is the one required setting.
        "settings_group_validation": [["app_api_key"]],
    },
    "mapper-emailverify": {
        "label": "Email verification (EV_Status)",
        "keywords": ["meltano_sdk", "email verification", "smtp"],
        "settings_group_validation": [[]],
    },
    "target-customerio-ev": {
        "label": "Customer.io EV traits",
        "keywords": ["meltano_sdk", "api", "customer.io", "email verification"],
        "domain_url": "https://customer.io",
        # Pipelines API (the default) or, with `api: track`, the Track API.
        "settings_group_validation": [
            ["pipelines_api_key"],
            ["api", "track_site_id", "track_api_key"],
        ],
    },
}

#: The capabilities the Hub's schema allows per plugin type (meltano/hub,
#: schemas/common/<type>_specific.schema.json); `about` is not among the mappers'.
HUB_CAPABILITIES: dict[str, frozenset[str]] = {
    "extractors": frozenset(
        {
            "properties",
            "catalog",
            "discover",
            "state",
            "about",
            "stream-maps",
            "schema-flattening",
            "activate-version",
            "batch",
            "test",
            "log-based",
            "structured-logging",
        }
    ),
    "mappers": frozenset({"stream-maps", "structured-logging"}),
    "loaders": frozenset(
        {
            "about",
            "stream-maps",
            "activate-version",
            "batch",
            "soft-delete",
            "hard-delete",
            "datatype-failsafe",
            "schema-flattening",
            "target-schema",
            "validate-records",
            "structured-logging",
        }
    ),
}
#: Top-level keys a Hub definition may have (meltano/hub, schemas/plugin_definitions/*.json).
HUB_KEYS = frozenset(
    {
        "name",
        "namespace",
        "variant",
        "label",
        "description",
        "pip_url",
        "executable",
        "capabilities",
        "settings",
        "settings_group_validation",
        "select",
        "keywords",
        "domain_url",
        "maintenance_status",
        "quality",
        "repo",
        "docs",
        "logo_url",
    }
)
HUB_SETTING_KEYS = frozenset({"name", "label", "kind", "description", "sensitive", "options"})
HUB_KINDS = frozenset(
    {
        "oauth",
        "hidden",
        "password",
        "date_iso8601",
        "file",
        "email",
        "integer",
        "options",
        "object",
        "array",
        "boolean",
        "string",
        "decimal",
    }
)
_KIND_OF_TYPE = {
    "boolean": "boolean",
    "integer": "integer",
    "number": "decimal",
    "array": "array",
    "object": "object",
    "string": "string",
}
_WORDS = {
    "api": "API",
    "url": "URL",
    "id": "ID",
    "ids": "IDs",
    "smtp": "SMTP",
    "dns": "DNS",
    "mx": "MX",
    "helo": "HELO",
    "ttl": "TTL",
    "rcpt": "RCPT",
    "socks": "SOCKS",
    "emailverify": "EmailVerify.io",
}


def path_of(plugin: str) -> str:
    """Where the definition lives, relative to the repository root."""
    return f"hub/{PLUGIN_TYPES[plugin]}/{plugin}/{VARIANT}.yml"


def pip_url(plugin: str) -> str:
    return f"-e ${{{CHECKOUT_VARIABLE}}}/{plugin}"


def definition(
    plugin: str,
    info: dict[str, Any],
    declared: dict[str, dict[str, Any]],
    select: list[str] | None = None,
) -> dict[str, Any]:
    """The Hub definition of `plugin` from its `--about` (`info`) and the settings `meltano.yml`
    declares for it (`declared`, by name)."""
    kind = PLUGIN_TYPES[plugin]
    meta = METADATA[plugin]
    data: dict[str, Any] = {
        "name": plugin,
        "namespace": plugin.replace("-", "_"),
        "variant": VARIANT,
        "label": meta["label"],
        "description": info["description"],
        "pip_url": pip_url(plugin),
        "executable": plugin,
        "capabilities": sorted(c for c in info["capabilities"] if c in HUB_CAPABILITIES[kind]),
        "keywords": meta["keywords"],
        "maintenance_status": "active",
        "quality": "unknown",
        "settings": [
            _setting(name, spec, declared.get(name, {}))
            for name, spec in sorted(info["settings"]["properties"].items())
        ],
        "settings_group_validation": meta["settings_group_validation"],
    }
    if "domain_url" in meta:
        data["domain_url"] = meta["domain_url"]
    if select:
        data["select"] = list(select)
    return data


def _setting(name: str, spec: dict[str, Any], declared: dict[str, Any]) -> dict[str, Any]:
    setting: dict[str, Any] = {
        "name": name,
        "label": declared.get("label") or _label(name),
        "kind": "password" if spec.get("secret") else declared.get("kind") or _kind(spec),
    }
    if spec.get("description"):
        setting["description"] = " ".join(str(spec["description"]).split())
    if spec.get("secret"):
        setting["sensitive"] = True
    if declared.get("options"):
        setting["options"] = [
            {"label": str(o["label"]), "value": str(o["value"])} for o in declared["options"]
        ]
    return setting


def _kind(spec: dict[str, Any]) -> str:
    types = spec.get("type") or [t.get("type") for t in spec.get("anyOf", []) if "type" in t]
    types = [types] if isinstance(types, str) else types
    kinds = {_KIND_OF_TYPE[t] for t in types if t in _KIND_OF_TYPE}
    # One JSON type maps to one kind; a setting that takes several (an object or its name) is text.
    return kinds.pop() if len(kinds) == 1 else "string"


def _label(name: str) -> str:
    words = [_WORDS.get(w, w) for w in name.replace(".", " ").split("_")]
    words[0] = words[0][:1].upper() + words[0][1:]
    return " ".join(words)


def hub_problems(plugin: str, data: dict[str, Any]) -> list[str]:
    """What would make `data` an invalid Hub definition (the Hub's schemas, as rules)."""
    kind = PLUGIN_TYPES[plugin]
    where = path_of(plugin)
    problems = [f"{where}: missing {k}" for k in ("name", "namespace", "variant") if k not in data]
    problems += [f"{where}: {k} is not a Hub field" for k in sorted(set(data) - HUB_KEYS)]
    if kind != "extractors" and "select" in data:
        problems.append(f"{where}: only extractors have select")
    problems += [
        f"{where}: capability {c} is not one the Hub allows for {kind}"
        for c in data.get("capabilities", [])
        if c not in HUB_CAPABILITIES[kind]
    ]
    names = {s["name"] for s in data.get("settings", [])}
    for setting in data.get("settings", []):
        extra = set(setting) - HUB_SETTING_KEYS
        if extra:
            problems.append(f"{where}: setting {setting['name']} has {sorted(extra)}")
        if setting.get("kind") not in HUB_KINDS:
            problems.append(f"{where}: setting {setting['name']} has kind {setting.get('kind')}")
    for group in data.get("settings_group_validation", []):
        problems += [
            f"{where}: settings_group_validation names {n}" for n in group if n not in names
        ]
    return problems
