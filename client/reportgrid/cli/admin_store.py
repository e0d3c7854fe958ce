"""What `reportgrid admin` does to the table, with the operator's own AWS credentials.

Imported only when an admin command runs: it needs boto3 and the server's item schema
(reportgrid.resources, .apikeys, .tenants, .audit: the `admin` extra), which a client
install without that extra does not have. Every change is followed by its audit record;
errors are Reportgrid errors with a message that says what to do.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from functools import cached_property
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

import boto3
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from reportgrid import apikeys, audit, resources, tenants, webhook_policy
from reportgrid.errors import (
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    Unauthenticated,
    Unavailable,
)
from reportgrid.ids import validate_tenant
from reportgrid.stack_names import DATA_STACK, TABLE_OUTPUT

if TYPE_CHECKING:
    from collections.abc import Iterator

    from mypy_boto3_dynamodb.client import DynamoDBClient

_CONDITION_FAILED: Final = "ConditionalCheckFailedException"
_NO_CREDENTIALS: Final = frozenset(
    {
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "ExpiredToken",
        "ExpiredTokenException",  # DynamoDB's name for expired session credentials
        "AccessDenied",
    }
)


@dataclass(frozen=True, slots=True)
class Target:
    """Where the admin commands go: the region, an endpoint (the local region) and the
    table (None: from the stack's outputs)."""

    region: str | None = None
    endpoint_url: str | None = None
    table: str | None = None
    stack: str = DATA_STACK

    @property
    def local(self) -> bool:
        """An endpoint on this machine: the local region, whose webhook receivers listen on
        loopback (its function runs with ENV.WEBHOOK_ALLOW_LOOPBACK); nowhere else."""
        host = urlsplit(self.endpoint_url).hostname if self.endpoint_url else None
        return bool(host) and webhook_policy.is_loopback_host(str(host))


@dataclass(frozen=True, slots=True)
class SigningSecret:
    """A tenant's signing secret as the operator hands it over, and which other version
    still signs (0: none) until when."""

    tenant: str
    version: int
    secret: str  # derived from the root on demand, never stored
    previous_version: int = 0
    previous_until_ms: int = 0


@dataclass(frozen=True, slots=True)
class NewKey:
    secret: str  # shown once, never stored
    record: apikeys.ApiKeyRecord


def _fail(error: ClientError | BotoCoreError, doing: str) -> Exception:
    """A boto error as a Reportgrid error that says what to check."""
    if isinstance(error, NoCredentialsError):
        return Unauthenticated(
            f"no AWS credentials for {doing}: set AWS_PROFILE or run `aws sso login`"
        )
    if isinstance(error, ClientError):
        code = error.response.get("Error", {}).get("Code", "")
        if code in _NO_CREDENTIALS or code.endswith("AccessDeniedException"):
            return Unauthenticated(
                f"AWS refused {doing} ({code}): check the operator's AWS credentials and "
                "that their IAM policy allows it"
            )
        if code == "ResourceNotFoundException":
            return NotFound("table", f"{doing}: {error.response['Error'].get('Message', '')}")
        return Unavailable(f"{doing} failed: {code}")
    return Unavailable(f"{doing} failed: {error}")


@functools.lru_cache(maxsize=8)
def _session(region: str | None) -> boto3.Session:
    # One per region and process: its loaded service models make each further client cheap.
    return boto3.Session(region_name=region)


class AdminStore:
    def __init__(self, target: Target, *, session: boto3.Session | None = None) -> None:
        self._session = session or _session(target.region)
        self._target = target
        self.region = self._session.region_name or "us-east-1"

    def _client(self, service: str) -> Any:
        return self._session.client(
            service,  # type: ignore[call-overload]
            region_name=self.region,
            endpoint_url=self._target.endpoint_url,
        )

    @cached_property
    def ddb(self) -> DynamoDBClient:
        client: DynamoDBClient = self._client("dynamodb")
        return client

    @cached_property
    def table(self) -> str:
        if self._target.table:
            return self._target.table
        try:
            stacks = self._client("cloudformation").describe_stacks(StackName=self._target.stack)
        except ClientError as error:
            # No such stack here (the local region, or a region without the data stack):
            # the table's name is fixed. Anything else (AccessDenied, throttling) is said.
            if "does not exist" not in error.response.get("Error", {}).get("Message", ""):
                raise _fail(error, "reading the stack's outputs") from None
            return resources.TABLE_NAME
        except BotoCoreError as error:
            raise _fail(error, "reading the stack's outputs") from None
        for output in stacks["Stacks"][0].get("Outputs", []):
            if output.get("OutputKey") == TABLE_OUTPUT:
                return str(output["OutputValue"])
        return resources.TABLE_NAME

    @cached_property
    def actor(self) -> str:
        """The operator's IAM identity, as the audit log names it."""
        try:
            return str(self._client("sts").get_caller_identity()["Arn"])
        except (ClientError, BotoCoreError) as error:
            raise _fail(error, "sts:GetCallerIdentity") from None

    def _audit(self, tenant: str, action: str, **detail: Any) -> None:
        record = audit.AuditRecord(tenant, self.actor, action, self.region, audit.now_ms(), detail)
        try:
            self.ddb.put_item(TableName=self.table, Item=audit.to_item(record))
        except (ClientError, BotoCoreError) as error:
            raise _fail(error, "writing the audit record") from None

    def _query(self, **arguments: Any) -> Iterator[dict[str, Any]]:
        start: dict[str, Any] | None = None
        while True:
            page_args = {"TableName": self.table, **arguments}
            if start is not None:
                page_args["ExclusiveStartKey"] = start
            try:
                page = self.ddb.query(**page_args)
            except (ClientError, BotoCoreError) as error:
                raise _fail(error, "dynamodb:Query") from None
            yield from page.get("Items", [])
            start = page.get("LastEvaluatedKey")
            if not start:
                return

    def _index(self, partition: str) -> Iterator[dict[str, Any]]:
        return self._query(
            IndexName=resources.TENANT_INDEX_NAME,
            KeyConditionExpression="#p = :p",
            ExpressionAttributeNames={"#p": resources.TENANT_INDEX_PARTITION_KEY},
            ExpressionAttributeValues={":p": {"S": partition}},
        )

    # -- tenants -------------------------------------------------------------------------

    def create_tenant(
        self, tenant: str, *, display_name: str = "", quotas: tenants.Quotas
    ) -> tenants.Tenant:
        _check_tenant(tenant)
        now = tenants.now_ms()
        record = tenants.Tenant(tenant, display_name, False, now, now, quotas.checked())
        try:
            self.ddb.put_item(
                TableName=self.table,
                Item=tenants.to_item(record),
                ConditionExpression="attribute_not_exists(pk)",
            )
        except ClientError as error:
            if error.response["Error"]["Code"] == _CONDITION_FAILED:
                raise FailedPrecondition(
                    f"tenant/{tenant}",
                    f"tenant {tenant!r} already exists; `reportgrid admin tenant update "
                    f"{tenant}` changes it",
                    type_="ALREADY_EXISTS",
                ) from None
            raise _fail(error, "dynamodb:PutItem") from None
        except BotoCoreError as error:
            raise _fail(error, "dynamodb:PutItem") from None
        self._audit(tenant, "tenant.create", display_name=display_name, quotas=_quota_json(quotas))
        return record

    def get_tenant(self, tenant: str) -> tenants.Tenant:
        _check_tenant(tenant)
        try:
            found = self.ddb.get_item(
                TableName=self.table, Key=tenants.item_key(tenant), ConsistentRead=True
            ).get("Item")
        except (ClientError, BotoCoreError) as error:
            raise _fail(error, "dynamodb:GetItem") from None
        if found is None:
            raise NotFound("tenant", tenant)
        return tenants.from_item(found)

    def list_tenants(self) -> list[tenants.Tenant]:
        return [tenants.from_item(i) for i in self._index(resources.ADMIN_TENANTS_PARTITION)]

    def update_tenant(
        self,
        tenant: str,
        *,
        display_name: str | None = None,
        quota_changes: dict[str, Any] | None = None,
        disabled: bool | None = None,
        webhook_url: str | None = None,
    ) -> tenants.Tenant:
        """Change what is given; `webhook_url` "" clears the tenant's default webhook."""
        if webhook_url:
            self._check_webhook_url(webhook_url)
        old = self.get_tenant(tenant)
        quotas = replace(old.quotas, **(quota_changes or {})).checked()
        webhooks = old.webhooks
        if webhook_url is not None:
            webhooks = replace(webhooks, url=webhook_url)
        new = replace(
            old,
            display_name=old.display_name if display_name is None else display_name,
            disabled=old.disabled if disabled is None else disabled,
            quotas=quotas,
            webhooks=webhooks,
            updated_ms=max(tenants.now_ms(), old.updated_ms + 1),
        )
        self._put_over(old, new)
        changes: dict[str, Any] = {}
        if new.display_name != old.display_name:
            changes["display_name"] = new.display_name
        if new.disabled != old.disabled:
            changes["disabled"] = new.disabled
        changed_quotas = {
            k: v for k, v in _quota_json(quotas).items() if getattr(old.quotas, k) != v
        }
        if changed_quotas:
            changes["quotas"] = changed_quotas
        if new.webhooks.url != old.webhooks.url:
            changes["webhook_url"] = new.webhooks.url or None  # None: cleared
        action = "tenant.update"
        if disabled is not None and new.disabled != old.disabled:
            action = "tenant.disable" if new.disabled else "tenant.enable"
        self._audit(tenant, action, **changes)
        return new

    def _check_webhook_url(self, url: str) -> None:
        problem = webhook_policy.url_problem(url, allow_loopback=self._target.local)
        if problem is not None:
            raise InvalidArgument.field("webhook_url", f"the URL {problem}")

    def _put_over(self, old: tenants.Tenant, new: tenants.Tenant) -> None:
        """Write `new` only over the version `old` read: a concurrent update is not
        silently undone."""
        tenant = old.tenant
        try:
            self.ddb.put_item(
                TableName=self.table,
                Item=tenants.to_item(new),
                ConditionExpression="updated_ms = :old",
                ExpressionAttributeValues={":old": {"N": str(old.updated_ms)}},
            )
        except ClientError as error:
            if error.response["Error"]["Code"] == _CONDITION_FAILED:
                raise FailedPrecondition(
                    f"tenant/{tenant}",
                    f"tenant {tenant!r} changed while this update ran; run it again",
                    type_="CONCURRENT_UPDATE",
                ) from None
            raise _fail(error, "dynamodb:PutItem") from None
        except BotoCoreError as error:
            raise _fail(error, "dynamodb:PutItem") from None

    # -- webhook signing secrets ---------------------------------------------------------

    def _webhook_root(self) -> bytes:
        """The deployment's root secret (Secrets Manager, resources.WEBHOOK_SECRET_NAME),
        read with the operator's credentials."""
        doing = f"reading the secret {resources.WEBHOOK_SECRET_NAME}"
        try:
            value = self._client("secretsmanager").get_secret_value(
                SecretId=resources.WEBHOOK_SECRET_NAME
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
                raise NotFound(
                    "secret", f"{resources.WEBHOOK_SECRET_NAME} in {self.region}"
                ) from None
            raise _fail(error, doing) from None
        except BotoCoreError as error:
            raise _fail(error, doing) from None
        return str(value["SecretString"]).encode()

    def webhook_secret(
        self, tenant: str, *, rotate: bool = False, overlap_seconds: int = 0
    ) -> SigningSecret:
        """The tenant's current signing secret; with `rotate`, a new version first, the
        old one still signing (beside the new) for `overlap_seconds`."""
        if overlap_seconds < 0:
            raise InvalidArgument.field("overlap", "must not be negative")
        root = self._webhook_root()  # before any change: no rotation without the root
        current = self.get_tenant(tenant)
        if rotate:
            old = current.webhooks
            now = tenants.now_ms()
            webhooks = replace(
                old,
                secret_version=old.secret_version + 1,
                previous_version=old.secret_version if overlap_seconds else 0,
                previous_until_ms=now + overlap_seconds * 1000 if overlap_seconds else 0,
            )
            new = replace(current, webhooks=webhooks, updated_ms=max(now, current.updated_ms + 1))
            self._put_over(current, new)
            self._audit(
                tenant,
                "tenant.webhook_secret.rotate",
                version=webhooks.secret_version,
                previous_version=webhooks.previous_version,
                previous_until_ms=webhooks.previous_until_ms,
            )
            current = new
        else:
            # Handing a secret out is recorded too (its version, never the secret).
            self._audit(
                tenant, "tenant.webhook_secret.show", version=current.webhooks.secret_version
            )
        webhooks = current.webhooks
        active = webhooks.signing_versions(tenants.now_ms())
        return SigningSecret(
            tenant=tenant,
            version=webhooks.secret_version,
            secret=webhook_policy.signing_secret(root, tenant, webhooks.secret_version),
            previous_version=active[1] if len(active) > 1 else 0,
            previous_until_ms=webhooks.previous_until_ms if len(active) > 1 else 0,
        )

    # -- keys ----------------------------------------------------------------------------

    def create_key(self, tenant: str, *, name: str = "", expires_ms: int | None) -> NewKey:
        owner = self.get_tenant(tenant)
        if owner.disabled:
            raise FailedPrecondition(
                f"tenant/{tenant}",
                f"tenant {tenant!r} is disabled; `reportgrid admin tenant update {tenant} "
                "--enable` first",
            )
        now = tenants.now_ms()
        _check_future(expires_ms, now, "expires")
        secret = apikeys.generate_key()
        item = apikeys.key_item(secret, tenant, name=name, expires_ms=expires_ms, now_ms=now)
        try:
            self.ddb.put_item(
                TableName=self.table, Item=item, ConditionExpression="attribute_not_exists(pk)"
            )
        except (ClientError, BotoCoreError) as error:
            raise _fail(error, "dynamodb:PutItem") from None
        record = apikeys.record_from_item(item)
        self._audit(tenant, "key.create", prefix=record.prefix, name=name, expires_ms=expires_ms)
        return NewKey(secret, record)

    def _key_items(self, tenant: str) -> list[dict[str, Any]]:
        self.get_tenant(tenant)  # NotFound for an unknown tenant, not an empty list
        return list(self._index(apikeys.keys_partition(tenant)))

    def list_keys(self, tenant: str) -> list[apikeys.ApiKeyRecord]:
        return [apikeys.record_from_item(i) for i in self._key_items(tenant)]

    def _find_key(self, tenant: str, prefix: str) -> dict[str, Any]:
        if not apikeys.valid_prefix(prefix):
            raise InvalidArgument.field(
                "prefix", f"{prefix!r} is not a key prefix (`rg_` and 8 characters)"
            )
        for item in self._key_items(tenant):
            if item.get("prefix", {}).get("S") == prefix:
                return item
        raise NotFound("API key", f"{prefix} of tenant {tenant}")

    def revoke_key(self, tenant: str, prefix: str) -> apikeys.ApiKeyRecord:
        item = self._find_key(tenant, prefix)
        if apikeys.record_from_item(item).revoked:
            raise FailedPrecondition(f"key/{prefix}", f"key {prefix} is already revoked")
        try:
            updated = self.ddb.update_item(
                TableName=self.table,
                Key={resources.PARTITION_KEY: item[resources.PARTITION_KEY]},
                UpdateExpression="SET revoked = :t",
                ConditionExpression="attribute_exists(pk) AND revoked = :f",
                ExpressionAttributeValues={":t": {"BOOL": True}, ":f": {"BOOL": False}},
                ReturnValues="ALL_NEW",
            )
        except ClientError as error:
            if error.response["Error"]["Code"] == _CONDITION_FAILED:
                raise FailedPrecondition(
                    f"key/{prefix}", f"key {prefix} is already revoked"
                ) from None
            raise _fail(error, "dynamodb:UpdateItem") from None
        except BotoCoreError as error:
            raise _fail(error, "dynamodb:UpdateItem") from None
        self._audit(tenant, "key.revoke", prefix=prefix)
        return apikeys.record_from_item(updated["Attributes"])

    def rotate_key(
        self, tenant: str, prefix: str, *, old_valid_until_ms: int, expires_ms: int | None
    ) -> tuple[NewKey, apikeys.ApiKeyRecord]:
        """A new key for the tenant; the old one keeps working until `old_valid_until_ms`
        (never later than it would have anyway)."""
        item = self._find_key(tenant, prefix)
        old = apikeys.record_from_item(item)
        now = tenants.now_ms()
        if old.revoked or old.expired(now):
            raise FailedPrecondition(
                f"key/{prefix}",
                f"key {prefix} is {'revoked' if old.revoked else 'expired'}; "
                f"`reportgrid admin key create {tenant}` makes a new one",
            )
        _check_future(old_valid_until_ms, now, "old_valid_until", allow_now=True)
        until = old_valid_until_ms
        if old.expires_ms is not None:
            until = min(until, old.expires_ms)
        new = self.create_key(tenant, name=old.name, expires_ms=expires_ms)
        try:
            updated = self.ddb.update_item(
                TableName=self.table,
                Key={resources.PARTITION_KEY: item[resources.PARTITION_KEY]},
                UpdateExpression="SET expires_ms = :until",
                ConditionExpression="attribute_exists(pk)",
                ExpressionAttributeValues={":until": {"N": str(until)}},
                ReturnValues="ALL_NEW",
            )
        except (ClientError, BotoCoreError) as error:
            raise _fail(error, "dynamodb:UpdateItem") from None
        self._audit(
            tenant, "key.rotate", prefix=prefix, new_prefix=new.record.prefix, old_until_ms=until
        )
        return new, apikeys.record_from_item(updated["Attributes"])

    # -- audit ---------------------------------------------------------------------------

    def audit(self, tenant: str, since_ms: int) -> list[audit.AuditRecord]:
        _check_tenant(tenant)  # a deleted tenant's records are still readable
        found = self._query(**audit.query_arguments(tenant, since_ms))
        return [audit.from_item(i) for i in found]


def _check_tenant(tenant: str) -> None:
    try:
        validate_tenant(tenant)
    except ValueError as error:
        raise InvalidArgument.field("tenant", str(error)) from None


def _check_future(when_ms: int | None, now_ms: int, field: str, *, allow_now: bool = False) -> None:
    if when_ms is None:
        return
    if when_ms < now_ms or (when_ms == now_ms and not allow_now):
        raise InvalidArgument(
            FieldViolation(field, "is in the past; give a duration (30d, 12h) or a later time")
        )


def _quota_json(quotas: tenants.Quotas) -> dict[str, Any]:
    return {name: getattr(quotas, name) for name in tenants.QUOTA_FIELDS}
