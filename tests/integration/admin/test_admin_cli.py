"""Every `reportgrid admin` command against the local region's table (moto server), with
the bad inputs an operator meets: their one-line messages and exit codes."""

from __future__ import annotations

import json
import time
from typing import Any

import boto3

from reportgrid import apikeys, resources
from reportgrid.cli.admin_store import AdminStore, Target
from reportgrid.cli.exit_codes import Exit
from reportgrid.local.bootstrap import RegionResources
from tests.integration.admin.conftest import Admin


def _json(result: Any) -> Any:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _key_item(aws: RegionResources, secret: str) -> dict[str, Any]:
    ddb = boto3.client("dynamodb", region_name=aws.region, endpoint_url=aws.endpoint_url)
    item: dict[str, Any] = ddb.get_item(
        TableName=aws.table_name, Key=apikeys.item_key(apikeys.key_hash(secret))
    )["Item"]
    return item


def test_tenants_are_created_shown_listed_changed_and_disabled(admin: Admin) -> None:
    # Given a new tenant with one quota named, the others defaulted
    created = _json(admin("tenant", "create", "acme", "--name", "Acme", "--submit-rate", "20",
                          "--json"))  # fmt: skip
    assert created["tenant"] == "acme"
    assert not created["disabled"]
    assert created["quotas"]["submit_per_second"] == 20.0
    assert created["quotas"]["retention_default_seconds"] == 7 * 86_400
    admin("tenant", "create", "globex")

    # Then get and list show it
    assert _json(admin("tenant", "get", "acme", "--json"))["display_name"] == "Acme"
    listed = _json(admin("tenant", "list", "--json"))
    assert [t["tenant"] for t in listed] == ["acme", "globex"]
    text = admin("tenant", "list")
    assert "acme" in text.stdout
    assert "20" in text.stdout

    # When its quotas change, only those change
    updated = _json(admin("tenant", "update", "acme", "--max-running", "3",
                          "--retention-max", "30d", "--json"))  # fmt: skip
    assert updated["quotas"]["max_running"] == 3
    assert updated["quotas"]["retention_max_seconds"] == 30 * 86_400
    assert updated["quotas"]["submit_per_second"] == 20.0

    # And disabling it shows, and is undone by --enable
    disabled = admin("tenant", "disable", "acme")
    assert disabled.exit_code == 0, disabled.output
    assert _json(admin("tenant", "get", "acme", "--json"))["disabled"] is True
    again = admin("tenant", "disable", "acme")
    assert again.exit_code == Exit.PRECONDITION
    assert "already disabled" in again.stderr
    assert _json(admin("tenant", "update", "acme", "--enable", "--json"))["disabled"] is False


def test_bad_tenant_input_is_one_line_with_its_exit_code(admin: Admin) -> None:
    assert admin("tenant", "create", "acme").exit_code == 0

    duplicate = admin("tenant", "create", "acme")
    assert duplicate.exit_code == Exit.PRECONDITION
    assert "tenant 'acme' already exists" in duplicate.stderr
    assert len(duplicate.stderr.strip().splitlines()) == 1

    for args in (("tenant", "get", "nobody"), ("tenant", "update", "nobody", "--name", "x"),
                 ("key", "create", "nobody"), ("key", "list", "nobody")):  # fmt: skip
        unknown = admin(*args)
        assert unknown.exit_code == Exit.NOT_FOUND, (args, unknown.output)
        assert "tenant 'nobody' was not found" in unknown.stderr

    bad_name = admin("tenant", "create", "no spaces")
    assert bad_name.exit_code == Exit.USAGE
    assert "[A-Za-z0-9_-]" in bad_name.stderr

    bad_quota = admin("tenant", "update", "acme", "--retention-default", "100d")
    assert bad_quota.exit_code == Exit.USAGE
    assert "retention_default_seconds" in bad_quota.stderr

    nothing = admin("tenant", "update", "acme")
    assert nothing.exit_code == Exit.USAGE
    assert "nothing to change" in nothing.stderr


def test_a_key_is_shown_once_listed_without_its_secret_revoked_once(
    admin: Admin, aws: RegionResources
) -> None:
    admin("tenant", "create", "acme")
    # Given a key made for the tenant
    made = admin("key", "create", "acme", "--name", "ci", "--expires", "30d")
    assert made.exit_code == 0, made.output
    secret = made.stdout.strip()
    assert apikeys.well_formed(secret)
    assert "only time the key is shown" in made.stderr
    prefix = apikeys.key_prefix(secret)

    # Then the table holds its hash, never the secret, and its expiry
    item = _key_item(aws, secret)
    assert secret not in json.dumps(item)
    expires_ms = int(item["expires_ms"]["N"])
    assert abs(expires_ms - (time.time() * 1000 + 30 * 86_400_000)) < 60_000

    # And the list shows its prefix, created, expires, last used: never the secret
    listed = _json(admin("key", "list", "acme", "--json"))
    assert [k["prefix"] for k in listed] == [prefix]
    assert listed[0]["last_used"] is None
    assert listed[0]["expires"] != "never"
    text = admin("key", "list", "acme")
    assert prefix in text.stdout
    assert secret not in text.stdout
    assert "active" in text.stdout

    # When it is revoked, it shows revoked; revoking it again changes nothing
    revoked = admin("key", "revoke", "acme", prefix)
    assert revoked.exit_code == 0, revoked.output
    assert _key_item(aws, secret)["revoked"] == {"BOOL": True}
    twice = admin("key", "revoke", "acme", prefix)
    assert twice.exit_code == Exit.PRECONDITION
    assert f"key {prefix} is already revoked" in twice.stderr

    unknown = admin("key", "revoke", "acme", "rg_AAAAAAAA")
    assert unknown.exit_code == Exit.NOT_FOUND
    assert "API key 'rg_AAAAAAAA of tenant acme' was not found" in unknown.stderr
    malformed = admin("key", "revoke", "acme", secret)  # the secret is not a prefix
    assert malformed.exit_code == Exit.USAGE
    assert secret not in malformed.stderr.replace(repr(secret), "")  # only echoed quoted


