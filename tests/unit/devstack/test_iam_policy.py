"""The evaluator's semantics (reportgrid/local/iam/policy.py, conditions.py, patterns.py) on
small hand-written policies: AWS's order, wildcards, variables, conditions, fail-closed."""

from __future__ import annotations

from typing import Any

import pytest

from reportgrid.local.iam.patterns import Unresolved, matches
from reportgrid.local.iam.policy import (
    Denial,
    Principal,
    Request,
    ResourcePolicy,
    authorize,
    statements_of,
)

ACCOUNT = "123456789012"
WORKER = Principal(f"arn:aws:iam::{ACCOUNT}:role/worker", "s1", ACCOUNT, {"tenant": "acme"})
TABLE = f"arn:aws:dynamodb:us-east-1:{ACCOUNT}:table/reports"


def policy(*statements: dict[str, Any]) -> Any:
    return statements_of({"Version": "2012-10-17", "Statement": list(statements)}, "test")


def decide(
    identity: list[dict[str, Any]],
    action: str,
    resource: str,
    *,
    context: dict[str, Any] | None = None,
    resource_policy: ResourcePolicy | None = None,
    principal: Principal = WORKER,
) -> Denial | None:
    request = Request(action, resource, {**principal.context(), **(context or {})})
    return authorize(principal, policy(*identity), request, resource_policy).denial


def allow(action: Any, resource: Any, **more: Any) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": action, "Resource": resource, **more}


def deny(action: Any, resource: Any, **more: Any) -> dict[str, Any]:
    return {"Effect": "Deny", "Action": action, "Resource": resource, **more}


def test_an_action_matches_case_insensitively_with_wildcards() -> None:
    grants = [allow("s3:getobject*", "*")]
    assert decide(grants, "s3:GetObjectVersion", "arn:aws:s3:::b/k") is None
    assert decide(grants, "s3:PutObject", "arn:aws:s3:::b/k") is Denial.NO_IDENTITY_ALLOW


def test_an_explicit_deny_beats_any_allow() -> None:
    grants = [allow("dynamodb:*", TABLE), deny("dynamodb:DeleteItem", "*")]
    assert decide(grants, "dynamodb:PutItem", TABLE) is None
    assert decide(grants, "dynamodb:DeleteItem", TABLE) is Denial.IDENTITY_DENY


def test_nothing_granted_is_the_implicit_deny() -> None:
    assert decide([], "dynamodb:GetItem", TABLE) is Denial.NO_IDENTITY_ALLOW


def test_not_action_and_not_resource_cover_everything_else() -> None:
    grants = [{"Effect": "Allow", "NotAction": "dynamodb:DeleteItem", "NotResource": "*/index/*"}]
    assert decide(grants, "dynamodb:PutItem", TABLE) is None
    assert decide(grants, "dynamodb:DeleteItem", TABLE) is Denial.NO_IDENTITY_ALLOW
    assert decide(grants, "dynamodb:Query", TABLE + "/index/x") is Denial.NO_IDENTITY_ALLOW


@pytest.mark.parametrize(
    ("pattern", "arn", "expected"),
    [
        ("arn:aws:sqs:*:123456789012:q", "arn:aws:sqs:eu-west-1:123456789012:q", True),
        # A wildcard stays inside its segment, except in the last (the resource)
        ("arn:aws:sqs:*:q", "arn:aws:sqs:eu-west-1:123456789012:q", False),
        ("arn:aws:s3:::b/*", "arn:aws:s3:::b/a:b/c", True),
        ("arn:aws:s3:::b/*", "arn:aws:s3:::bb/c", False),
        (TABLE, TABLE + "/index/x", False),
        (TABLE + "/index/*", TABLE + "/index/x", True),
        # ? is exactly one character (a secret's random six)
        ("arn:aws:sm:r:1:secret:id-??????", "arn:aws:sm:r:1:secret:id-AbC123", True),
        ("arn:aws:sm:r:1:secret:id-??????", "arn:aws:sm:r:1:secret:id-AbC12", False),
        # ARNs are case-sensitive; a dot is a dot
        ("arn:aws:s3:::Bucket/*", "arn:aws:s3:::bucket/k", False),
        ("arn:aws:s3:::a.b/*", "arn:aws:s3:::axb/k", False),
    ],
)
def test_resource_arns_match_segment_by_segment(pattern: str, arn: str, expected: bool) -> None:
    assert matches(pattern, arn, arn=True) is expected


