"""Domain and local-part lists: disposable, role, free-mail, and did-you-mean for provider typos.

The did-you-mean suggestion is built for precision: a marketer mails it to the Person, so a
suggestion for a domain that is fine (email.com, cloud.com, ge.com) costs more than a missed typo.
Only the big consumer providers' names are corrected, by a keyboard-typo distance (a swap of two
neighbours, a dropped, doubled or neighbouring key, never a dropped first letter); a known mail
domain is never corrected, and its suffix only when it is a slip of .com or .net (gmail.con).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache, lru_cache
from importlib import resources

from disposable_email_domains import blocklist as _DED_BLOCKLIST


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


@dataclass(frozen=True)
class TypoTarget:
    """A provider's name (the label before its suffix) and the suffix a typo is corrected to."""

    name: str
    suffix: str
    #: The provider also runs country domains (yahoo.fr): a misspelt name keeps such a suffix.
    countries: bool = False
    #: Misspellings of the name are corrected; False for names too short or too common to guess
    #: (aon.com is not a typo of aol.com): only their suffix slips are (aol.con).
    fuzzy: bool = True


#: Big consumer providers whose typos are worth a suggestion (gmial.com -> gmail.com), most used
#: first, then known mail domains that only get their suffix corrected.
TYPO_TARGETS: tuple[TypoTarget, ...] = (
    TypoTarget("gmail", "com"),
    TypoTarget("yahoo", "com", countries=True),
    TypoTarget("hotmail", "com", countries=True),
    TypoTarget("outlook", "com", countries=True),
    TypoTarget("icloud", "com"),
    TypoTarget("googlemail", "com"),
    TypoTarget("protonmail", "com"),
    TypoTarget("yandex", "ru", countries=True),
    TypoTarget("comcast", "net"),
    TypoTarget("rocketmail", "com"),
    TypoTarget("sbcglobal", "net"),
    TypoTarget("bellsouth", "net"),
    TypoTarget("btinternet", "com"),
    TypoTarget("verizon", "net"),
    TypoTarget("aol", "com", countries=True, fuzzy=False),
    TypoTarget("live", "com", countries=True, fuzzy=False),
    TypoTarget("msn", "com", fuzzy=False),
    TypoTarget("me", "com", fuzzy=False),
    TypoTarget("mac", "com", fuzzy=False),
    TypoTarget("gmx", "com", countries=True, fuzzy=False),
    TypoTarget("mail", "com", fuzzy=False),
    TypoTarget("email", "com", fuzzy=False),
    TypoTarget("ymail", "com", fuzzy=False),
    TypoTarget("aim", "com", fuzzy=False),
)
#: Suffix slips that are corrected (to the provider's own .com or .net): gmail.con, yahoo.cm.
_SLIP_SUFFIXES = ("com", "net")
#: Second labels of country suffixes (yahoo.co.uk, yahoo.com.br).
_COUNTRY_SECOND = frozenset({"co", "com", "ne", "net", "or", "org", "ac"})

_ROWS = ("1234567890", "qwertyuiop", "asdfghjkl", "zxcvbnm")
_ROW_OFFSETS = (0.0, 0.5, 0.75, 1.25)
_LOOK_ALIKES = {("o", "0"), ("l", "1"), ("i", "1")}


@cache
def keyboard_neighbours(char: str) -> frozenset[str]:
    """Keys next to `char` on a QWERTY keyboard, and digits that look like it (o/0, l/1)."""
    where = {
        key: (row, index + _ROW_OFFSETS[row])
        for row, keys in enumerate(_ROWS)
        for index, key in enumerate(keys)
    }
    if char not in where:
        return frozenset()
    row, x = where[char]
    near = {
        key
        for key, (other_row, other_x) in where.items()
        if key != char
        and (
            (other_row == row and abs(other_x - x) == 1)
            or (abs(other_row - row) == 1 and abs(other_x - x) <= 0.75)
        )
    }
    near |= {b for a, b in _LOOK_ALIKES if a == char} | {a for a, b in _LOOK_ALIKES if b == char}
    return frozenset(near)


