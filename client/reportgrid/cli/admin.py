"""`reportgrid admin`: tenants, API keys, quotas and the audit log, for operators.

These commands talk to the table directly with the operator's own AWS credentials (the
service's roles are not involved), in the region given by --region or the AWS config,
or to the local region with --endpoint-url. The table is found from the data stack's
outputs unless --table names it. Every change is written to the audit log with the
operator's IAM identity. docs/RUNBOOK.md shows them in use.

This module imports without boto3 or the server's item schema: they come with the `admin`
extra and are loaded only when a command runs, so `reportgrid --help` works without them.
"""

# ruff: noqa: PLR0917 -- typer maps each CLI option to one parameter of the command

from __future__ import annotations

import json
import re
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, Final, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from reportgrid import errors
from reportgrid.cli import failures
from reportgrid.cli.exit_codes import Exit

if TYPE_CHECKING:
    from reportgrid.apikeys import ApiKeyRecord
    from reportgrid.cli.admin_store import AdminStore, SigningSecret
    from reportgrid.tenants import Tenant

ADMIN_INSTALL_HINT: Final = "pip install 'reportgrid[admin]'"
# What the `admin` extra adds (boto3 and reportgrid-core's item schema); any other missing
# module is a defect.
ADMIN_EXTRA_MODULES: Final = frozenset(
    {"boto3", "botocore", "reportgrid.resources", "reportgrid.ids", "reportgrid.apikeys"}
    | {"reportgrid.tenants", "reportgrid.audit", "reportgrid.webhook_policy"}
)
DEFAULT_KEY_LIFETIME: Final = "365d"
# resources.WEBHOOK_ROTATION_OVERLAP_SECONDS, spelt here because this module imports
# without the server's modules (tests/unit/cli/test_admin.py keeps the two equal).
DEFAULT_WEBHOOK_OVERLAP: Final = "24h"

app = typer.Typer(
    name="admin",
    help="Operate a deployment: tenants, API keys, quotas, audit log (AWS credentials).",
    no_args_is_help=True,
)
tenant_app = typer.Typer(name="tenant", help="Create, show, change and disable tenants.")
key_app = typer.Typer(name="key", help="Create, list, revoke and rotate a tenant's API keys.")
app.add_typer(tenant_app)
app.add_typer(key_app)

out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 250)
err = failures.err

P = ParamSpec("P")
R = TypeVar("R")

_HINTS: dict[type[errors.ReportgridError], tuple[Exit, str, str]] = {
    errors.InvalidArgument: (Exit.USAGE, "INVALID_ARGUMENT", "fix the named option"),
    errors.NotFound: (
        Exit.NOT_FOUND,
        "NOT_FOUND",
        "`reportgrid admin tenant list` and `reportgrid admin key list TENANT` show what exists",
    ),
    errors.FailedPrecondition: (Exit.PRECONDITION, "FAILED_PRECONDITION", "nothing was changed"),
    errors.Unauthenticated: (
        Exit.UNAUTHENTICATED,
        "UNAUTHENTICATED",
        "these commands use your own AWS credentials",
    ),
    errors.Unavailable: (
        Exit.UNAVAILABLE,
        "UNAVAILABLE",
        "check --region/--endpoint-url and --table, then retry",
    ),
}


def describe_admin_error(error: errors.ReportgridError) -> tuple[Exit, str]:
    """The exit code and the one line shown for an admin command's error."""
    for cls in type(error).__mro__:
        if cls in _HINTS:
            code, status, hint = _HINTS[cls]
            return code, f"error: {status}: {error.message} ({hint})"
    return Exit.INTERNAL, f"error: {error.message}"


admin_errors = failures.handled(describe_admin_error)


# -- times ----------------------------------------------------------------------------
_DURATION_RE: Final = re.compile(r"^(\d+)([smhdw])$")
_UNIT_SECONDS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 7 * 86_400}


