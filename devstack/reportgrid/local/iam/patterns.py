"""How a policy string matches a request value: wildcards, ARN segments and policy variables
(`${aws:PrincipalTag/tenant}`), as the IAM policy reference defines them; and the two
values every part of the evaluator shares: the request context, and `Unresolved`, a
template value that could not be made local.

Three-valued logic (`Tri`): a match is True, False or None ("cannot tell": an unresolved
template value, an unsupported operator). The evaluator turns None into fail-closed
decisions (policy.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Final, TypeAlias


@dataclass(frozen=True, slots=True)
class Unresolved:
    """A template value the resolver could not turn into a local one; it matches nothing
    an Allow could grant, and everything a Deny could refuse."""

    reason: str

    def __str__(self) -> str:
        return f"<unresolved: {self.reason}>"


# A policy element's value after the template was resolved.
Value: TypeAlias = str | bool | Unresolved
# A request-context value: single-valued keys hold one string (or a bool), multivalued
# keys (aws:TagKeys) a tuple.
ContextValue: TypeAlias = str | bool | tuple[str, ...]
# The request context, keyed by condition key in lower case (keys are case-insensitive).
Context: TypeAlias = Mapping[str, ContextValue]
Tri: TypeAlias = bool | None

# A variable, a wildcard, a run of plain text, or a lone "$".
_TOKEN: Final = re.compile(r"\$\{([^}]*)\}|\*|\?|[^$*?]+|\$")
_ARN_SEGMENTS: Final = 6


def all3(values: Iterable[Tri]) -> Tri:
    result: Tri = True
    for value in values:
        if value is False:
            return False
        if value is None:
            result = None
    return result


def any3(values: Iterable[Tri]) -> Tri:
    result: Tri = False
    for value in values:
        if value is True:
            return True
        if value is None:
            result = None
    return result


def not3(value: Tri) -> Tri:
    return None if value is None else not value


def context_text(value: ContextValue) -> str | None:
    """A single-valued context value as text (bools as IAM writes them)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else None


def _variable(body: str, context: Context) -> str | None:
    """The text a `${...}` stands for: `${*}`, `${?}` and `${$}` are the characters
    themselves; `${key}` is the key's value, `${key, 'default'}` with a default; None when
    the key is missing (IAM then treats the element as not matching)."""
    body = body.strip()
    if body in ("*", "?", "$"):
        return body
    key, _, default = body.partition(",")
    found = context.get(key.strip().lower())
    text = None if found is None else context_text(found)
    if text is not None:
        return text
    default = default.strip()
    if len(default) >= 2 and default[0] == default[-1] == "'":
        return default[1:-1]
    return None


def _compile(
    pattern: str, context: Context, *, wildcards: bool, arn: bool, ignore_case: bool
) -> re.Pattern[str] | None:
    # ARN patterns match segment by segment: a wildcard in the first five colon-delimited
    # segments stays inside its segment; the sixth (the resource) may contain colons.
    arn = arn and pattern.startswith("arn:")
    segment = 0
    parts: list[str] = []
    for token in _TOKEN.finditer(pattern):
        text = token.group(0)
        if token.group(1) is not None:
            value = _variable(token.group(1), context)
            if value is None:
                return None
            parts.append(re.escape(value))  # a substituted value is literal
        elif wildcards and text in ("*", "?"):
            inside = arn and segment < _ARN_SEGMENTS - 1
            parts.append(("[^:]" if inside else ".") + ("*" if text == "*" else ""))
        else:
            segment += text.count(":")
            parts.append(re.escape(text))
    return re.compile("".join(parts), re.IGNORECASE if ignore_case else 0)


@lru_cache(maxsize=4096)
def _compile_plain(
    pattern: str, wildcards: bool, arn: bool, ignore_case: bool
) -> re.Pattern[str] | None:
    return _compile(pattern, {}, wildcards=wildcards, arn=arn, ignore_case=ignore_case)


def matches(
    pattern: str,
    value: str,
    context: Context | None = None,
    *,
    wildcards: bool = True,
    arn: bool = False,
    ignore_case: bool = False,
) -> bool:
    """Whether `value` matches the policy string `pattern` (`*` and `?` wildcards unless
    `wildcards` is False; policy variables from `context`)."""
    if wildcards and pattern == "*":
        return True
    if "${" in pattern:
        compiled = _compile(
            pattern, context or {}, wildcards=wildcards, arn=arn, ignore_case=ignore_case
        )
    else:
        compiled = _compile_plain(pattern, wildcards, arn, ignore_case)
    return compiled is not None and compiled.fullmatch(value) is not None