def test_expiry_in_the_past_and_keys_of_a_disabled_tenant_are_refused(admin: Admin) -> None:
    admin("tenant", "create", "acme")
    past = admin("key", "create", "acme", "--expires", "2020-01-01T00:00:00Z")
    assert past.exit_code == Exit.USAGE
    assert "expires: is in the past" in past.stderr
    garbled = admin("key", "create", "acme", "--expires", "soon")
    assert garbled.exit_code == Exit.USAGE
    assert "neither a duration" in garbled.stderr
    never = _json(admin("key", "create", "acme", "--expires", "never", "--json"))
    assert never["expires"] == "never"

    admin("tenant", "disable", "acme")
    refused = admin("key", "create", "acme")
    assert refused.exit_code == Exit.PRECONDITION
    assert "is disabled" in refused.stderr


def test_rotation_makes_a_new_key_and_bounds_the_old_one(
    admin: Admin, aws: RegionResources
) -> None:
    admin("tenant", "create", "acme")
    old_secret = admin("key", "create", "acme", "--name", "svc").stdout.strip()
    old_prefix = apikeys.key_prefix(old_secret)

    rotated = admin("key", "rotate", "acme", old_prefix, "--old-valid-for", "2h", "--json")
    new = _json(rotated)
    assert apikeys.well_formed(new["api_key"])
    assert new["prefix"] != old_prefix
    assert new["name"] == "svc"
    old_until = int(_key_item(aws, old_secret)["expires_ms"]["N"])
    assert abs(old_until - (time.time() * 1000 + 2 * 3_600_000)) < 60_000
    assert f"the old key {old_prefix} works until" in rotated.stderr

    # Rotating a revoked key is refused; the old-key time must not be in the past
    admin("key", "revoke", "acme", old_prefix)
    refused = admin("key", "rotate", "acme", old_prefix)
    assert refused.exit_code == Exit.PRECONDITION
    assert "is revoked" in refused.stderr
    past = admin("key", "rotate", "acme", new["prefix"], "--old-valid-for", "2001-01-01")
    assert past.exit_code == Exit.USAGE
    assert "old_valid_until: is in the past" in past.stderr


def test_the_audit_log_names_each_action_and_the_operator(admin: Admin) -> None:
    admin("tenant", "create", "acme")
    secret = admin("key", "create", "acme").stdout.strip()
    admin("key", "revoke", "acme", apikeys.key_prefix(secret))
    admin("tenant", "update", "acme", "--submit-rate", "5")
    admin("tenant", "disable", "acme")
    admin("tenant", "create", "globex")

    found = _json(admin("audit", "--tenant", "acme", "--since", "1d", "--json"))
    assert [r["action"] for r in found] == [  # newest first
        "tenant.disable",
        "tenant.update",
        "key.revoke",
        "key.create",
        "tenant.create",
    ]
    # The operator's IAM identity (moto's STS answers for the local credentials)
    assert all(r["actor"].startswith("arn:aws:") for r in found)
    assert {r["region"] for r in found} == {"us-east-1"}
    assert found[1]["detail"] == {"quotas": {"submit_per_second": 5.0}}
    assert found[3]["detail"]["prefix"] == apikeys.key_prefix(secret)
    assert "api_key" not in json.dumps(found)
    assert secret not in json.dumps(found)

    # --since bounds it; another tenant's records are apart
    assert _json(admin("audit", "--tenant", "acme", "--since", "2099-01-01", "--json")) == []
    assert [r["action"] for r in _json(admin("audit", "--tenant", "globex", "--json"))] == [
        "tenant.create"
    ]
    text = admin("audit", "--tenant", "acme")
    assert "tenant.disable" in text.stdout
    assert "arn:aws:" in text.stdout


def test_the_table_comes_from_the_stack_outputs(aws: RegionResources) -> None:
    # Given a data stack whose output names the table (a second table, so it shows)
    cfn = boto3.client("cloudformation", region_name=aws.region, endpoint_url=aws.endpoint_url)
    template = {
        "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
        "Outputs": {"TableName": {"Value": "reportgrid-other"}},
    }
    cfn.create_stack(StackName="Reportgrid-Data", TemplateBody=json.dumps(template))
    target = Target(region=aws.region, endpoint_url=aws.endpoint_url)
    assert AdminStore(target).table == "reportgrid-other"
    # Without the stack: the name the CDK gives the table
    elsewhere = Target(region=aws.region, endpoint_url=aws.endpoint_url, stack="Nope")
    assert AdminStore(elsewhere).table == resources.TABLE_NAME == aws.table_name
