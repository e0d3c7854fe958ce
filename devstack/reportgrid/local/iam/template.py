"""The policies a synthesized deployment gives each role and resource of one region, read
with the template's values made local (resolve.py).

Read: each role's identity-based policies (AWS::IAM::Policy and ::ManagedPolicy attached
to it, its inline Policies, its ManagedPolicyArns: customer ones from the template, AWS
managed ones from the copy moto ships), its tags and trust policy; bucket, queue, topic
and key policies; which customer-managed key encrypts a bucket, stream or queue; and which
role each Lambda function and each ECS container runs as.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from reportgrid.local.iam.patterns import Unresolved, Value
from reportgrid.local.iam.policy import ResourcePolicy, Statement, statements_of
from reportgrid.local.iam.resolve import (
    Localization,
    Stack,
    StackResolver,
    TemplateError,
    format_parts,
    load_stacks,
    queue_arn_from_url,
)

log = logging.getLogger("reportgrid.local.iam")

# AWS-managed keys need no key-policy grant from the caller (the service uses them).
_MANAGED_KEY_ALIASES: Final = frozenset({"alias/aws/s3", "alias/aws/kinesis", "alias/aws/sqs"})
_TRUST_ACTIONS: Final = frozenset({"sts:assumerole", "sts:tagsession", "sts:setsourceidentity"})


@functools.cache
def _aws_managed_policies() -> dict[str, Any]:
    # Read from moto's file rather than imported: importing moto.iam loads ~600 modules
    # (seconds) into every enforced process. The file is `aws_managed_policies_data =
    # """<json>"""`.
    spec = importlib.util.find_spec("moto")
    if spec is None or not spec.submodule_search_locations:
        return {}
    source = Path(spec.submodule_search_locations[0], "iam", "aws_managed_policies.py")
    text = source.read_text()
    loaded: dict[str, Any] = json.loads(text[text.index('"""') + 3 : text.rindex('"""')])
    return loaded


def aws_managed_policy(arn: str) -> Any:
    """An AWS managed policy's document ("arn:aws:iam::aws:policy/<path><name>"), from the
    snapshot moto ships; None when unknown."""
    prefix = "arn:aws:iam::aws:policy"
    if not arn.startswith(prefix):
        return None
    path, _, name = arn.removeprefix(prefix).rpartition("/")
    found = _aws_managed_policies().get(name)
    if found is None or found.get("Path", "/") != f"{path}/":
        return None
    return found["Document"]


@dataclass(frozen=True, slots=True)
class Role:
    """A role as the local region runs it: its identity-based statements and trust."""

    logical_id: str
    stack: str
    arn: str
    statements: tuple[Statement, ...]
    trust: tuple[Statement, ...]
    tags: Mapping[str, str]
    # Why the role's permissions cannot be judged here (then every call is denied).
    unjudged: str = ""


@dataclass
class AuthorizationModel:
    """One region's roles, resource policies, encryption keys and components."""

    roles: dict[str, Role] = field(default_factory=dict)  # by local ARN
    resource_policies: dict[str, list[Statement]] = field(default_factory=dict)
    keys: dict[str, Value] = field(default_factory=dict)  # resource ARN -> its CMK
    functions: dict[str, str] = field(default_factory=dict)  # handler -> role ARN
    containers: dict[str, str] = field(default_factory=dict)  # container name -> role ARN
    logical_ids: dict[str, str] = field(default_factory=dict)  # role logical id -> ARN

    def role(
        self,
        *,
        logical_id: str | None = None,
        function: str | None = None,
        container: str | None = None,
    ) -> Role:
        """The role of a component: a role's logical id (or a unique prefix of it), a
        Lambda function's handler ("pkg.module.function" or "pkg.module:function") or an
        ECS container's name."""
        if function is not None:
            arn = self.functions.get(function.replace(":", "."))
            known = sorted(self.functions)
            what = f"Lambda function with handler {function}"
        elif container is not None:
            arn = self.containers.get(container)
            known = sorted(self.containers)
            what = f"ECS container named {container}"
        elif logical_id is not None:
            hits = [k for k in self.logical_ids if k == logical_id] or [
                k for k in self.logical_ids if k.startswith(logical_id)
            ]
            arn = self.logical_ids[hits[0]] if len(hits) == 1 else None
            known = sorted(self.logical_ids)
            what = f"single role {logical_id}" + (f" (matches {hits})" if len(hits) > 1 else "")
        else:
            raise TemplateError("name a role, a function or a container")
        if arn is None or arn not in self.roles:
            raise TemplateError(f"the template has no {what}; it has: {', '.join(known)}")
        return self.roles[arn]

    def resource_policy(self, arn: str, action: str) -> ResourcePolicy | None:
        """The resource-based policy that applies to `action` on `arn`: a bucket's (for the
        bucket and its objects), a queue's, a topic's; a role's trust policy for assuming
        it, a key's policy for using it (both required)."""
        service = arn.split(":")[2] if arn.count(":") >= 5 else ""
        if service == "iam" and action.lower() in _TRUST_ACTIONS:
            role = self.roles.get(arn)
            return ResourcePolicy(role.trust if role else (), required=True)
        if service == "kms":
            return ResourcePolicy(tuple(self.resource_policies.get(arn, ())), required=True)
        if service == "s3":
            arn = arn.split("/", 1)[0]
        found = self.resource_policies.get(arn)
        return ResourcePolicy(tuple(found)) if found else None

    def key_of(self, arn: str) -> Value | None:
        """The customer-managed KMS key that encrypts a bucket (or its objects), stream or
        queue; None when it uses no key or an AWS-managed one."""
        if arn.startswith("arn:aws:s3:::"):
            arn = arn.split("/", 1)[0]
        return self.keys.get(arn)


