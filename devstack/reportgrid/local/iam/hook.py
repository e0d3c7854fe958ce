"""The hook: botocore event handlers that judge every call before it is sent.

Installed by appending them to botocore.handlers.BUILTIN_HANDLERS, which every botocore
Session registers when it is created (Session._register_builtin_handlers); aiobotocore's
AioSession is a botocore Session and registers the same list on its async emitter, which
awaits a handler's result only if it is awaitable. So boto3 clients and the edge's
aioboto3 clients alike get, per call:

- before-parameter-build (last): the call's parameters, as the caller gave them, are kept
  in the request context (before-call sees only the serialized request);
- before-call (first): the call is judged; a denial is returned as the call's response
  (http response, parsed error), which botocore's client turns into the same exception
  AWS's answer would (ClientError with AccessDenied/AccessDeniedException, or the
  service's modeled class) without sending anything;
- after-call: AssumeRole's credentials become a session of the assumed role (with its
  session tags), and shard iterators are remembered for GetRecords.

Who calls is told by the request's access key: the keys of sessions this process assumed
are those roles; every other key is the component's own role. Sessions (and clients)
created before `install` are not judged; fork children inherit the hook, processes started
afresh (spawn, forkserver) do not.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final

import boto3
from botocore import handlers

from reportgrid.local.bootstrap import LOCAL_ACCOUNT
from reportgrid.local.iam import actions, denials
from reportgrid.local.iam.actions import Call
from reportgrid.local.iam.denials import AccessDenied
from reportgrid.local.iam.patterns import ContextValue, Unresolved
from reportgrid.local.iam.policy import Principal, Request, Statement, authorize
from reportgrid.local.iam.template import AuthorizationModel, Role

log = logging.getLogger("reportgrid.local.iam")

_PARAMS: Final = "reportgrid_iam_params"
_KEY: Final = "reportgrid_iam_access_key"
# botocore service name -> IAM prefix, where they differ.
_IAM_PREFIX: Final = {"monitoring": "cloudwatch"}
NO_MAPPING: Final = (
    "because the local IAM evaluator has no mapping for this operation "
    "(fail-closed: add it to reportgrid/local/iam/actions.py)"
)


@dataclass(frozen=True, slots=True)
class Identity:
    principal: Principal
    role: Role | None  # None: a role the template does not have (nothing is allowed)

    @property
    def statements(self) -> tuple[Statement, ...]:
        return self.role.statements if self.role else ()


class Enforcer:
    """Judges calls for one component: its role, and the sessions it assumes."""

    def __init__(
        self,
        model: AuthorizationModel,
        role: Role,
        *,
        account: str = LOCAL_ACCOUNT,
        session_name: str = "reportgrid-local",
        secure_transport: bool = True,
    ) -> None:
        self.model = model
        self.account = account
        # The local endpoint is plain HTTP only because the moto server speaks it; the
        # deployed clients use AWS's HTTPS endpoints, which the aws:SecureTransport
        # denies of the bucket and queue policies check.
        self.secure_transport = secure_transport
        self.default = Identity(Principal(role.arn, session_name, account, role.tags), role)
        self._sessions: dict[str, Identity] = {}
        self._iterators = actions.StreamIterators()
        self._lock = threading.Lock()
        self.denied: deque[AccessDenied] = deque(maxlen=256)
        self.allowed = 0

    def bind(self, access_key: str, role: Role, session_name: str) -> None:
        """Calls signed with `access_key` are `role`'s: one process can host several
        components if each signs with keys of its own (the moto server takes any key),
        e.g. the local Lambda event sources, which in AWS read as each function's role."""
        principal = Principal(role.arn, session_name, self.account, role.tags)
        with self._lock:
            self._sessions[access_key] = Identity(principal, role)

    def identity_for(self, access_key: str | None) -> Identity:
        with self._lock:
            return self._sessions.get(access_key or "", self.default)

    def judge(
        self, call: Call, access_key: str | None = None, *, head: bool = False
    ) -> AccessDenied | None:
        """None when every permission the call needs is granted, else AWS's denial."""
        identity = self.identity_for(access_key)
        principal = identity.principal
        found = actions.needs(call, self._iterators)

        def deny(action: str, resource: str, because: str) -> AccessDenied:
            text = denials.message(call.service, principal.session_arn, action, resource, because)
            denied = AccessDenied(call.service, call.operation, text, head=head)
            log.warning("iam: denied %s:%s: %s", call.service, call.operation, text)
            self.denied.append(denied)
            return denied

        if found is None:
            return deny(f"{call.service}:{call.operation}", "*", NO_MAPPING)
        found = found + actions.implicit_kms(call, found, self.model.key_of)
        if identity.role is not None and identity.role.unjudged:
            because = f"because {identity.role.unjudged} (fail-closed)"
            return deny(found[0].action if found else call.operation, "*", because)
        base = self._context(principal, call)
        for need in found:
            if isinstance(need.resource, Unresolved):
                because = (
                    f"because the local IAM evaluator cannot tell the resource: "
                    f"{need.resource.reason} (fail-closed)"
                )
                return deny(need.action, "<unresolved>", because)
            request = Request(need.action, need.resource, {**base, **need.context})
            policy = self.model.resource_policy(need.resource, need.action)
            verdict = authorize(principal, identity.statements, request, policy)
            if verdict.denial is not None:
                return deny(need.action, need.resource, verdict.denial.value)
        with self._lock:
            self.allowed += 1
        return None

    def _context(self, principal: Principal, call: Call) -> dict[str, ContextValue]:
        return {
            **principal.context(),
            "aws:securetransport": self.secure_transport,
            "aws:requestedregion": call.region,
        }

    def observe(self, call: Call, parsed: Mapping[str, Any]) -> None:
        """After a successful call: new sessions, shard iterators."""
        if (call.service, call.operation) == ("sts", "AssumeRole"):
            self._assumed(call, parsed)
        elif (call.service, call.operation) == ("kinesis", "GetShardIterator"):
            found = actions.needs(call, self._iterators) or []
            if found:
                self._iterators.remember(parsed.get("ShardIterator"), found[0].resource)
        elif (call.service, call.operation) == ("kinesis", "GetRecords"):
            stream = call.params.get("StreamARN") or self._iterators.stream_of(
                call.params.get("ShardIterator")
            )
            self._iterators.remember(parsed.get("NextShardIterator"), stream)

    def _assumed(self, call: Call, parsed: Mapping[str, Any]) -> None:
        key = (parsed.get("Credentials") or {}).get("AccessKeyId")
        role_arn = str(call.params.get("RoleArn", ""))
        if not isinstance(key, str):
            return
        role = self.model.roles.get(role_arn)
        if role is None:
            log.warning(
                "iam: %s is not a role of the template; its session may do nothing", role_arn
            )
        tags = dict(role.tags) if role else {}
        tags |= {str(t["Key"]): str(t["Value"]) for t in call.params.get("Tags") or []}
        session = str(call.params.get("RoleSessionName", "session"))
        identity = Identity(Principal(role_arn, session, self.account, tags), role)
        with self._lock:
            self._sessions[key] = identity


