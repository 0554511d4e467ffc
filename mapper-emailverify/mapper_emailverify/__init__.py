"""Email verification engine (usable without Singer) and the `mapper-emailverify` Singer mapper.

    from mapper_emailverify import Verifier

    async with Verifier({"dns_nameservers": ["127.0.0.1:5353"], "smtp_timeout": 5}) as verifier:
        result = await verifier.verify("someone@example.com")
        result.status, result.substatus  # "Valid", "mailbox_exists"
        result.evidence  # the trail: DNS records, MX hosts tried, SMTP replies, flags, timings
        results = await verifier.verify_many(addresses)  # input order; one check per address

Settings are the mapper's (README names), see `engine/config.py`. `emailverify-check ADDRESS...`
prints verdicts and their trail.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mapper_emailverify.engine.config import VerifierConfig
    from mapper_emailverify.engine.errors import ConfigError
    from mapper_emailverify.engine.result import Evidence, Result, SmtpReply
    from mapper_emailverify.engine.verifier import Verifier
    from mapper_emailverify.taxonomy import PAIRS, Status, SubStatus

# Imported on first use: the mapper's cached path never needs the engine (dnspython,
# email-validator, ...), and importing it eagerly would cost every mapper start about half a second.
_EXPORTS = {
    "ConfigError": "engine.errors",
    "VerifierConfig": "engine.config",
    "Evidence": "engine.result",
    "Result": "engine.result",
    "SmtpReply": "engine.result",
    "PAIRS": "taxonomy",
    "Status": "taxonomy",
    "SubStatus": "taxonomy",
    "Verifier": "engine.verifier",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"mapper_emailverify.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'mapper_emailverify' has no attribute {name!r}")


__all__ = [
    "PAIRS",
    "ConfigError",
    "Evidence",
    "Result",
    "SmtpReply",
    "Status",
    "SubStatus",
    "Verifier",
    "VerifierConfig",
]