def _by_ref(value: Any) -> str | None:
    return value["Ref"] if isinstance(value, Mapping) and set(value) == {"Ref"} else None


def _resources_of(stack: Stack, kind: str) -> Iterator[tuple[str, Mapping[str, Any]]]:
    for logical_id, resource in stack.template.get("Resources", {}).items():
        if resource.get("Type") == kind:
            yield logical_id, resource.get("Properties", {})


class _Builder:
    def __init__(self, stacks: list[Stack], local: Localization) -> None:
        self.local = local
        self.model = AuthorizationModel()
        self._exports: dict[str, Callable[[], Any]] = {}
        self.resolvers = {s.name: StackResolver(s, local, self._import) for s in stacks}
        for stack in stacks:
            resolver = self.resolvers[stack.name]
            for output in stack.template.get("Outputs", {}).values():
                if "Export" in output:
                    name = resolver.resolve(output["Export"].get("Name"))
                    if isinstance(name, str):
                        self._exports[name] = functools.partial(resolver.resolve, output["Value"])
        self.regional = [s for s in stacks if s.region in (None, local.region)]

    def _import(self, name: str) -> Any:
        found = self._exports.get(name)
        return found() if found else Unresolved(f"no stack here exports {name}")

    def build(self) -> AuthorizationModel:
        for stack in self.regional:
            self._roles(stack)
        for stack in self.regional:
            self._attached_policies(stack)
            self._components(stack)
            self._resource_policies(stack)
            self._keys(stack)
        return self.model

    def _roles(self, stack: Stack) -> None:
        resolver = self.resolvers[stack.name]
        for logical_id, props in _resources_of(stack, "AWS::IAM::Role"):
            arn = resolver.attribute(logical_id, "Arn")
            if not isinstance(arn, str):
                log.warning("iam: role %s has no local ARN (%s); not modelled", logical_id, arn)
                continue
            statements: list[Statement] = []
            for index, inline in enumerate(props.get("Policies", [])):
                document = resolver.resolve(inline.get("PolicyDocument"))
                statements += statements_of(document, f"{logical_id}/Policies[{index}]")
            for entry in props.get("ManagedPolicyArns", []):
                statements += self._managed(stack, entry, logical_id)
            tags = {
                str(t["Key"]): str(t["Value"])
                for t in resolver.resolve(props.get("Tags", []))
                if isinstance(t, Mapping) and isinstance(t.get("Value"), str)
            }
            unjudged = (
                "permissions boundaries are not evaluated locally"
                if "PermissionsBoundary" in props
                else ""
            )
            trust = statements_of(
                resolver.resolve(props.get("AssumeRolePolicyDocument")), f"{logical_id}/trust"
            )
            self.model.roles[arn] = Role(
                logical_id, stack.name, arn, tuple(statements), trust, tags, unjudged
            )
            self.model.logical_ids[logical_id] = arn

    def _managed(self, stack: Stack, entry: Any, role: str) -> tuple[Statement, ...]:
        ref = _by_ref(entry)
        resolver = self.resolvers[stack.name]
        if ref and resolver.resources.get(ref, {}).get("Type") == "AWS::IAM::ManagedPolicy":
            document = resolver.resolve(resolver.resources[ref]["Properties"]["PolicyDocument"])
            return statements_of(document, ref)
        arn = resolver.resolve(entry)
        document = aws_managed_policy(arn) if isinstance(arn, str) else None
        if document is None:
            # Without moto's snapshot (an image or asset tree) none is known: say so quietly.
            report = log.warning if _aws_managed_policies() else log.info
            report("iam: %s: managed policy %s is unknown here; it grants nothing", role, arn)
            return ()
        return statements_of(document, f"aws-managed:{arn.rsplit('/', 1)[-1]}")

    def _role_arns(self, stack: Stack, roles: Any) -> list[str]:
        """The local ARNs of a policy's Roles (Refs to roles, or role names)."""
        found: list[str] = []
        resolver = self.resolvers[stack.name]
        for entry in roles if isinstance(roles, list) else []:
            ref = _by_ref(entry)
            arn = resolver.attribute(ref, "Arn") if ref else None
            if arn is None:
                name = resolver.resolve(entry)
                arn = next((a for a in self.model.roles if a.rsplit("/", 1)[-1] == name), None)
            if isinstance(arn, str) and arn in self.model.roles:
                found.append(arn)
            else:
                log.warning("iam: a policy of %s names role %s, unknown here", stack.name, entry)
        return found

    def _attached_policies(self, stack: Stack) -> None:
        resolver = self.resolvers[stack.name]
        for kind in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            for logical_id, props in _resources_of(stack, kind):
                document = resolver.resolve(props.get("PolicyDocument"))
                statements = statements_of(document, logical_id)
                for arn in self._role_arns(stack, props.get("Roles", [])):
                    role = self.model.roles[arn]
                    self.model.roles[arn] = Role(
                        role.logical_id,
                        role.stack,
                        role.arn,
                        role.statements + statements,
                        role.trust,
                        role.tags,
                        role.unjudged,
                    )

    def _components(self, stack: Stack) -> None:
        resolver = self.resolvers[stack.name]
        for _, props in _resources_of(stack, "AWS::Lambda::Function"):
            arn = resolver.resolve(props.get("Role"))
            if isinstance(arn, str) and "Handler" in props:
                self.model.functions[str(props["Handler"])] = arn
        for _, props in _resources_of(stack, "AWS::ECS::TaskDefinition"):
            arn = resolver.resolve(props.get("TaskRoleArn"))
            for container in props.get("ContainerDefinitions", []):
                if isinstance(arn, str):
                    self.model.containers[str(container.get("Name"))] = arn

    def _attach(self, arn: Any, document: Any, origin: str) -> None:
        if not isinstance(arn, str):
            log.info("iam: %s is attached to a resource with no local ARN (%s)", origin, arn)
            return
        statements = statements_of(document, origin)
        self.model.resource_policies.setdefault(arn, []).extend(statements)

    def _resource_policies(self, stack: Stack) -> None:
        resolver = self.resolvers[stack.name]
        region = self.local.region
        for logical_id, props in _resources_of(stack, "AWS::S3::BucketPolicy"):
            bucket = resolver.resolve(props.get("Bucket"))
            arn = format_parts("arn:aws:s3:::{}", bucket)
            self._attach(arn, resolver.resolve(props.get("PolicyDocument")), logical_id)
        for logical_id, props in _resources_of(stack, "AWS::SQS::QueuePolicy"):
            document = resolver.resolve(props.get("PolicyDocument"))
            for queue in props.get("Queues", []):
                ref = _by_ref(queue)
                if ref:
                    arn = resolver.attribute(ref, "Arn")
                else:
                    url = resolver.resolve(queue)
                    arn = queue_arn_from_url(url, region) if isinstance(url, str) else url
                self._attach(arn, document, logical_id)
        for logical_id, props in _resources_of(stack, "AWS::SNS::TopicPolicy"):
            document = resolver.resolve(props.get("PolicyDocument"))
            for topic in resolver.resolve(props.get("Topics", [])):
                self._attach(topic, document, logical_id)
        for logical_id, props in _resources_of(stack, "AWS::KMS::Key"):
            arn = resolver.attribute(logical_id, "Arn")
            self._attach(arn, resolver.resolve(props.get("KeyPolicy")), logical_id)

    def _key(self, stack: Stack, value: Any) -> Value | None:
        resolver = self.resolvers[stack.name]
        key = resolver.resolve(value)
        if isinstance(key, str) and key in _MANAGED_KEY_ALIASES:
            return None
        if isinstance(key, str) and key.startswith("alias/"):
            for _, alias in _resources_of(stack, "AWS::KMS::Alias"):
                if resolver.resolve(alias.get("AliasName")) == key:
                    return self._key(stack, alias.get("TargetKeyId"))
            return Unresolved(f"KMS alias {key} is not defined here")
        if isinstance(key, str) and not key.startswith("arn:"):
            return f"arn:aws:kms:{self.local.region}:{self.local.account}:key/{key}"
        return key if isinstance(key, str | Unresolved) else Unresolved(f"key {key!r}")

    def _keys(self, stack: Stack) -> None:
        resolver = self.resolvers[stack.name]
        for logical_id, props in _resources_of(stack, "AWS::S3::Bucket"):
            rules = props.get("BucketEncryption", {}).get("ServerSideEncryptionConfiguration", [])
            for rule in rules:
                default = rule.get("ServerSideEncryptionByDefault", {})
                if str(default.get("SSEAlgorithm", "")).startswith("aws:kms"):
                    key = self._key(stack, default.get("KMSMasterKeyID", "alias/aws/s3"))
                    self._set_key(resolver.attribute(logical_id, "Arn"), key)
        for logical_id, props in _resources_of(stack, "AWS::Kinesis::Stream"):
            encryption = props.get("StreamEncryption", {})
            if encryption.get("EncryptionType") == "KMS":
                key = self._key(stack, encryption.get("KeyId"))
                self._set_key(resolver.attribute(logical_id, "Arn"), key)
        for logical_id, props in _resources_of(stack, "AWS::SQS::Queue"):
            if "KmsMasterKeyId" in props:
                key = self._key(stack, props["KmsMasterKeyId"])
                self._set_key(resolver.attribute(logical_id, "Arn"), key)

    def _set_key(self, arn: Any, key: Value | None) -> None:
        if isinstance(arn, str) and key is not None:
            self.model.keys[arn] = key


def build_model(stacks: list[Stack], local: Localization) -> AuthorizationModel:
    """The authorization model of `local.region`: its stacks (and any stack without a
    region) read, imports resolved across all `stacks`."""
    return _Builder(stacks, local).build()


def load_model(path: Path, local: Localization) -> AuthorizationModel:
    return build_model(load_stacks(path), local)
