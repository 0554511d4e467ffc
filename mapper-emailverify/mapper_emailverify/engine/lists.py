"""Domain and local-part lists: disposable, role, free-mail, and did-you-mean for provider typos."""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache, lru_cache
from importlib import resources

from disposable_email_domains import blocklist as _DED_BLOCKLIST

#: Big providers whose typos are worth a suggestion (gmial.com -> gmail.com).
TYPO_TARGETS = (
    "gmail.com",
    "googlemail.com",
    "yahoo.com",
    "hotmail.com",
    "outlook.com",
    "live.com",
    "msn.com",
    "icloud.com",
    "me.com",
    "aol.com",
    "protonmail.com",
    "proton.me",
    "gmx.com",
    "gmx.de",
    "web.de",
    "mail.com",
    "yandex.ru",
    "mail.ru",
    "comcast.net",
    "hotmail.co.uk",
    "yahoo.co.uk",
    "qq.com",
)


@cache
def _lines(name: str) -> frozenset[str]:
    text = (
        resources.files("mapper_emailverify.engine.data").joinpath(name).read_text(encoding="utf-8")
    )
    return frozenset(
        line.strip().lower()
        for line in text.splitlines()
        if line.strip() and not line.startswith("#")
    )


def _suffixes(domain: str) -> Iterable[str]:
    """`a.b.example.com` -> itself, `b.example.com`, `example.com` (never the bare TLD)."""
    labels = domain.lower().rstrip(".").split(".")
    for start in range(len(labels) - 1):
        yield ".".join(labels[start:])


class DisposableDomains:
    """The disposable-email-domains list plus user extras, matched on the domain and its parents."""

    def __init__(self, extra: Iterable[str] = ()) -> None:
        self._extra = frozenset(d.strip().lower().lstrip("@.") for d in extra if d.strip())

    def match(self, domain: str) -> str | None:
        """The listed domain that `domain` is, or is a subdomain of."""
        for suffix in _suffixes(domain):
            if suffix in _DED_BLOCKLIST or suffix in self._extra:
                return suffix
        return None


def is_role(local_part: str) -> bool:
    base = local_part.split("+", 1)[0].lower()
    return base in _lines("roles.txt")


def is_free(domain: str) -> bool:
    return any(suffix in _lines("free_domains.txt") for suffix in _suffixes(domain))


@lru_cache(maxsize=65536)  # domains repeat; the edit distances are the costly part
def did_you_mean(domain: str) -> str | None:
    """The big provider's domain that `domain` is probably a typo of (1-2 edits), else None."""
    domain = domain.lower()
    if domain in TYPO_TARGETS or is_free(domain):
        return None
    best: tuple[int, str] | None = None
    for target in TYPO_TARGETS:
        limit = 1 if len(target) <= 7 else 2
        distance = _osa_distance(domain, target, limit)
        if distance <= limit and (best is None or distance < best[0]):
            best = (distance, target)
    return best[1] if best else None


def _osa_distance(a: str, b: str, limit: int) -> int:
    """Optimal-string-alignment distance (a transposition counts 1), cut off above `limit`."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        cur = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                cur[j] = min(cur[j], prev2[j - 2] + 1)
        if min(cur) > limit:
            return limit + 1
        prev2, prev = prev, cur
    return prev[-1]
