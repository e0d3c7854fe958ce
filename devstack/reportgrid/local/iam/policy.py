"""Policies and the decision for one request within one account, in AWS's order
(docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic.html):

1. an explicit Deny in any applicable policy (identity- or resource-based) denies;
2. role trust policies and KMS key policies must themselves allow the principal ("role
   trust policies and KMS key policies are exceptions ... they must explicitly allow
   access for principals"); one that allows only the account delegates to IAM, so the
   identity-based policy must allow as well;
3. otherwise an Allow in the identity-based policy, or in a resource-based policy that
   names the principal itself, allows (same account: either one suffices);
4. else the implicit deny.

Fail-closed: a statement part that cannot be judged (an unresolved template value, an
unsupported condition operator) makes an Allow grant nothing and a Deny apply; each such
case is logged once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Final

from reportgrid.local.iam import conditions
from reportgrid.local.iam.patterns import (
    Context,
    ContextValue,
    Tri,
    Unresolved,
    Value,
    all3,
    any3,
    matches,
    not3,
)

log = logging.getLogger("reportgrid.local.iam")

ALLOW: Final = "Allow"
DENY: Final = "Deny"


@dataclass(frozen=True, slots=True)
class Principal:
    """A role session: who makes the request."""

    role_arn: str
    session_name: str
    account: str
    # aws:PrincipalTag/*: the role's tags, overridden by the session's tags.
    tags: Mapping[str, str] = field(default_factory=dict)

    @property
    def role_name(self) -> str:
        return self.role_arn.rsplit("/", 1)[-1]

    @property
    def session_arn(self) -> str:
        return f"arn:aws:sts::{self.account}:assumed-role/{self.role_name}/{self.session_name}"

    def context(self) -> dict[str, ContextValue]:
        found: dict[str, ContextValue] = {
            "aws:principalarn": self.role_arn,
            "aws:principalaccount": self.account,
            "aws:principaltype": "AssumedRole",
        }
        found |= {f"aws:principaltag/{k.lower()}": v for k, v in self.tags.items()}
        return found


@dataclass(frozen=True, slots=True)
class Request:
    action: str
    resource: str
    context: Context


@dataclass(frozen=True, slots=True)
class Statement:
    """One statement, its template values already resolved (some perhaps Unresolved)."""

    effect: str
    origin: str  # where it came from, for logs: "<policy>/Statement[i]"
    actions: tuple[Value, ...]
    not_action: bool = False
    resources: tuple[Value, ...] | None = None  # None: no Resource (trust policies)
    not_resource: bool = False
    principal: Any = None  # the Principal element; None in identity-based policies
    not_principal: bool = False
    conditions: tuple[tuple[str, str, tuple[Value, ...]], ...] = ()


def _values(element: Any) -> tuple[Value, ...]:
    items = element if isinstance(element, list) else [element]
    return tuple(v if isinstance(v, str | bool | Unresolved) else str(v) for v in items)


def statements_of(document: Any, origin: str) -> tuple[Statement, ...]:
    """The statements of a resolved policy document (malformed or unresolved parts are
    logged and grant nothing)."""
    if not isinstance(document, Mapping):
        log.warning("%s: the policy document is %s; it grants nothing", origin, document)
        return ()
    raw = document.get("Statement", [])
    found: list[Statement] = []
    for index, item in enumerate(raw if isinstance(raw, list) else [raw]):
        where = f"{origin}/Statement[{index}]"
        effect = item.get("Effect") if isinstance(item, Mapping) else None
        if effect not in (ALLOW, DENY):
            log.warning("%s: Effect %r is not Allow or Deny; statement ignored", where, effect)
            continue
        block = item.get("Condition", {})
        conds = (
            tuple(
                (operator, key, _values(value))
                for operator, pairs in block.items()
                for key, value in (pairs.items() if isinstance(pairs, Mapping) else [])
            )
            if isinstance(block, Mapping)
            else (("<unresolved>", "", (Unresolved(f"Condition is {block}"),)),)
        )
        resource_key = "NotResource" if "NotResource" in item else "Resource"
        principal_key = "NotPrincipal" if "NotPrincipal" in item else "Principal"
        found.append(
            Statement(
                effect=effect,
                origin=where,
                actions=_values(item.get("NotAction", item.get("Action", []))),
                not_action="NotAction" in item,
                resources=_values(item[resource_key]) if resource_key in item else None,
                not_resource=resource_key == "NotResource",
                principal=item.get(principal_key),
                not_principal=principal_key == "NotPrincipal",
                conditions=conds,
            )
        )
    return tuple(found)


class Reach(Enum):
    """How a resource-based statement's Principal covers the requester."""

    NONE = "none"
    UNKNOWN = "unknown"
    ACCOUNT = "account"  # names the account: delegates to its identity-based policies
    DIRECT = "direct"  # names the role, the session, or everyone


def _reach_of(value: Value, principal: Principal) -> Reach:
    if isinstance(value, Unresolved):
        return Reach.UNKNOWN
    if value == "*":
        return Reach.DIRECT
    if value in (principal.role_arn, principal.session_arn):
        return Reach.DIRECT
    if value in (principal.account, f"arn:aws:iam::{principal.account}:root"):
        return Reach.ACCOUNT
    return Reach.NONE


_ORDER: Final = (Reach.DIRECT, Reach.ACCOUNT, Reach.UNKNOWN, Reach.NONE)


