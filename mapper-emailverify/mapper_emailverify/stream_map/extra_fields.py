"""The opt-in fields for marketers (`extra_fields`): {prefix}Provider, Free, Role and DidYouMean.

They describe the address, not the verdict, so every path (engine, cache, fresh, local) gives the
same values from the address alone, cheaply, except the provider of a company domain, which only
its MX shows. The engine path reads it from the verdict's MX hosts; the other paths use, first
match wins: the domain's own rule (gmail.com, yahoo.fr), the MX learnt this run for another
address of the domain, the domain knowledge kept in `cache_path` (`domain_cache_ttl_days`), then
the value the record already carries (the Person's current attribute, as the tap reads it). With
none of these the field is null, and the target leaves the attribute as it is.

With no field selected nothing here touches a schema or a record: output stays as before.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from functools import lru_cache
from typing import Any

from mapper_emailverify.engine import lists
from mapper_emailverify.engine.errors import ConfigError
from mapper_emailverify.engine.providers import NAMES as PROVIDER_NAMES
from mapper_emailverify.engine.providers import identify

#: The fields one can ask for, without the prefix, in the order they are added.
EXTRA_FIELDS = ("Provider", "Free", "Role", "DidYouMean")
#: `{prefix}Provider` for a domain whose mail servers are known and belong to none of the providers.
OTHER = "other"
#: Every value `{prefix}Provider` takes (null aside): the engine's provider rule names, then OTHER.
PROVIDER_VALUES: tuple[str, ...] = (*PROVIDER_NAMES, OTHER)
_PROVIDER_VALUES = frozenset(PROVIDER_VALUES)
_SCHEMAS: dict[str, dict[str, Any]] = {
    "Provider": {"type": ["string", "null"]},
    "Free": {"type": ["boolean", "null"]},
    "Role": {"type": ["boolean", "null"]},
    "DidYouMean": {"type": ["string", "null"]},
}
#: Verdicts that say the address has no mail domain to describe.
_NO_DOMAIN = frozenset({"no_email", "invalid_syntax"})
#: Verdicts that say the domain has no mail servers (so no provider).
_NO_MAIL_SERVERS = frozenset({"domain_not_found", "no_mx_record", "null_mx"})
_REMEMBERED = 50_000


def parse_extra_fields(values: Iterable[str], prefix: str) -> tuple[str, ...]:
    """The selected fields in `EXTRA_FIELDS` order; a name may carry the prefix (EV_Provider) and
    any case. An unknown name is a configuration error naming those there are."""
    by_name = {name.lower(): name for name in EXTRA_FIELDS}
    chosen: set[str] = set()
    for value in values:
        text = value.strip()
        if prefix and text.lower().startswith(prefix.lower()) and text[len(prefix) :]:
            text = text[len(prefix) :]
        name = by_name.get(text.lower())
        if name is None:
            raise ConfigError(
                f"extra_fields: {value!r} is not one of {', '.join(EXTRA_FIELDS)} "
                f"(added as {prefix}Provider and so on)"
            )
        chosen.add(name)
    return tuple(name for name in EXTRA_FIELDS if name in chosen)


def provider_value(
    domain: str, mx_hosts: Iterable[str] = (), substatus: str | None = None
) -> str | None:
    """The provider name of a domain (a `PROVIDER_VALUES` entry), or None when unknown: its own
    rule, else the MX hosts' (OTHER when known MX hosts match no rule)."""
    hosts = tuple(mx_hosts)
    by_domain = _domain_rule(domain)
    if by_domain is not None or not hosts or substatus in _NO_MAIL_SERVERS:
        return by_domain
    rule = identify(domain, hosts)
    return rule.name if rule is not None else OTHER


def suggested_address(address: str) -> str | None:
    """The address with its domain corrected (`lists.did_you_mean`), the local part as written;
    None when the domain looks right. A full address, so a message can show it as it is."""
    local, at, domain = address.strip().rpartition("@")
    if not at or not local:
        return None
    fixed = lists.did_you_mean(_ascii(domain))
    return f"{local}@{fixed}" if fixed else None


@lru_cache(maxsize=65536)
def _ascii(domain: str) -> str:
    text = domain.strip().rstrip(".")
    if not text.isascii():
        try:
            text = text.encode("idna").decode("ascii")
        except UnicodeError:
            return text.lower()
    return text.lower()


