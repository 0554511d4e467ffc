"""The verdict and the evidence behind it (what support people read in the `check` trail)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from mapper_emailverify.taxonomy import STATUS_OF, Status, SubStatus


@dataclass(frozen=True)
class SmtpReply:
    """One reply line group from a mail server, kept as evidence."""

    host: str
    command: str
    code: int
    enhanced: str | None
    text: str

    def __str__(self) -> str:
        return f"{self.host}: {self.command} -> {self.code} {self.text}".rstrip()


@dataclass
class Evidence:
    """The trail of checks behind a verdict."""

    input: str | None = None
    normalized: str | None = None
    local_part: str | None = None
    domain: str | None = None
    role: bool = False
    free: bool = False
    #: The mail provider serving the domain (`providers.RULES` name), None for no known one.
    provider: str | None = None
    disposable: bool = False
    did_you_mean: str | None = None
    mx_hosts: list[str] = field(default_factory=list)
    mx_tried: list[str] = field(default_factory=list)
    implicit_mx: bool = False
    catch_all: bool | None = None
    smtp_replies: list[SmtpReply] = field(default_factory=list)
    backend: str = "builtin"
    steps: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    #: The rule that decided the verdict, and the server reply it read (when one decided).
    decided_by: str = ""
    decisive_reply: str | None = None
    #: Greylisting met on the way: how many times the address was asked again later in the run.
    greylist_retries: int = 0
    #: The delay the deciding deferral named ("try again in 5 minutes"), in seconds.
    retry_after: float | None = None

    def note(self, step: str) -> None:
        self.steps.append(step)

    @property
    def rule_family(self) -> str:
        """The kind of rule that decided, without the words it read: "smtp: 3 mailbox phrase",
        "dns", "disposable" (what the mapper's report counts)."""
        parts = self.decided_by.split(": ")
        return ": ".join(parts[:2]) if parts[0] == "smtp" and len(parts) > 1 else parts[0]


@dataclass
class Result:
    """A verdict: `status` and `substatus` are the EV_Status / EV_SubStatus strings."""

    status: Status
    substatus: SubStatus
    evidence: Evidence = field(default_factory=Evidence)

    @classmethod
    def of(cls, substatus: SubStatus, evidence: Evidence) -> Result:
        """The status follows from the substatus (one status per reason code)."""
        return cls(STATUS_OF[substatus], substatus, evidence)

    @property
    def is_invalid(self) -> bool:
        return self.status is Status.INVALID

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self.evidence)
        data["smtp_replies"] = [str(reply) for reply in self.evidence.smtp_replies]
        return {"status": str(self.status), "substatus": str(self.substatus), "evidence": data}
