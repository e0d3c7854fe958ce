"""Template values made local: the intrinsics of a synthesized stack (Ref, Fn::GetAtt,
Fn::Join, Fn::Sub, Fn::Select, Fn::Split, Fn::ImportValue, the pseudo parameters) resolved
to the values of the local region.

The local region creates every resource under the name the template gives it
(devstack/reportgrid/local/bootstrap.py, reportgrid.resources), in its own account
(bootstrap.LOCAL_ACCOUNT): so `Fn::GetAtt [Queue, Arn]` becomes the local queue's ARN, and
the deployed account, wherever the template spells it out (the table's ARN, the bucket
names), becomes the local one. A role without a RoleName is known locally by its logical
id, except those the local region creates under a name of its own (DEFAULT_ROLE_NAMES).
A value without a local counterpart (a generated name, a KMS key id, an unknown intrinsic)
becomes `Unresolved`, which nothing can match: fail-closed, and logged where it is used.
`Localization.physical` gives such values when the local region does create them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from reportgrid.local.bootstrap import LOCAL_ACCOUNT, LOCAL_INPUT_READER_ROLE
from reportgrid.local.iam.patterns import Unresolved

# Role logical-id prefix -> the name the local region creates that role under.
DEFAULT_ROLE_NAMES: Final[Mapping[str, str]] = {"InputReaderRole": LOCAL_INPUT_READER_ROLE}
_SUB_VARIABLE: Final = re.compile(r"\$\{([^}]+)\}")
_MAX_DEPTH: Final = 64


class TemplateError(ValueError):
    """The template (or the component asked for) is not there or not understood."""


@dataclass(frozen=True, slots=True)
class Localization:
    """Where the template's values land: the local region and account."""

    region: str
    account: str = LOCAL_ACCOUNT
    # Literal template text -> the local text (e.g. a configured input bucket's name).
    renames: Mapping[str, str] = field(default_factory=dict)
    role_names: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_ROLE_NAMES))
    # "LogicalId" (its Ref) or "LogicalId.Attribute" -> the local value.
    physical: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Stack:
    name: str
    template: Mapping[str, Any]
    region: str | None = None
    account: str | None = None


def load_stacks(path: Path) -> list[Stack]:
    """Every stack of a cloud assembly (a cdk.out directory, via its manifest.json), or the
    one template of a .template.json file."""
    if path.is_file():
        return [Stack(path.name.removesuffix(".template.json"), json.loads(path.read_text()))]
    manifest_path = path / "manifest.json"
    if not manifest_path.is_file():
        raise TemplateError(f"{path} is neither a template file nor a cloud assembly")
    manifest = json.loads(manifest_path.read_text())
    stacks: list[Stack] = []
    for name, artifact in manifest.get("artifacts", {}).items():
        if artifact.get("type") != "aws:cloudformation:stack":
            continue
        template = json.loads((path / artifact["properties"]["templateFile"]).read_text())
        # environment: "aws://<account>/<region>"
        account, _, region = artifact.get("environment", "").removeprefix("aws://").partition("/")
        stacks.append(Stack(name, template, region or None, account or None))
    return stacks


_NO_VALUE: Final = object()
_PSEUDO_TEXT: Final = {"AWS::Partition": "aws", "AWS::URLSuffix": "amazonaws.com"}


def format_parts(pattern: str, *parts: Any) -> Any:
    """`pattern` filled with `parts`, or the first part that is Unresolved (or not text)."""
    for part in parts:
        if isinstance(part, Unresolved):
            return part
        if not isinstance(part, str):
            return Unresolved(f"{part!r} is not text")
    return pattern.format(*parts)


def queue_arn_from_url(url: str, region: str) -> str | None:
    """arn:aws:sqs:<region>:<account>:<name> from a queue URL (AWS's, or the moto
    server's http://host:port/<account>/<name>, whose region is the client's)."""
    scheme, _, rest = url.partition("://")
    host, _, path = rest.partition("/")
    account, _, name = path.strip("/").partition("/")
    if not scheme or not account.isdigit() or not name or "/" in name:
        return None
    labels = host.split(".")
    if len(labels) >= 3 and labels[0] == "sqs":
        region = labels[1]
    return f"arn:aws:sqs:{region}:{account}:{name}"