@lru_cache(maxsize=65536)
def _domain_rule(domain: str) -> str | None:
    rule = identify(domain)
    return rule.name if rule is not None else None


@lru_cache(maxsize=65536)
def _free(domain: str) -> bool:
    """A free mail domain: on the free list, or the consumer domain of a free provider."""
    rule = identify(domain)
    return lists.is_free(domain) or (rule is not None and rule.free)


class ExtraFields:
    """The selected fields for one `field_prefix`: their schema, and their values per record."""

    def __init__(
        self,
        prefix: str,
        selected: Iterable[str] = (),
        domain_provider: Callable[[str], str | None] | None = None,
    ) -> None:
        self.selected = tuple(name for name in EXTRA_FIELDS if name in set(selected))
        self.names = {name: f"{prefix}{name}" for name in self.selected}
        #: What the domain knowledge store says of a domain (see the module docstring).
        self.domain_provider = domain_provider
        self._learnt: dict[str, str] = {}

    def __bool__(self) -> bool:
        return bool(self.selected)

    def properties(self) -> dict[str, dict[str, Any]]:
        """The schema properties of the selected fields (none when nothing is selected)."""
        return {self.names[name]: dict(_SCHEMAS[name]) for name in self.selected}

    def learn(self, address: str, mx_hosts: Iterable[str], substatus: str) -> str | None:
        """The provider from an engine verdict, remembered by domain for the other paths."""
        domain = _ascii(address.rpartition("@")[2])
        provider = provider_value(domain, mx_hosts, substatus)
        if provider is not None and self._learnt.get(domain) != provider:
            if len(self._learnt) >= _REMEMBERED:
                self._learnt.clear()
            self._learnt[domain] = provider
        return provider

    def write_verified(
        self, record: dict[str, Any], address: str, substatus: str, mx_hosts: Iterable[str]
    ) -> None:
        """The fields for a verdict the engine just reached: the provider from its MX hosts (and
        remembered for the domain), else looked up as for a cached record."""
        provider = self.learn(address, mx_hosts, substatus)
        known = provider is not None or substatus in _NO_MAIL_SERVERS
        self.write(record, address, substatus, provider, engine=known)

    def write(
        self,
        record: dict[str, Any],
        address: str | None,
        substatus: str,
        provider: str | None = None,
        *,
        engine: bool = False,
    ) -> None:
        """Set the selected fields on `record`. `engine`: `provider` is the engine's (from the
        MX); otherwise it is looked up as the module docstring says."""
        names = self.names
        if not isinstance(address, str) or substatus in _NO_DOMAIN or "@" not in address:
            for field in names.values():
                record[field] = None
            return
        domain = _ascii(address.rpartition("@")[2])
        if "Provider" in names:
            if not engine:
                provider = self._provider(record, domain)
            record[names["Provider"]] = provider
        if "Free" in names:
            record[names["Free"]] = _free(domain)
        if "Role" in names:
            record[names["Role"]] = lists.is_role(address.strip().rpartition("@")[0])
        if "DidYouMean" in names:
            record[names["DidYouMean"]] = suggested_address(address)

    def _provider(self, record: Mapping[str, Any], domain: str) -> str | None:
        found = _domain_rule(domain) or self._learnt.get(domain)
        if found is None and self.domain_provider is not None:
            found = self.domain_provider(domain)
        return found if found is not None else self._carried(record)

    def _carried(self, record: Mapping[str, Any]) -> str | None:
        """The provider the record carries: its own field, or the Person's attribute."""
        name = self.names["Provider"]
        value = record.get(name)
        if value is None:
            attributes = record.get("attributes")
            if isinstance(attributes, Mapping):
                value = attributes.get(name)
            elif attributes is None:
                value = _flattened(record, name)
        return value if isinstance(value, str) and value in _PROVIDER_VALUES else None


def _flattened(record: Mapping[str, Any], name: str) -> Any:
    """`attributes{sep}{name}` as a Singer flattening writes it (see `freshness`)."""
    for key, value in record.items():
        if isinstance(key, str) and key.startswith("attributes") and key.endswith(name):
            separator = key[len("attributes") : len(key) - len(name)]
            if separator and not any(char.isalnum() for char in separator):
                return value
    return None