def parse_seconds(text: str, option: str) -> int:
    """A duration: a whole number and a unit, s m h d or w ("30d")."""
    found = _DURATION_RE.fullmatch(text.strip())
    if found is None:
        raise errors.InvalidArgument.field(option, f"{text!r} is not a duration like 30d or 12h")
    return int(found.group(1)) * _UNIT_SECONDS[found.group(2)]


def parse_when(text: str, option: str, *, now_ms: int, ago: bool = False) -> int:
    """Epoch ms of a duration from now (or before now, with `ago`) or of an ISO 8601 time
    (UTC unless it says otherwise)."""
    if _DURATION_RE.fullmatch(text.strip()):
        seconds = parse_seconds(text, option)
        return now_ms - seconds * 1000 if ago else now_ms + seconds * 1000
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise errors.InvalidArgument.field(
            option, f"{text!r} is neither a duration (30d, 12h) nor an ISO 8601 time"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)


def _now_ms() -> int:
    return int(datetime.now(UTC).timestamp() * 1000)


def _iso(ms: int | None) -> str:
    if ms is None:
        return "never"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- where the commands go ------------------------------------------------------------


def _store(ctx: typer.Context) -> AdminStore:
    try:
        from reportgrid.cli.admin_store import AdminStore, Target  # noqa: PLC0415 -- see top
    except ModuleNotFoundError as missing:
        name = missing.name or ""
        if name not in ADMIN_EXTRA_MODULES and name.partition(".")[0] not in ADMIN_EXTRA_MODULES:
            raise
        err.print(
            f"reportgrid admin: needs the `admin` extra ({missing.name} is not installed): "
            f"{ADMIN_INSTALL_HINT}",
            markup=False,
        )
        raise typer.Exit(Exit.USAGE) from None
    store: AdminStore = AdminStore(Target(**ctx.obj))
    return store


@app.callback()
def admin(
    ctx: typer.Context,
    region: Annotated[
        str | None,
        typer.Option("--region", envvar="AWS_REGION", help="AWS region (default: AWS config)."),
    ] = None,
    endpoint_url: Annotated[
        str | None,
        typer.Option(
            "--endpoint-url", envvar="AWS_ENDPOINT_URL", help="AWS endpoint (the local region)."
        ),
    ] = None,
    table: Annotated[
        str | None, typer.Option("--table", help="The table (default: from the stack outputs).")
    ] = None,
    stack: Annotated[
        str, typer.Option("--stack", help="The stack whose `TableName` output names the table.")
    ] = "Reportgrid-Data",
) -> None:
    """Operate a deployment with your own AWS credentials."""
    ctx.obj = {"region": region, "endpoint_url": endpoint_url, "table": table, "stack": stack}


JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]
NameOpt = Annotated[str | None, typer.Option("--name", help="A display name.")]
RateOpt = Annotated[
    float | None, typer.Option("--submit-rate", help="SubmitReport calls a second, fleet-wide.")
]
RunningOpt = Annotated[
    int | None, typer.Option("--max-running", help="Reports RUNNING at once (the workers).")
]
InlineOpt = Annotated[
    int | None, typer.Option("--max-inline-bytes", help="Largest inline input, bytes.")
]
RetentionDefaultOpt = Annotated[
    str | None,
    typer.Option("--retention-default", help="Result retention when a submit sets no ttl (7d)."),
]
RetentionMaxOpt = Annotated[
    str | None, typer.Option("--retention-max", help="Longest ttl a submit may ask (90d).")
]


def _quota_changes(
    rate: float | None,
    running: int | None,
    inline: int | None,
    retention_default: str | None,
    retention_max: str | None,
) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    if rate is not None:
        changes["submit_per_second"] = rate
    if running is not None:
        changes["max_running"] = running
    if inline is not None:
        changes["max_inline_bytes"] = inline
    if retention_default is not None:
        changes["retention_default_seconds"] = parse_seconds(retention_default, "retention_default")
    if retention_max is not None:
        changes["retention_max_seconds"] = parse_seconds(retention_max, "retention_max")
    return changes