def test_a_policy_variable_confines_a_session_to_its_tenant() -> None:
    grants = [allow("s3:GetObject", "arn:aws:s3:::in/tenants/${aws:PrincipalTag/tenant}/*")]
    assert decide(grants, "s3:GetObject", "arn:aws:s3:::in/tenants/acme/a.csv") is None
    assert decide(grants, "s3:GetObject", "arn:aws:s3:::in/tenants/other/a.csv") is not None
    untagged = Principal(WORKER.role_arn, "s2", ACCOUNT)
    # A missing variable matches nothing
    assert decide(grants, "s3:GetObject", "arn:aws:s3:::in/tenants//a", principal=untagged)
    # A substituted value is literal: a tenant named "*" does not match every tenant
    star = Principal(WORKER.role_arn, "s3", ACCOUNT, {"tenant": "*"})
    assert decide(grants, "s3:GetObject", "arn:aws:s3:::in/tenants/acme/a", principal=star)


def test_bool_secure_transport_denies_plain_http() -> None:
    grants = [
        allow("sqs:*", "*"),
        deny("sqs:*", "*", Condition={"Bool": {"aws:SecureTransport": "false"}}),
    ]
    secure = {"aws:securetransport": True}
    assert decide(grants, "sqs:SendMessage", "arn:q", context=secure) is None
    plain = {"aws:securetransport": False}
    assert decide(grants, "sqs:SendMessage", "arn:q", context=plain) is Denial.IDENTITY_DENY


TRUST_CONDITION = {
    "Null": {"aws:RequestTag/tenant": "false"},
    "StringLike": {"aws:RequestTag/tenant": "?*"},
    "ForAllValues:StringEquals": {"aws:TagKeys": ["tenant"]},
}


@pytest.mark.parametrize(
    ("tags", "allowed"),
    [
        ({"tenant": "acme"}, True),
        ({}, False),  # Null: the tag must be there
        ({"tenant": ""}, False),  # StringLike ?*: and not empty
        ({"tenant": "acme", "admin": "yes"}, False),  # ForAllValues: no other tag keys
    ],
)
def test_the_input_reader_trust_conditions(tags: dict[str, str], allowed: bool) -> None:
    context: dict[str, Any] = {f"aws:requesttag/{k}": v for k, v in tags.items()}
    if tags:
        context["aws:tagkeys"] = tuple(tags)
    grants = [allow("sts:AssumeRole", "*", Condition=TRUST_CONDITION)]
    assert (decide(grants, "sts:AssumeRole", "arn:role", context=context) is None) is allowed


def test_for_all_values_over_no_values_is_true_and_for_any_value_false() -> None:
    all_of = [allow("a:b", "*", Condition={"ForAllValues:StringEquals": {"aws:TagKeys": "x"}})]
    any_of = [allow("a:b", "*", Condition={"ForAnyValue:StringEquals": {"aws:TagKeys": "x"}})]
    assert decide(all_of, "a:b", "r") is None
    assert decide(any_of, "a:b", "r") is Denial.NO_IDENTITY_ALLOW


def test_a_missing_key_fails_positive_operators_and_passes_negated_and_if_exists() -> None:
    def on(condition: dict[str, Any]) -> Denial | None:
        return decide([allow("a:b", "*", Condition=condition)], "a:b", "r")

    assert on({"StringEquals": {"s3:prefix": "x"}}) is Denial.NO_IDENTITY_ALLOW
    assert on({"StringNotEquals": {"s3:prefix": "x"}}) is None
    assert on({"StringEqualsIfExists": {"s3:prefix": "x"}}) is None
    assert on({"Null": {"s3:prefix": "true"}}) is None