class StackResolver:
    """Resolves one stack's intrinsics to local values."""

    def __init__(self, stack: Stack, local: Localization, imports: Callable[[str], Any]) -> None:
        self.stack = stack
        self.local = local
        self.resources: Mapping[str, Any] = stack.template.get("Resources", {})
        self._imports = imports
        rewrites = dict(local.renames)
        if stack.account and stack.account != local.account:
            rewrites[stack.account] = local.account
        self._rewrites = sorted(rewrites.items(), key=lambda kv: -len(kv[0]))

    def text(self, value: str) -> str:
        for deployed, here in self._rewrites:
            value = value.replace(deployed, here)
        return value

    def resolve(self, value: Any, depth: int = 0) -> Any:
        if depth > _MAX_DEPTH:
            return Unresolved("intrinsics nested too deep")
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, list):
            items = [self.resolve(v, depth + 1) for v in value]
            return [v for v in items if v is not _NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            if key == "Ref" or key.startswith("Fn::"):
                return self._intrinsic(key, arg, depth + 1)
        resolved = {k: self.resolve(v, depth + 1) for k, v in value.items()}
        return {k: v for k, v in resolved.items() if v is not _NO_VALUE}

    def _intrinsic(self, key: str, arg: Any, depth: int) -> Any:
        if key == "Ref":
            return self.ref(str(arg))
        if key == "Fn::GetAtt":
            logical_id, _, attribute = (
                (arg[0], None, arg[1]) if isinstance(arg, list) else str(arg).partition(".")
            )
            return self.attribute(str(logical_id), str(attribute))
        if key == "Fn::Join":
            separator, parts = arg
            parts = self.resolve(parts, depth)
            if isinstance(parts, Unresolved):
                return parts
            return format_parts(separator.join(["{}"] * len(parts)), *parts)
        if key == "Fn::Sub":
            return self._sub(arg, depth)
        if key == "Fn::Select":
            index, items = self.resolve(arg, depth)
            if isinstance(items, Unresolved) or isinstance(index, Unresolved):
                return items if isinstance(items, Unresolved) else index
            return items[int(index)]
        if key == "Fn::Split":
            separator, text = self.resolve(arg, depth)
            return text if isinstance(text, Unresolved) else str(text).split(separator)
        if key == "Fn::ImportValue":
            name = self.resolve(arg, depth)
            return name if isinstance(name, Unresolved) else self._imports(str(name))
        return Unresolved(f"{key} is not resolved locally")

    def _sub(self, arg: Any, depth: int) -> Any:
        text, variables = (arg[0], arg[1]) if isinstance(arg, list) else (arg, {})
        pieces: list[Any] = []
        position = 0
        for found in _SUB_VARIABLE.finditer(text):
            pieces.append(self.text(text[position : found.start()]))
            name = found.group(1)
            if name.startswith("!"):
                pieces.append("${" + name[1:] + "}")  # ${!Literal} is the text ${Literal}
            elif name in variables:
                pieces.append(self.resolve(variables[name], depth))
            elif "." in name and not name.startswith("AWS::"):
                logical_id, _, attribute = name.partition(".")
                pieces.append(self.attribute(logical_id, attribute))
            else:
                pieces.append(self.ref(name))
            position = found.end()
        pieces.append(self.text(text[position:]))
        return format_parts("{}" * len(pieces), *pieces)

    def ref(self, name: str) -> Any:
        if name in _PSEUDO_TEXT:
            return _PSEUDO_TEXT[name]
        if name == "AWS::Region":
            return self.local.region
        if name == "AWS::AccountId":
            return self.local.account
        if name == "AWS::StackName":
            return self.stack.name
        if name == "AWS::NoValue":
            return _NO_VALUE
        if name in self.local.physical:
            return self.local.physical[name]
        if name in self.resources:
            return self._names(name).get("Ref", Unresolved(f"Ref {name} has no local value"))
        parameter = self.stack.template.get("Parameters", {}).get(name)
        # A plain parameter's default (an SSM-typed one is read from SSM at deploy time).
        if (
            isinstance(parameter, Mapping)
            and "Default" in parameter
            and not str(parameter.get("Type", "")).startswith("AWS::SSM")
        ):
            return self.resolve(parameter["Default"])
        return Unresolved(f"Ref {name} has no local value")

    def attribute(self, logical_id: str, attribute: str) -> Any:
        override = self.local.physical.get(f"{logical_id}.{attribute}")
        if override is not None:
            return override
        if attribute == "Arn" and str(self.local.physical.get(logical_id, "")).startswith("arn:"):
            return self.local.physical[logical_id]
        found = self._names(logical_id).get(attribute)
        if found is None:
            return Unresolved(f"Fn::GetAtt {logical_id}.{attribute} has no local value")
        return found

    def role_name(self, logical_id: str, properties: Mapping[str, Any]) -> Any:
        if "RoleName" in properties:
            return self.resolve(properties["RoleName"])
        for prefix, name in self.local.role_names.items():
            if logical_id.startswith(prefix):
                return name
        return logical_id

    def _names(self, logical_id: str) -> dict[str, Any]:
        """The Ref and attributes of a resource, as the local region names it."""
        resource = self.resources.get(logical_id, {})
        kind = resource.get("Type", "")
        props: Mapping[str, Any] = resource.get("Properties", {})
        region, account = self.local.region, self.local.account

        def prop(name: str) -> Any:
            if name not in props:
                return Unresolved(f"{kind} {logical_id} has no {name}: its name is generated")
            return self.resolve(props[name])

        if kind == "AWS::S3::Bucket":
            name = prop("BucketName")
            return {"Ref": name, "Arn": format_parts("arn:aws:s3:::{}", name)}
        if kind == "AWS::SQS::Queue":
            name = prop("QueueName")
            return {
                "Ref": format_parts(f"https://sqs.{region}.amazonaws.com/{account}/{{}}", name),
                "QueueUrl": format_parts(
                    f"https://sqs.{region}.amazonaws.com/{account}/{{}}", name
                ),
                "QueueName": name,
                "Arn": format_parts(f"arn:aws:sqs:{region}:{account}:{{}}", name),
            }
        if kind == "AWS::Kinesis::Stream":
            name = prop("Name")
            return {
                "Ref": name,
                "Arn": format_parts(f"arn:aws:kinesis:{region}:{account}:stream/{{}}", name),
            }
        if kind in ("AWS::DynamoDB::Table", "AWS::DynamoDB::GlobalTable"):
            name = prop("TableName")
            return {
                "Ref": name,
                "Arn": format_parts(f"arn:aws:dynamodb:{region}:{account}:table/{{}}", name),
            }
        if kind == "AWS::IAM::Role":
            name = self.role_name(logical_id, props)
            path = props.get("Path", "/")
            arn = format_parts(f"arn:aws:iam::{account}:role{path}{{}}", name)
            return {"Ref": name, "Arn": arn}
        if kind == "AWS::IAM::ManagedPolicy":
            name = prop("ManagedPolicyName")
            path = props.get("Path", "/")
            return {"Ref": format_parts(f"arn:aws:iam::{account}:policy{path}{{}}", name)}
        if kind == "AWS::SecretsManager::Secret":
            # The deployed ARN ends in a random 6-character suffix; IAM's own pattern for a
            # secret known by name is exactly this (CDK's from_secret_name_v2 writes it).
            name = prop("Name")
            arn = format_parts(
                f"arn:aws:secretsmanager:{region}:{account}:secret:{{}}-??????", name
            )
            return {"Ref": arn, "Id": arn}
        if kind == "AWS::SNS::Topic":
            name = prop("TopicName")
            arn = format_parts(f"arn:aws:sns:{region}:{account}:{{}}", name)
            return {"Ref": arn, "TopicArn": arn, "TopicName": name}
        if kind == "AWS::Lambda::Function":
            name = prop("FunctionName")
            return {
                "Ref": name,
                "Arn": format_parts(f"arn:aws:lambda:{region}:{account}:function:{{}}", name),
            }
        if kind == "AWS::Events::EventBus":
            name = prop("Name")
            arn = format_parts(f"arn:aws:events:{region}:{account}:event-bus/{{}}", name)
            return {"Ref": name, "Arn": arn, "Name": name}
        if kind == "AWS::Logs::LogGroup":
            name = prop("LogGroupName")
            return {
                "Ref": name,
                "Arn": format_parts(f"arn:aws:logs:{region}:{account}:log-group:{{}}:*", name),
            }
        return {}