def _print_json(value: object) -> None:
    out.print(json.dumps(value, indent=2, sort_keys=True), markup=False)


def _show_tenant(tenant: Tenant, as_json: bool) -> None:
    if as_json:
        _print_json(tenant.to_json())
        return
    q = tenant.quotas
    out.print(f"{tenant.tenant}\t{'DISABLED' if tenant.disabled else 'enabled'}", markup=False)
    for label, value in (
        ("name", tenant.display_name),
        ("created", _iso(tenant.created_ms)),
        ("updated", _iso(tenant.updated_ms)),
        ("submit rate", f"{q.submit_per_second:g}/s (fleet-wide)"),
        ("max running", str(q.max_running)),
        ("max inline input", f"{q.max_inline_bytes} bytes"),
        ("retention", f"default {q.retention_default_seconds}s, max {q.retention_max_seconds}s"),
        ("webhook", tenant.webhooks.url or "none"),
        ("signing secret", f"version {tenant.webhooks.secret_version}"),
    ):
        out.print(f"  {label}: {value}", markup=False)


def _key_json(key: ApiKeyRecord) -> dict[str, Any]:
    return {
        "prefix": key.prefix,
        "tenant": key.tenant,
        "name": key.name,
        "revoked": key.revoked,
        "created": _iso(key.created_ms),
        "expires": _iso(key.expires_ms),
        "last_used": _iso(key.last_used_ms) if key.last_used_ms else None,
    }


# -- tenant ---------------------------------------------------------------------------