_active: Enforcer | None = None
_install_lock = threading.Lock()


def _call_of(model: Any, context: Mapping[str, Any], account: str) -> Call:
    service = str(model.service_model.service_name)
    return Call(
        service=_IAM_PREFIX.get(service, service),
        operation=str(model.name),
        params=context.get(_PARAMS, {}),
        region=str(context.get("client_region") or "us-east-1"),
        account=account,
    )


def _access_key(request_signer: Any) -> str | None:
    credentials = getattr(request_signer, "_credentials", None)
    if credentials is None:
        return None
    # The instance's own attribute: RefreshableCredentials' `access_key` property would
    # refresh (synchronously, even under aiobotocore).
    fields = getattr(credentials, "__dict__", {})
    key = fields.get("access_key") or fields.get("_access_key")
    return key if isinstance(key, str) else None


def _remember_params(params: Mapping[str, Any], context: Any = None, **_: Any) -> None:
    if _active is not None and isinstance(context, dict):
        context[_PARAMS] = dict(params)


def _before_call(
    model: Any, params: Mapping[str, Any], request_signer: Any = None, context: Any = None, **_: Any
) -> Any:
    enforcer = _active
    if enforcer is None or not isinstance(context, dict):
        return None
    key = _access_key(request_signer)
    context[_KEY] = key
    head = str(getattr(model, "http", {}).get("method", "")).upper() == "HEAD"
    denied = enforcer.judge(_call_of(model, context, enforcer.account), key, head=head)
    return None if denied is None else denied.response(str(params.get("url", "")))


def _after_call(http_response: Any, parsed: Any, model: Any, context: Any = None, **_: Any) -> None:
    enforcer = _active
    if enforcer is None or not isinstance(context, dict) or http_response.status_code >= 300:
        return
    if isinstance(parsed, Mapping):
        enforcer.observe(_call_of(model, context, enforcer.account), parsed)


_SPECS: Final = (
    ("before-parameter-build", _remember_params, handlers.REGISTER_LAST),
    ("before-call", _before_call, handlers.REGISTER_FIRST),
    ("after-call", _after_call, handlers.REGISTER_LAST),
)


def install(enforcer: Enforcer) -> None:
    """Judge every call of every botocore session created from now on (and of boto3's
    default session, if it exists)."""
    global _active  # noqa: PLW0603 -- one enforcer per process
    with _install_lock:
        if _active is not None:
            raise RuntimeError("an IAM enforcer is already installed in this process")
        _active = enforcer
        handlers.BUILTIN_HANDLERS.extend(s for s in _SPECS if s not in handlers.BUILTIN_HANDLERS)
        default = boto3.DEFAULT_SESSION
        if default is not None:
            events = default.events
            for event, handler, order in _SPECS:
                register = (
                    events.register_first
                    if order is handlers.REGISTER_FIRST
                    else events.register_last
                )
                register(event, handler, unique_id=f"reportgrid-iam-{event}")


def uninstall() -> None:
    """Stop judging (handlers already registered on sessions become no-ops)."""
    global _active  # noqa: PLW0603
    with _install_lock:
        _active = None
        for spec in _SPECS:
            while spec in handlers.BUILTIN_HANDLERS:
                handlers.BUILTIN_HANDLERS.remove(spec)


@contextmanager
def enforced(enforcer: Enforcer) -> Iterator[Enforcer]:
    """`with enforced(enforcer):` calls made in this process are judged (in-process use,
    e.g. a Lambda handler driven by the local event source)."""
    install(enforcer)
    try:
        yield enforcer
    finally:
        uninstall()
