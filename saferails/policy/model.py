"""The policy document: a versioned YAML document validated by pydantic. Policy is data, not code.

Build one with :func:`parse_policy` (or the loader): it turns every problem - wrong shape, unknown key, unknown
kind, duplicate rule id, impossible approval requirement, malformed condition - into ``PolicyInvalid`` whose
message names the rule id (and its index) or the field. Models are frozen; ``Policy.fingerprint`` is the sha256
of the canonical JSON form, so a decision can name exactly which document it came from (two texts that differ
only in formatting, or in stating a default explicitly, share a fingerprint).
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import timedelta
from enum import StrEnum
from typing import Annotated, Any, Final, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    StrictInt,
    ValidationError,
    field_serializer,
    model_validator,
)

from saferails.conditions import Condition, parse_condition
from saferails.errors import ConditionInvalid, InvalidInput, PolicyInvalid

__all__ = [
    "ApprovalDefaults",
    "ApprovalSpec",
    "ApproversSpec",
    "Impact",
    "ImpactRaise",
    "ImpactTable",
    "Policy",
    "RateLimits",
    "RuleKind",
    "RuleSpec",
    "TimeoutAction",
    "format_duration",
    "parse_duration",
    "parse_policy",
]


class Impact(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


RuleKind = Literal["blocked", "requires_kyc", "rate_limit", "requires_approval", "agent_controls"]
TimeoutAction = Literal["fail", "approve", "reject"]

_DURATION_RE: Final = re.compile(r"([0-9]{1,12})\s*([smhd])")
_UNIT_SECONDS: Final = {"d": 86400, "h": 3600, "m": 60, "s": 1}
_RULE_ID_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]*")


def parse_duration(value: object) -> object:
    """Accept ``30s``, ``15m``, ``24h``, ``7d``; ISO-8601 (``PT1H``) and numbers (seconds) are left to pydantic."""
    if isinstance(value, str):
        match = _DURATION_RE.fullmatch(value.strip())
        if match:
            try:
                return timedelta(seconds=int(match.group(1)) * _UNIT_SECONDS[match.group(2)])
            except OverflowError as exc:
                raise ValueError(f"duration {value!r} is too long") from exc
        if not value.strip().lstrip("-").startswith("P"):
            raise ValueError("expected a duration like 30s, 15m, 24h, 7d or ISO-8601 PT1H")
    return value


def format_duration(value: timedelta) -> str:
    """An exact form that :func:`parse_duration` reads back: ``24h``, ``7d``, ``90s``, ``PT1.5S``."""
    seconds = value.total_seconds()
    if seconds != int(seconds):
        return f"PT{seconds}S"
    whole = int(seconds)
    if whole <= 0:
        return f"{whole}s"  # only ever shown in the message refusing it
    for unit, size in _UNIT_SECONDS.items():
        # "24h" reads better than "1d"; days start at two.
        if whole % size == 0 and not (unit == "d" and whole < 2 * size):
            return f"{whole // size}{unit}"
    raise AssertionError("unreachable: every whole number of seconds divides by 1")


Duration = Annotated[timedelta, BeforeValidator(parse_duration), PlainSerializer(format_duration, when_used="json")]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)


class ApproversSpec(_Frozen):
    """Who may approve: named users and/or members of named groups."""

    users: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()


class ApprovalSpec(_Frozen):
    """A rule's approval settings; every omitted field comes from ``approval_defaults``."""

    approvers: ApproversSpec | None = None
    min_approvals: StrictInt | None = None
    timeout: Duration | None = None
    timeout_action: TimeoutAction | None = None
    require_codes: bool | None = None
    codes_waiver_reason: str | None = None


class ApprovalDefaults(_Frozen):
    """Applied to ``requires_approval`` rules that omit fields. An approvers block replaces, never merges."""

    approvers: ApproversSpec = ApproversSpec(groups=("approvers",))
    min_approvals: StrictInt = 1
    timeout: Duration = timedelta(hours=24)
    timeout_action: TimeoutAction = "fail"
    # One-time approval codes are required unless a rule waives them explicitly: ``require_codes: false`` with a
    # non-empty ``codes_waiver_reason``, which is copied into every decision and audited with each approval.
    require_codes: bool = True
    codes_waiver_reason: str | None = None

    def resolve(self, spec: ApprovalSpec | None) -> ApprovalDefaults:
        """The effective settings for a rule: its own fields where given, these defaults elsewhere."""
        if spec is None:
            return self
        given = {k: v for k, v in spec if v is not None}
        return self.model_copy(update=given)


