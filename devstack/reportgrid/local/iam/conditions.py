"""The Condition element: the operators the templates use and their close relatives, with
IAM's rules for missing keys, `...IfExists`, `Null` and the `ForAllValues:`/`ForAnyValue:`
set operators (docs.aws.amazon.com/IAM/latest/UserGuide/
reference_policies_elements_condition_operators.html and
reference_policies_condition-single-vs-multi-valued-context-keys.html).

An operator outside SUPPORTED (Date*, IpAddress, Binary*) gives None: the evaluator then
lets no Allow grant and every Deny apply (fail-closed) and logs it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Final

from reportgrid.local.iam.patterns import Context, Tri, Unresolved, Value, matches

_POSITIVE: Final[dict[str, Callable[[str, str, Context], bool]]] = {
    "StringEquals": lambda p, v, c: matches(p, v, c, wildcards=False),
    "StringEqualsIgnoreCase": lambda p, v, c: matches(p, v, c, wildcards=False, ignore_case=True),
    "StringLike": lambda p, v, c: matches(p, v, c),  # noqa: PLW0108 -- keyword defaults
    # ArnEquals takes wildcards too; both compare the six ARN segments one by one.
    "ArnEquals": lambda p, v, c: matches(p, v, c, arn=True),
    "ArnLike": lambda p, v, c: matches(p, v, c, arn=True),
    "Bool": lambda p, v, _: p.lower() == v.lower(),
    "NumericEquals": lambda p, v, _: _numeric(p, v, lambda a, b: a == b),
    "NumericLessThan": lambda p, v, _: _numeric(p, v, lambda a, b: a < b),
    "NumericLessThanEquals": lambda p, v, _: _numeric(p, v, lambda a, b: a <= b),
    "NumericGreaterThan": lambda p, v, _: _numeric(p, v, lambda a, b: a > b),
    "NumericGreaterThanEquals": lambda p, v, _: _numeric(p, v, lambda a, b: a >= b),
}
# The negated operators: true when the value matches none of the policy's values.
_NEGATED: Final = {
    "StringNotEquals": "StringEquals",
    "StringNotEqualsIgnoreCase": "StringEqualsIgnoreCase",
    "StringNotLike": "StringLike",
    "ArnNotEquals": "ArnEquals",
    "ArnNotLike": "ArnLike",
    "NumericNotEquals": "NumericEquals",
}
SUPPORTED: Final = frozenset({*_POSITIVE, *_NEGATED, "Null"})
_SET_PREFIXES: Final = ("ForAllValues:", "ForAnyValue:")


def _numeric(policy: str, value: str, compare: Callable[[float, float], bool]) -> bool:
    try:
        return compare(float(value), float(policy))
    except ValueError:
        return False


def split_operator(operator: str) -> tuple[str | None, str, bool]:
    """("ForAllValues:" / "ForAnyValue:" / None, the base operator, IfExists?)."""
    qualifier = next((p for p in _SET_PREFIXES if operator.startswith(p)), None)
    base = operator.removeprefix(qualifier or "")
    if_exists = base.endswith("IfExists") and base != "IfExists"
    return qualifier, base.removesuffix("IfExists") if if_exists else base, if_exists


def is_supported(operator: str) -> bool:
    _, base, _ = split_operator(operator)
    return base in SUPPORTED


def _request_values(key: str, context: Context) -> tuple[str, ...] | None:
    found = context.get(key.lower())
    if found is None:
        return None
    if isinstance(found, bool):
        return ("true" if found else "false",)
    if isinstance(found, str):
        return (found,)
    return found


def _policy_text(value: Value) -> str:
    assert not isinstance(value, Unresolved)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def evaluate(operator: str, key: str, policy_values: Sequence[Value], context: Context) -> Tri:
    """One operator/key pair of a Condition block: True, False, or None (cannot tell)."""
    qualifier, base, if_exists = split_operator(operator)
    if base not in SUPPORTED or any(isinstance(v, Unresolved) for v in policy_values):
        return None
    wanted = [_policy_text(v) for v in policy_values]
    values = _request_values(key, context)
    if base == "Null":
        # "true": the key must be absent; "false": present.
        return any((values is None or not values) == (w.lower() == "true") for w in wanted)
    if values is None or (qualifier and not values):
        # A missing key fails a positive test and passes a negated one; IfExists passes;
        # ForAllValues over no values is true, ForAnyValue false.
        if qualifier == "ForAllValues:":
            return True
        if qualifier == "ForAnyValue:":
            return False
        return if_exists or base in _NEGATED
    positive = _POSITIVE[_NEGATED.get(base, base)]

    def hit(value: str) -> bool:
        return any(positive(w, value, context) for w in wanted)

    negated = base in _NEGATED
    if qualifier == "ForAllValues:":
        return all(hit(v) != negated for v in values)
    if qualifier == "ForAnyValue:":
        return any(hit(v) != negated for v in values)
    found = any(hit(v) for v in values)
    return not found if negated else found
