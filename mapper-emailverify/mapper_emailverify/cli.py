"""`emailverify-check ADDRESS...`: verdicts and the trail behind them, for support and debugging.

A trail quotes mail servers and APIs; in text mode their control characters (terminal escape
sequences, bidi overrides) are printed as visible escapes (`\x1b`), never sent to the terminal.
`--json` keeps the data as it is (JSON escapes them anyway).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mapper_emailverify.engine.config import Declared, VerifierConfig, declared
from mapper_emailverify.engine.errors import ConfigError, UserError, exit_with
from mapper_emailverify.engine.result import Result
from mapper_emailverify.engine.verifier import Verifier

#: Settings offered as options (`--smtp-port`, ...); help, type and choices come from their
#: declaration in `engine/config.py`. Any other setting can be given with --config.
OPTIONS = ("smtp_port", "smtp_timeout", "backend", "helo_hostname", "mail_from", "dns_timeout")
_TYPES: dict[str, type] = {"integer": int, "number": float, "string": str}


def _help(item: Declared) -> str:
    shown = "" if item.default is None else f" (default {item.default})"
    return item.doc.description + shown


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="emailverify-check",
        description="Verify email addresses and show the checks behind each verdict.",
    )
    parser.add_argument("addresses", nargs="+", metavar="ADDRESS")
    parser.add_argument("--config", type=Path, help="a JSON file with mapper-emailverify settings")
    settings = {item.name: item for item in declared(VerifierConfig)}
    parser.add_argument(
        "--dns-nameserver",
        action="append",
        metavar="HOST[:PORT]",
        help=f"{settings['dns_nameservers'].doc.description} Repeatable.",
    )
    for name in OPTIONS:
        item = settings[name]
        parser.add_argument(
            f"--{name.replace('_', '-')}",
            type=_TYPES[item.kind],
            choices=item.doc.choices or None,
            help=_help(item),
        )
    parser.add_argument(
        "--no-smtp", action="store_true", help="smtp_check off: stop after DNS (no mailbox probe)"
    )
    parser.add_argument(
        "--allow-private-mx",
        action="store_true",
        help="allow_private_mx on: also contact mail hosts on loopback or private addresses",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per address")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging on stderr")
    return parser


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    settings: dict[str, Any] = {}
    if args.config:
        try:
            settings = json.loads(args.config.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read --config {args.config}: {exc}") from None
        if not isinstance(settings, dict):
            raise ConfigError(f"--config {args.config} must hold a JSON object of settings")
    overrides = {
        "dns_nameservers": args.dns_nameserver,
        "smtp_check": False if args.no_smtp else None,
        "allow_private_mx": True if args.allow_private_mx else None,
        **{name: getattr(args, name) for name in OPTIONS},
    }
    settings.update({k: v for k, v in overrides.items() if v is not None})
    return settings


def visible(text: str) -> str:
    """`text` with every character a terminal would act on (controls, format characters, line
    separators) written as its Python escape instead: `\x1b[2J` shows, it does not clear."""
    return "".join(
        char if char.isprintable() else char.encode("unicode_escape").decode("ascii")
        for char in text
    )


def render(result: Result) -> str:
    """A verdict line and an indented trail."""
    ev = result.evidence
    shown = ev.normalized or (repr(ev.input) if ev.input is not None else "(no address)")
    lines = [f"{shown}: {result.status}/{result.substatus}"]
    if ev.input is not None and ev.input != ev.normalized:
        lines.append(f"    input: {ev.input!r}")
    flags = [name for name in ("role", "free", "disposable") if getattr(ev, name)]
    if flags:
        lines.append(f"    flags: {', '.join(flags)}")
    if ev.did_you_mean:
        lines.append(f"    did you mean: @{ev.did_you_mean}")
    if ev.provider:
        lines.append(f"    provider: {ev.provider}")
    lines.extend(f"    {step}" for step in ev.steps if not step.startswith("smtp:"))
    lines.extend(f"    mx tried: {host}" for host in ev.mx_tried)
    lines.extend(f"    smtp: {reply}" for reply in ev.smtp_replies)
    lines.extend(f"    {step}" for step in ev.steps if step.startswith("smtp:"))
    if ev.catch_all is not None:
        lines.append(f"    catch-all domain: {'yes' if ev.catch_all else 'no'}")
    if ev.decided_by:
        lines.append(f"    decided by: {ev.decided_by}")
    if ev.decisive_reply:
        lines.append(f"    reading: {ev.decisive_reply}")
    if ev.timings:
        lines.append("    timings: " + ", ".join(f"{k}={v:.3f}" for k, v in ev.timings.items()))
    return "\n".join(visible(line) for line in lines)


async def _run(config: VerifierConfig, addresses: Sequence[str]) -> list[Result]:
    async with Verifier(config) as verifier:
        return await verifier.verify_many(addresses)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        config = VerifierConfig.from_settings(_settings(args))
    except (ConfigError, ValueError, TypeError) as exc:
        print(f"emailverify-check: {exc}", file=sys.stderr)
        return 2
    try:
        results = asyncio.run(_run(config, args.addresses))
    except UserError as error:
        exit_with(error, logging.getLogger("emailverify-check"))
    for result in results:
        print(json.dumps(result.to_dict(), ensure_ascii=False) if args.json else render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