@cache
def _known() -> tuple[frozenset[str], dict[str, frozenset[str]]]:
    """Mail domains that are right as they are, and the suffixes each known name has."""
    domains = set(_lines("free_domains.txt")) | {f"{t.name}.{t.suffix}" for t in TYPO_TARGETS}
    suffixes: dict[str, set[str]] = {}
    for domain in domains:
        name, _, suffix = domain.partition(".")
        suffixes.setdefault(name, set()).add(suffix)
    return frozenset(domains), {name: frozenset(found) for name, found in suffixes.items()}


@lru_cache(maxsize=65536)  # domains repeat; the edit distances are the costly part
def did_you_mean(domain: str) -> str | None:
    """The big provider's domain that `domain` is probably a typo of, else None.

    gmial.com, gmai.com, hotmial.co.uk and gmail.con get a suggestion; a known mail domain
    (ymail.com, mail.de) or a company's (ge.com, cloud.com) gets none.
    """
    domain = domain.strip().lower().rstrip(".")
    known, suffixes = _known()
    name, dot, suffix = domain.partition(".")
    if domain in known or not dot or not name or not suffix:
        return None
    if name in suffixes:  # a known provider's own name: only a slip of its suffix is corrected
        fixed = _slip_fixed(suffix, suffixes[name])
        return f"{name}.{fixed}" if fixed else None
    target = _closest(name)
    if target is None:
        return None
    own = suffixes.get(target.name, frozenset({target.suffix}))
    if suffix in own:
        return f"{target.name}.{suffix}"
    fixed = _slip_fixed(suffix, own)
    if fixed:
        return f"{target.name}.{fixed}"
    if target.countries and _is_country_suffix(suffix):
        return f"{target.name}.{suffix}"
    return None


def _slip_fixed(suffix: str, own: Iterable[str]) -> str | None:
    """The provider's .com or .net that `suffix` is a one-key slip of (con, cmo, co, cm), else
    None."""
    if "." in suffix or len(suffix) < 2:
        return None
    for wanted in _SLIP_SUFFIXES:
        if wanted in own and suffix != wanted and _osa_distance(suffix, wanted, 1) <= 1:
            return wanted
    return None


def _is_country_suffix(suffix: str) -> bool:
    labels = suffix.split(".")
    country = labels[-1]
    if len(country) != 2 or not country.isalpha():
        return False
    return len(labels) == 1 or (len(labels) == 2 and labels[0] in _COUNTRY_SECOND)


def _closest(name: str) -> TypoTarget | None:
    """The provider name `name` is a keyboard typo of (one for names up to 7 letters, two for
    longer ones); None when none is that close, or two are equally close."""
    if len(name) < 3:
        return None
    best: list[tuple[int, TypoTarget]] = []
    for target in TYPO_TARGETS:
        if not target.fuzzy:
            continue
        limit = 1 if len(target.name) <= 7 else 2
        cost = typo_cost(name, target.name, limit)
        if cost <= limit:
            best.append((cost, target))
    if not best:
        return None
    best.sort(key=lambda found: found[0])
    if len(best) > 1 and best[1][0] == best[0][0]:
        return None
    return best[0][1]


def typo_cost(typed: str, meant: str, limit: int) -> int:
    """How many keyboard slips turn `meant` into `typed`: a swap of two neighbours, a dropped or
    doubled key, or a neighbouring key cost 1; any other change costs 2, and so does a dropped
    or added first letter (mail is not gmail, cloud is not icloud). Cut off above `limit`."""
    if abs(len(typed) - len(meant)) > limit:
        return limit + 1
    # prev[j]: the cost of typing meant[:j] as typed[:i - 1]; a dropped first letter costs 2.
    prev2: list[int] = []
    prev = [0] + [j + 1 for j in range(1, len(meant) + 1)]
    for i in range(1, len(typed) + 1):
        a = typed[i - 1]
        cur = [prev[0] + 2] + [0] * len(meant)
        for j in range(1, len(meant) + 1):
            b = meant[j - 1]
            change = 0 if a == b else 1 if b in keyboard_neighbours(a) else 2
            cur[j] = min(
                prev[j] + 1,  # `a` typed in excess
                cur[j - 1] + (2 if j == 1 else 1),  # `b` dropped
                prev[j - 1] + change,
            )
            if i > 1 and j > 1 and a == meant[j - 2] and typed[i - 2] == b:
                cur[j] = min(cur[j], prev2[j - 2] + 1)
        if min(cur) > limit and min(prev) > limit:  # a swap reaches back two rows
            return limit + 1
        prev2, prev = prev, cur
    return prev[-1]


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