class ImpactRaise(_Frozen):
    """Raise the impact of a proposal of ``action_types`` (if given) whose parameters satisfy ``when`` to
    ``level`` (seed 003: a pause of a department or the whole fleet is HIGH, one agent's pause is not)."""

    action_types: tuple[str, ...] | None = None
    when: Condition
    level: Impact

    @model_validator(mode="before")
    @classmethod
    def _parse_when(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("when") is not None and not isinstance(data["when"], Condition):
            try:
                return {**data, "when": parse_condition(data["when"], root="impact.raise_when.when")}
            except ConditionInvalid as exc:
                raise PolicyInvalid(f"impact.raise_when: {exc.message}") from exc
        return data

    @field_serializer("when")
    def _dump_when(self, when: Condition) -> dict[str, Any]:
        return when.to_data()


_IMPACT_ORDER: Final = (Impact.LOW, Impact.MEDIUM, Impact.HIGH)


class ImpactTable(_Frozen):
    """Impact level per action type; types not listed get ``default``. ``raise_when`` entries raise the level of
    the proposals they match (never lower it: the highest of the type's level and every matching entry wins)."""

    default: Impact = Impact.LOW
    types: dict[str, Impact] = Field(default_factory=dict)
    raise_when: tuple[ImpactRaise, ...] = ()

    def level(self, action_type: str, context: dict[str, Any] | None = None) -> Impact:
        """The impact of ``action_type``; with the proposal's condition ``context``, raised by the matching
        ``raise_when`` entries. A condition that cannot be evaluated raises ``ConditionEvaluationError`` (the
        engine turns that into a denial: fail closed)."""
        level = self.types.get(action_type, self.default)
        if context is None:
            return level
        for entry in self.raise_when:
            if entry.action_types is not None and action_type not in entry.action_types:
                continue
            if entry.when.evaluate(context) and _IMPACT_ORDER.index(entry.level) > _IMPACT_ORDER.index(level):
                level = entry.level
        return level


class RateLimits(_Frozen):
    """Maximum events per proposer per action type in a sliding window."""

    per_hour: StrictInt | None = None
    per_day: StrictInt | None = None


class RuleSpec(_Frozen):
    """One rule. It matches when ``action_types`` (if given) lists the action type AND ``when`` (if given) holds."""

    id: str
    description: str = ""
    kind: RuleKind
    action_types: tuple[str, ...] | None = None
    when: Condition | None = None
    approval: ApprovalSpec | None = None
    limits: RateLimits | None = None

    @model_validator(mode="before")
    @classmethod
    def _parse_when(cls, data: Any) -> Any:
        # The condition is parsed here, not by pydantic, so its error names the rule and the path inside it.
        if isinstance(data, dict) and data.get("when") is not None and not isinstance(data["when"], Condition):
            try:
                return {**data, "when": parse_condition(data["when"], root="when")}
            except ConditionInvalid as exc:
                raise PolicyInvalid(f"rule {data.get('id')!r}: {exc.message}", rule_id=data.get("id")) from exc
        return data

    @model_validator(mode="after")
    def _check(self) -> RuleSpec:
        where = f"rule {self.id!r}"
        if not _RULE_ID_RE.fullmatch(self.id):
            raise _invalid(where, "id must start with a letter or digit and use only letters, digits, _ . : -")
        if self.action_types is None and self.when is None:
            raise _invalid(
                where,
                "says neither action_types nor when; a rule must say what it matches "
                "(a catch-all is explicit: when: {field: action_type, operator: exists})",
            )
        if self.action_types is not None and (not self.action_types or not all(self.action_types)):
            raise _invalid(where, "action_types must list at least one non-empty action type")
        if self.approval is not None and self.kind != "requires_approval":
            raise _invalid(where, f"approval is only allowed on requires_approval rules, not {self.kind}")
        if self.limits is not None and self.kind != "rate_limit":
            raise _invalid(where, f"limits is only allowed on rate_limit rules, not {self.kind}")
        if self.kind == "rate_limit":
            _check_limits(where, self.limits)
        return self

    @field_serializer("when")
    def _dump_when(self, when: Condition | None) -> dict[str, Any] | None:
        return None if when is None else when.to_data()


class Policy(_Frozen):
    """The whole policy document. ``version`` is carried by every decision.

    Build it with :func:`parse_policy` (or the loader); ``model_copy(update=...)`` skips validation.
    """

    version: str
    on_rate_limit_store_error: Literal["deny", "allow"] = "deny"
    impact: ImpactTable = ImpactTable()
    approval_defaults: ApprovalDefaults = ApprovalDefaults()
    rules: tuple[RuleSpec, ...] = ()
    # Per action type outcome-monitoring settings (delay_days, window_days, judge, pre_weeks, confidence, rules),
    # validated by saferails.outcomes.rules.load_rulebook; a type mapped to null is not monitored.
    outcomes: dict[str, dict[str, Any] | None] = {}

    @model_validator(mode="after")
    def _check(self) -> Policy:
        if not self.version.strip():
            raise PolicyInvalid("version: must be a non-empty string")
        if self.outcomes:
            from saferails.outcomes.rules import load_rulebook  # late: outcomes imports the action layer

            try:
                load_rulebook(self.outcomes)
            except InvalidInput as exc:
                raise PolicyInvalid(f"outcomes: {exc.message}") from None
        _check_approval("approval_defaults", self.approval_defaults)
        seen: set[str] = set()
        for rule in self.rules:
            if rule.id in seen:
                raise PolicyInvalid(f"rule {rule.id!r}: duplicate rule id", rule_id=rule.id)
            seen.add(rule.id)
            if rule.kind == "requires_approval":
                _check_approval(f"rule {rule.id!r}: approval", self.approval_defaults.resolve(rule.approval))
        return self

    @property
    def fingerprint(self) -> str:
        """sha256 (hex) of the canonical JSON form of this document.

        Computed on every access, never cached on the model: ``model_copy`` copies cached attributes, and a copy
        carrying its original's fingerprint would make decisions name the wrong document. Hold it if you need it
        often (the engine does).
        """
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    def effective_approval(self, rule: RuleSpec) -> ApprovalDefaults:
        """The approval settings ``rule`` demands, defaults filled in."""
        return self.approval_defaults.resolve(rule.approval)


def _invalid(where: str, problem: str) -> PolicyInvalid:
    return PolicyInvalid(f"{where}: {problem}")


def _check_limits(where: str, limits: RateLimits | None) -> None:
    if limits is None or (limits.per_hour is None and limits.per_day is None):
        raise _invalid(where, "a rate_limit rule needs limits with per_hour and/or per_day")
    for name, limit in (("per_hour", limits.per_hour), ("per_day", limits.per_day)):
        if limit is not None and limit <= 0:
            raise _invalid(where, f"limits.{name} must be a positive integer, got {limit}")


def _check_approval(where: str, approval: ApprovalDefaults) -> None:
    users, groups = approval.approvers.users, approval.approvers.groups
    if approval.min_approvals < 1:
        raise _invalid(where, f"min_approvals must be at least 1, got {approval.min_approvals}")
    if not users and not groups:
        raise _invalid(where, "approvers names no users and no groups; nobody could approve")
    if not groups and approval.min_approvals > len(set(users)):
        raise _invalid(where, f"min_approvals is {approval.min_approvals} but only {len(set(users))} users may approve")
    if approval.timeout <= timedelta(0):
        raise _invalid(where, f"timeout must be positive, got {format_duration(approval.timeout)}")
    if not approval.require_codes and not (approval.codes_waiver_reason or "").strip():
        raise _invalid(
            where,
            "require_codes: false waives the one-time codes that prove who approved; "
            "say why in codes_waiver_reason",
        )


def parse_policy(data: object) -> Policy:
    """Validate plain data (from YAML/JSON) into a :class:`Policy`; every problem raises ``PolicyInvalid``."""
    if not isinstance(data, dict):
        kind = "nothing" if data is None else type(data).__name__
        raise PolicyInvalid(f"the policy document must be a mapping, got {kind}")
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        problems = [_describe(err, data) for err in exc.errors()]
        raise PolicyInvalid("; ".join(problems), problems=problems) from exc


def _describe(err: Any, data: dict[str, Any]) -> str:
    """One pydantic error as ``rule 'x' (rules[2]).limits.per_hour: <problem>``."""
    loc: tuple[Any, ...] = tuple(err.get("loc", ()))
    where = ".".join(str(part) for part in loc) or "policy"
    if len(loc) >= 2 and loc[0] == "rules" and isinstance(loc[1], int):
        rules = data.get("rules")
        rule = rules[loc[1]] if isinstance(rules, list) and loc[1] < len(rules) else None
        rule_id = rule.get("id") if isinstance(rule, dict) else None
        rest = "".join(f".{part}" for part in loc[2:])
        where = f"rule {rule_id!r} (rules[{loc[1]}]){rest}" if isinstance(rule_id, str) else f"rules[{loc[1]}]{rest}"
    message = str(err.get("msg", "invalid"))
    given = err.get("input")
    if err.get("type") != "missing" and isinstance(given, str | int | float | bool):
        message += f", got {given!r}"
    return f"{where}: {message}"