def test_arn_like_and_numeric_conditions() -> None:
    grants = [
        allow(
            "a:b",
            "*",
            Condition={
                "ArnLike": {"aws:SourceArn": "arn:aws:cloudwatch:*:123456789012:alarm:*"},
                "NumericLessThanEquals": {"s3:max-keys": "10"},
            },
        )
    ]
    good = {
        "aws:sourcearn": "arn:aws:cloudwatch:eu-west-1:123456789012:alarm:x",
        "s3:max-keys": "5",
    }
    assert decide(grants, "a:b", "r", context=good) is None
    assert decide(grants, "a:b", "r", context=good | {"s3:max-keys": "11"}) is not None


def test_an_unsupported_operator_grants_nothing_and_denies_everything() -> None:
    future = {"DateGreaterThan": {"aws:CurrentTime": "2020-01-01T00:00:00Z"}}
    assert decide([allow("a:b", "*", Condition=future)], "a:b", "r") is Denial.NO_IDENTITY_ALLOW
    grants = [allow("a:b", "*"), deny("a:b", "*", Condition=future)]
    assert decide(grants, "a:b", "r") is Denial.IDENTITY_DENY


def test_an_unresolved_value_grants_nothing_and_denies_everything() -> None:
    gone = Unresolved("a generated name")
    assert decide([allow("a:b", [gone])], "a:b", "r") is Denial.NO_IDENTITY_ALLOW
    # The resolved entries of the same statement still grant
    assert decide([allow("a:b", [gone, "r"])], "a:b", "r") is None
    assert decide([allow("a:b", "*"), deny("a:b", [gone])], "a:b", "r") is Denial.IDENTITY_DENY


BUCKET_OBJECT = "arn:aws:s3:::results/k"


def bucket_policy(principal: Any, *, required: bool = False) -> ResourcePolicy:
    statement = {
        "Effect": "Allow",
        "Principal": principal,
        "Action": "s3:GetObject",
        "Resource": "*",
    }
    return ResourcePolicy(policy(statement), required=required)


def test_a_resource_policy_naming_the_role_suffices_in_the_same_account() -> None:
    named = bucket_policy({"AWS": WORKER.role_arn})
    assert decide([], "s3:GetObject", BUCKET_OBJECT, resource_policy=named) is None


def test_a_resource_policy_naming_only_the_account_delegates_to_iam() -> None:
    account = bucket_policy({"AWS": f"arn:aws:iam::{ACCOUNT}:root"})
    assert decide([], "s3:GetObject", BUCKET_OBJECT, resource_policy=account) is not None
    grants = [allow("s3:GetObject", "*")]
    assert decide(grants, "s3:GetObject", BUCKET_OBJECT, resource_policy=account) is None


def test_a_service_principal_is_never_a_role() -> None:
    service = bucket_policy({"Service": "cloudwatch.amazonaws.com"})
    assert decide([], "s3:GetObject", BUCKET_OBJECT, resource_policy=service) is not None


def test_a_resource_policy_deny_beats_an_identity_allow() -> None:
    statement = {"Effect": "Deny", "Principal": {"AWS": "*"}, "Action": "s3:*", "Resource": "*"}
    denying = ResourcePolicy(policy(statement))
    grants = [allow("s3:*", "*")]
    assert (
        decide(grants, "s3:GetObject", BUCKET_OBJECT, resource_policy=denying)
        is Denial.RESOURCE_DENY
    )


def test_a_trust_policy_must_allow_even_when_the_identity_policy_does() -> None:
    grants = [allow("sts:AssumeRole", "*")]
    nobody = ResourcePolicy((), required=True)
    assert (
        decide(grants, "sts:AssumeRole", "arn:role", resource_policy=nobody)
        is Denial.NO_RESOURCE_ALLOW
    )
    # Trusting the account: the identity-based policy decides
    trust = {"Effect": "Allow", "Principal": {"AWS": ACCOUNT}, "Action": "sts:AssumeRole"}
    account = ResourcePolicy(policy(trust), required=True)
    assert decide(grants, "sts:AssumeRole", "arn:role", resource_policy=account) is None
    assert (
        decide([], "sts:AssumeRole", "arn:role", resource_policy=account)
        is Denial.NO_IDENTITY_ALLOW
    )
