"""`reportgrid admin tenant update --webhook-url` and `tenant webhook-secret` against the
test region's table and Secrets Manager (moto server): what the webhook function then reads
from the tenant item, the refusals an operator meets, and the audit records."""

from __future__ import annotations

import json
import time
from typing import Any

import boto3
import pytest

from reportgrid import resources, tenants, webhook_policy
from reportgrid.cli.admin_store import Target
from reportgrid.cli.exit_codes import Exit
from reportgrid.local.bootstrap import RegionResources
from reportgrid.webhooks import sign, verify
from tests.integration.admin.conftest import Admin

ROOT = "local-webhook-root-" + "r" * 32


def _json(result: Any) -> Any:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _webhooks(aws: RegionResources, tenant: str) -> tenants.Webhooks:
    """The tenant's webhook settings as the delivery function reads them (GetItem)."""
    ddb = boto3.client("dynamodb", region_name=aws.region, endpoint_url=aws.endpoint_url)
    item = ddb.get_item(TableName=aws.table_name, Key=tenants.item_key(tenant))["Item"]
    return tenants.webhooks_from_item(item)


def _put_root(aws: RegionResources) -> None:
    secrets = boto3.client("secretsmanager", region_name=aws.region, endpoint_url=aws.endpoint_url)
    secrets.create_secret(Name=resources.WEBHOOK_SECRET_NAME, SecretString=ROOT)


def test_a_default_webhook_is_set_validated_cleared_and_audited(
    admin: Admin, aws: RegionResources
) -> None:
    assert admin("tenant", "create", "acme").exit_code == 0
    # When the operator sets an https URL, the delivery function's read sees it
    url = "https://hooks.example.com/reportgrid?x=1"
    updated = _json(admin("tenant", "update", "acme", "--webhook-url", url, "--json"))
    assert updated["webhooks"]["url"] == url
    assert _webhooks(aws, "acme").url == url
    assert "webhook: " + url in admin("tenant", "get", "acme").stdout

    # Bad URLs: one line naming the problem, nothing changed
    for bad, words in (
        ("http://hooks.example.com/", "must be an https:// URL"),
        ("https://10.1.2.3/hook", "10.1.2.3 is a private address"),
        ("https://[64:ff9b::a9fe:a9fe]/", "instance metadata service"),
        ("https://user:pw@hooks.example.com/", "user name or password"),
        ("https://hooks.example.com/" + "a" * 2100, "at most 2048"),
    ):
        refused = admin("tenant", "update", "acme", "--webhook-url", bad)
        assert refused.exit_code == Exit.USAGE, (bad, refused.output)
        assert "webhook_url" in refused.stderr
        assert words in refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1
    both = admin("tenant", "update", "acme", "--webhook-url", url, "--clear-webhook-url")
    assert both.exit_code == Exit.USAGE
    assert "not both" in both.stderr
    assert _webhooks(aws, "acme").url == url

    # And --clear-webhook-url removes it
    cleared = _json(admin("tenant", "update", "acme", "--clear-webhook-url", "--json"))
    assert cleared["webhooks"]["url"] == ""
    assert _webhooks(aws, "acme").url == ""
    actions = _json(admin("audit", "--tenant", "acme", "--json"))
    assert [(r["action"], r["detail"]) for r in actions[:2]] == [
        ("tenant.update", {"webhook_url": None}),
        ("tenant.update", {"webhook_url": url}),
    ]


def test_loopback_webhooks_only_for_a_local_endpoint(admin: Admin) -> None:
    # The test region's endpoint is on 127.0.0.1: its receivers are too
    assert Target(endpoint_url="http://127.0.0.1:5000").local
    assert not Target(endpoint_url="https://dynamodb.us-east-1.amazonaws.com").local
    assert not Target().local
    admin("tenant", "create", "acme")
    local = _json(admin("tenant", "update", "acme", "--webhook-url", "http://127.0.0.1:9/h",
                        "--json"))  # fmt: skip
    assert local["webhooks"]["url"] == "http://127.0.0.1:9/h"


def test_the_signing_secret_is_shown_and_rotated_with_an_overlap(
    admin: Admin, aws: RegionResources
) -> None:
    admin("tenant", "create", "acme")
    # Without the deployment's root secret nothing is shown or changed
    missing = admin("tenant", "webhook-secret", "acme", "--rotate")
    assert missing.exit_code == Exit.NOT_FOUND, missing.output
    assert resources.WEBHOOK_SECRET_NAME in missing.stderr
    assert _webhooks(aws, "acme").secret_version == 1
    _put_root(aws)

    # The secret printed is the one the function signs with (derived from the root)
    v1 = webhook_policy.signing_secret(ROOT.encode(), "acme", 1)
    shown = _json(admin("tenant", "webhook-secret", "acme", "--json"))
    assert shown == {"tenant": "acme", "version": 1, "secret": v1, "previous": None}
    text = admin("tenant", "webhook-secret", "acme")
    assert text.stdout.strip() == v1
    assert "version 1" in text.stderr

    # When it is rotated, both versions sign during the overlap
    rotated = _json(admin("tenant", "webhook-secret", "acme", "--rotate", "--json"))
    v2 = webhook_policy.signing_secret(ROOT.encode(), "acme", 2)
    assert (rotated["version"], rotated["secret"]) == (2, v2)
    assert rotated["previous"]["version"] == 1
    signing = _webhooks(aws, "acme").signing_secrets(ROOT.encode(), "acme", tenants.now_ms())
    assert signing == (v2, v1)
    body = b'{"event_id":"e1"}'
    header = sign(body, signing, int(time.time()))
    for secret in (v1, v2):  # a receiver that knows either one verifies
        assert verify(body, header, secret)["event_id"] == "e1"

    # A rotation without overlap: only the new version signs
    abrupt = _json(admin("tenant", "webhook-secret", "acme", "--rotate", "--overlap", "0s",
                         "--json"))  # fmt: skip
    assert (abrupt["version"], abrupt["previous"]) == (3, None)
    now = tenants.now_ms()
    assert _webhooks(aws, "acme").signing_versions(now) == (3,)

    # Audited with versions, never a secret
    found = _json(admin("audit", "--tenant", "acme", "--json"))
    assert [r["action"] for r in found[:4]] == [
        "tenant.webhook_secret.rotate",
        "tenant.webhook_secret.rotate",
        "tenant.webhook_secret.show",
        "tenant.webhook_secret.show",
    ]
    assert found[0]["detail"]["version"] == 3
    assert all(s not in json.dumps(found) for s in (v1, v2, ROOT))


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (("tenant", "webhook-secret", "nobody"), Exit.NOT_FOUND, "tenant 'nobody' was not found"),
        (
            ("tenant", "webhook-secret", "acme", "--rotate", "--overlap", "soon"),
            Exit.USAGE,
            "not a duration",
        ),
    ],
)
def test_bad_webhook_secret_input_is_one_line(
    admin: Admin, aws: RegionResources, args: tuple[str, ...], code: Exit, words: str
) -> None:
    _put_root(aws)
    admin("tenant", "create", "acme")
    result = admin(*args)
    assert result.exit_code == code, result.output
    assert words in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