def reach(element: Any, principal: Principal, *, negated: bool = False) -> Reach:
    if element == "*":
        found = Reach.DIRECT
    elif isinstance(element, Mapping):
        # Only "AWS" principals are roles of this account; Service, Federated and
        # CanonicalUser principals never are.
        reaches = {_reach_of(v, principal) for v in _values(element.get("AWS", []))}
        found = next((r for r in _ORDER if r in reaches), Reach.NONE)
    else:
        found = Reach.UNKNOWN
    if not negated:
        return found
    # NotPrincipal: the statement applies to everyone it does not name.
    return {Reach.NONE: Reach.DIRECT, Reach.UNKNOWN: Reach.UNKNOWN}.get(found, Reach.NONE)


def _any_match(patterns: Iterable[Value], match: Any) -> Tri:
    return any3(None if isinstance(p, Unresolved) else match(p) for p in patterns)


def applies(statement: Statement, request: Request) -> Tri:
    """Whether the statement's Action, Resource and Condition cover the request (its
    Principal is judged apart, by `reach`)."""
    action = _any_match(
        statement.actions, lambda p: matches(str(p), request.action, ignore_case=True)
    )
    if statement.not_action:
        action = not3(action)
    resource: Tri = True
    if statement.resources is not None:
        resource = _any_match(
            statement.resources,
            lambda p: matches(str(p), request.resource, request.context, arn=True),
        )
        if statement.not_resource:
            resource = not3(resource)
    held = all3(
        conditions.evaluate(operator, key, values, request.context)
        for operator, key, values in statement.conditions
    )
    return all3((action, resource, held))


def why_unknown(statement: Statement) -> str:
    reasons = [
        str(v)
        for v in (
            *statement.actions,
            *(statement.resources or ()),
            *(v for _, _, values in statement.conditions for v in values),
        )
        if isinstance(v, Unresolved)
    ]
    reasons += [
        f"condition operator {op} is not supported"
        for op, _, _ in statement.conditions
        if not conditions.is_supported(op)
    ]
    if isinstance(statement.principal, Unresolved):
        reasons.append(str(statement.principal))
    return "; ".join(reasons) or "a principal that cannot be resolved"


_logged: set[tuple[str, str]] = set()
_logged_lock = threading.Lock()


def _log_unknown(statement: Statement, request: Request) -> None:
    with _logged_lock:
        if (statement.origin, request.action) in _logged:
            return
        _logged.add((statement.origin, request.action))
    outcome = "grants nothing" if statement.effect == ALLOW else "applies"
    log.warning(
        "iam: %s cannot be judged for %s on %s (%s); it %s (fail-closed)",
        statement.origin,
        request.action,
        request.resource,
        why_unknown(statement),
        outcome,
    )


@dataclass(frozen=True, slots=True)
class Evaluation:
    denied_by: Statement | None = None
    allowed_by: Statement | None = None  # identity-based, or resource-based naming us
    delegated_by: Statement | None = None  # resource-based Allow naming only the account


def evaluate(
    statements: Sequence[Statement],
    request: Request,
    principal: Principal,
    *,
    resource_based: bool,
) -> Evaluation:
    denied_by = allowed_by = delegated_by = None
    for statement in statements:
        covered = applies(statement, request)
        who = (
            reach(statement.principal, principal, negated=statement.not_principal)
            if resource_based
            else Reach.DIRECT
        )
        tri = all3((covered, {Reach.NONE: False, Reach.UNKNOWN: None}.get(who, True)))
        if tri is False:
            continue
        if tri is None:
            _log_unknown(statement, request)
        if statement.effect == DENY:
            denied_by = denied_by or statement
        elif tri and who is Reach.DIRECT:
            allowed_by = allowed_by or statement
        elif tri and who is Reach.ACCOUNT:
            delegated_by = delegated_by or statement
    return Evaluation(denied_by, allowed_by, delegated_by)


@dataclass(frozen=True, slots=True)
class ResourcePolicy:
    """A resource's own policy; `required` for role trust and KMS key policies."""

    statements: tuple[Statement, ...]
    required: bool = False


class Denial(Enum):
    """Why a request was denied: AWS's wording after the action and resource."""

    IDENTITY_DENY = "with an explicit deny in an identity-based policy"
    RESOURCE_DENY = "with an explicit deny in a resource-based policy"
    NO_IDENTITY_ALLOW = "because no identity-based policy allows the {action} action"
    NO_RESOURCE_ALLOW = "because no resource-based policy allows the {action} action"


@dataclass(frozen=True, slots=True)
class Verdict:
    denial: Denial | None
    statement: Statement | None = None  # the deciding statement, if one decided

    @property
    def allowed(self) -> bool:
        return self.denial is None


def authorize(
    principal: Principal,
    identity: Sequence[Statement],
    request: Request,
    resource_policy: ResourcePolicy | None = None,
) -> Verdict:
    """The decision for one action on one resource."""
    mine = evaluate(identity, request, principal, resource_based=False)
    theirs = (
        evaluate(resource_policy.statements, request, principal, resource_based=True)
        if resource_policy is not None
        else Evaluation()
    )
    if mine.denied_by is not None:
        return Verdict(Denial.IDENTITY_DENY, mine.denied_by)
    if theirs.denied_by is not None:
        return Verdict(Denial.RESOURCE_DENY, theirs.denied_by)
    if resource_policy is not None and resource_policy.required:
        if theirs.allowed_by is not None:
            return Verdict(None, theirs.allowed_by)
        if theirs.delegated_by is None:
            return Verdict(Denial.NO_RESOURCE_ALLOW)
        if mine.allowed_by is not None:
            return Verdict(None, mine.allowed_by)
        return Verdict(Denial.NO_IDENTITY_ALLOW)
    if mine.allowed_by is not None or theirs.allowed_by is not None:
        return Verdict(None, mine.allowed_by or theirs.allowed_by)
    return Verdict(Denial.NO_IDENTITY_ALLOW)