@tenant_app.command("create")
@admin_errors
def tenant_create(
    ctx: typer.Context,
    tenant: Annotated[str, typer.Argument(help="1-64 characters of [A-Za-z0-9_-].")],
    name: NameOpt = None,
    rate: RateOpt = None,
    running: RunningOpt = None,
    inline: InlineOpt = None,
    retention_default: RetentionDefaultOpt = None,
    retention_max: RetentionMaxOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a tenant with its quotas (defaults for those not given)."""
    from dataclasses import replace  # noqa: PLC0415

    from reportgrid.tenants import DEFAULT_QUOTAS  # noqa: PLC0415 -- the `admin` extra

    store = _store(ctx)
    changes = _quota_changes(rate, running, inline, retention_default, retention_max)
    created = store.create_tenant(
        tenant, display_name=name or "", quotas=replace(DEFAULT_QUOTAS, **changes)
    )
    _show_tenant(created, as_json)


@tenant_app.command("get")
@admin_errors
def tenant_get(ctx: typer.Context, tenant: str, as_json: JsonOpt = False) -> None:
    """Show a tenant and its quotas."""
    _show_tenant(_store(ctx).get_tenant(tenant), as_json)


@tenant_app.command("list")
@admin_errors
def tenant_list(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """List every tenant."""
    found = _store(ctx).list_tenants()
    if as_json:
        _print_json([t.to_json() for t in found])
        return
    table = Table("TENANT", "STATE", "SUBMIT/S", "RUNNING", "NAME", box=None, padding=(0, 2))
    for t in found:
        table.add_row(
            t.tenant,
            "DISABLED" if t.disabled else "enabled",
            f"{t.quotas.submit_per_second:g}",
            str(t.quotas.max_running),
            t.display_name,
        )
    out.print(table)


@tenant_app.command("update")
@admin_errors
def tenant_update(
    ctx: typer.Context,
    tenant: str,
    name: NameOpt = None,
    rate: RateOpt = None,
    running: RunningOpt = None,
    inline: InlineOpt = None,
    retention_default: RetentionDefaultOpt = None,
    retention_max: RetentionMaxOpt = None,
    enable: Annotated[bool, typer.Option("--enable", help="Enable a disabled tenant.")] = False,
    webhook_url: Annotated[
        str | None,
        typer.Option(
            "--webhook-url",
            help="Where the tenant's reports submitted without notify.url are announced "
            "(https; no private, loopback or metadata address).",
        ),
    ] = None,
    clear_webhook_url: Annotated[
        bool, typer.Option("--clear-webhook-url", help="Remove the default webhook.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Change a tenant's name, quotas or default webhook (the edges apply quotas within
    30 s, the webhook function a webhook within a minute)."""
    changes = _quota_changes(rate, running, inline, retention_default, retention_max)
    if webhook_url is not None and clear_webhook_url:
        raise errors.InvalidArgument.field(
            "webhook_url", "give --webhook-url or --clear-webhook-url, not both"
        )
    if webhook_url == "":
        raise errors.InvalidArgument.field(
            "webhook_url", "is empty: --clear-webhook-url removes the default webhook"
        )
    url = "" if clear_webhook_url else webhook_url
    if not changes and name is None and not enable and url is None:
        raise errors.InvalidArgument.field("", "nothing to change: give at least one option")
    updated = _store(ctx).update_tenant(
        tenant,
        display_name=name,
        quota_changes=changes,
        disabled=False if enable else None,
        webhook_url=url,
    )
    _show_tenant(updated, as_json)


def _print_signing_secret(found: SigningSecret, as_json: bool) -> None:
    previous = (
        {"version": found.previous_version, "signs_until": _iso(found.previous_until_ms)}
        if found.previous_version
        else None
    )
    if as_json:
        _print_json(
            {
                "tenant": found.tenant,
                "version": found.version,
                "secret": found.secret,
                "previous": previous,
            }
        )
        return
    out.print(found.secret, markup=False)
    note = f"signing secret version {found.version} of {found.tenant}"
    if previous is not None:
        note += f"; version {found.previous_version} also signs until {previous['signs_until']}"
    err.print(note, markup=False)


@tenant_app.command("webhook-secret")
@admin_errors
def tenant_webhook_secret(
    ctx: typer.Context,
    tenant: str,
    rotate: Annotated[
        bool,
        typer.Option(
            "--rotate",
            help="Make a new version first. Deliveries carry a signature by each valid "
            "version: the new one within a minute, the old one until --overlap ends.",
        ),
    ] = False,
    overlap: Annotated[
        str,
        typer.Option(
            "--overlap", help="With --rotate: how long the old version still signs (0s: not)."
        ),
    ] = DEFAULT_WEBHOOK_OVERLAP,
    as_json: JsonOpt = False,
) -> None:
    """Print the tenant's webhook signing secret (stdout), for its receivers to verify
    deliveries with (reportgrid.webhooks.verify). Derived from the deployment's root
    secret, never stored; reading it needs secretsmanager:GetSecretValue on that root."""
    overlap_seconds = parse_seconds(overlap, "overlap") if rotate else 0
    found = _store(ctx).webhook_secret(tenant, rotate=rotate, overlap_seconds=overlap_seconds)
    _print_signing_secret(found, as_json)


@tenant_app.command("disable")
@admin_errors
def tenant_disable(ctx: typer.Context, tenant: str) -> None:
    """Disable a tenant: its keys are refused (PERMISSION_DENIED) within 30 s."""
    store = _store(ctx)
    if store.get_tenant(tenant).disabled:
        raise errors.FailedPrecondition(
            f"tenant/{tenant}", f"tenant {tenant!r} is already disabled"
        )
    store.update_tenant(tenant, disabled=True)
    err.print(f"disabled {tenant}; its API keys stop working within 30 s", markup=False)


# -- key ------------------------------------------------------------------------------

ExpiresOpt = Annotated[
    str,
    typer.Option("--expires", help="A duration (90d), an ISO 8601 time, or `never`."),
]


def _expiry(text: str, now_ms: int) -> int | None:
    return None if text == "never" else parse_when(text, "expires", now_ms=now_ms)


def _print_new_key(secret: str, record: ApiKeyRecord, as_json: bool) -> None:
    if as_json:
        _print_json({**_key_json(record), "api_key": secret})
        return
    out.print(secret, markup=False)
    err.print(
        f"key {record.prefix} for {record.tenant}, expires {_iso(record.expires_ms)}. "
        "This is the only time the key is shown: store it now.",
        markup=False,
    )


@key_app.command("create")
@admin_errors
def key_create(
    ctx: typer.Context,
    tenant: str,
    name: Annotated[str, typer.Option("--name", help="What the key is for.")] = "",
    expires: ExpiresOpt = DEFAULT_KEY_LIFETIME,
    as_json: JsonOpt = False,
) -> None:
    """Create an API key; the secret is printed once (stdout), never stored."""
    store = _store(ctx)
    new = store.create_key(tenant, name=name, expires_ms=_expiry(expires, _now_ms()))
    _print_new_key(new.secret, new.record, as_json)


@key_app.command("list")
@admin_errors
def key_list(ctx: typer.Context, tenant: str, as_json: JsonOpt = False) -> None:
    """A tenant's keys: prefix, created, expires, last used (never the secret)."""
    found = _store(ctx).list_keys(tenant)
    if as_json:
        _print_json([_key_json(k) for k in found])
        return
    now = _now_ms()
    table = Table("PREFIX", "STATE", "CREATED", "EXPIRES", "LAST USED", "NAME", box=None)
    for k in found:
        state = "revoked" if k.revoked else "expired" if k.expired(now) else "active"
        table.add_row(
            k.prefix,
            state,
            _iso(k.created_ms),
            _iso(k.expires_ms),
            _iso(k.last_used_ms) if k.last_used_ms else "-",
            k.name,
        )
    out.print(table)


@key_app.command("revoke")
@admin_errors
def key_revoke(
    ctx: typer.Context,
    tenant: str,
    prefix: Annotated[str, typer.Argument(help="The key's prefix, as `key list` shows it.")],
) -> None:
    """Revoke a key: refused (UNAUTHENTICATED) by every edge within 30 s."""
    _store(ctx).revoke_key(tenant, prefix)
    err.print(f"revoked {prefix}; it stops working within 30 s", markup=False)


@key_app.command("rotate")
@admin_errors
def key_rotate(
    ctx: typer.Context,
    tenant: str,
    prefix: Annotated[str, typer.Argument(help="The key to replace.")],
    old_valid_for: Annotated[
        str,
        typer.Option(
            "--old-valid-for", help="How long the old key keeps working (a duration or a time)."
        ),
    ] = "1d",
    expires: ExpiresOpt = DEFAULT_KEY_LIFETIME,
    as_json: JsonOpt = False,
) -> None:
    """A new key for the tenant; the old one keeps working until --old-valid-for ends."""
    now = _now_ms()
    until = parse_when(old_valid_for, "old_valid_for", now_ms=now)
    new, old = _store(ctx).rotate_key(
        tenant, prefix, old_valid_until_ms=until, expires_ms=_expiry(expires, now)
    )
    _print_new_key(new.secret, new.record, as_json)
    err.print(f"the old key {old.prefix} works until {_iso(old.expires_ms)}", markup=False)


# -- audit ----------------------------------------------------------------------------


@app.command("audit")
@admin_errors
def audit_(
    ctx: typer.Context,
    tenant: Annotated[str, typer.Option("--tenant", help="Whose records.")],
    since: Annotated[str, typer.Option("--since", help="A duration back (1d) or a time.")] = "1d",
    as_json: JsonOpt = False,
) -> None:
    """The audit log of a tenant, newest first: admin actions and Delete/Cancel calls."""
    since_ms = parse_when(since, "since", now_ms=_now_ms(), ago=True)
    found = _store(ctx).audit(tenant, since_ms)
    if as_json:
        _print_json([r.to_json() for r in found])
        return
    table = Table("WHEN", "ACTION", "ACTOR", "REGION", "DETAIL", box=None, padding=(0, 2))
    for r in found:
        detail = json.dumps(r.detail, sort_keys=True, separators=(",", ":"))
        table.add_row(_iso(r.at_ms), r.action, r.actor, r.region, detail)
    out.print(table)
