"""The pipeline's stage keeps what the stacks are outside it: every logical id, and the
names CDK derives from construct paths.

CDK names some resources after a construct's unique id or path, both taken from the app
down: an event-source mapping after its stream or queue (`KinesisEventSource:<stream's
unique id>`), a security-group rule after its peer's group, a security group's description
after its path, a scaling policy and a task definition family after their unique ids. In the
pipeline's stage those paths start with the pipeline stack and the stage, so they change,
and CloudFormation would replace what they name when the pipeline takes over stacks deployed
by hand: a replaced Kinesis mapping starts again at TRIM_HORIZON (every task still in the
stream, run again), a replacement security-group rule is created before the old one goes
(EC2 refuses the duplicate), and a security group's description is create-only (a new group
for every service, the load balancer and the functions).

So after the stage is built each of them is put back to what it is in the app: the unique
id or path is computed again without the stage's part; the `Name` tags the VPC constructs
set to their paths too, by an aspect that runs after CDK's tag aspects. `make_unique_id` is
CDK's own algorithm (aws-cdk-lib core/lib/private/uniqueid.ts). tests/infra/test_pipeline.py
checks every resource of the app against its twin in the stage.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

import jsii
from aws_cdk import (
    AspectPriority,
    Aspects,
    CfnElement,
    CfnResource,
    IAspect,
    Stack,
    Stage,
    TagManager,
)
from aws_cdk import aws_applicationautoscaling as appscaling
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from constructs import IConstruct

_HIDDEN_ID = "Default"
_HIDDEN_FROM_HUMAN_ID = "Resource"
_HASH_LEN = 8
_MAX_HUMAN_LEN = 240
_MAX_ID_LEN = 255
_NON_ALPHANUMERIC = re.compile(r"[^A-Za-z0-9]")


def make_unique_id(components: Sequence[str]) -> str:
    """CDK's makeUniqueId: the human-readable part of the path plus an MD5 of all of it."""
    parts = [c for c in components if c != _HIDDEN_ID]
    if not parts:
        raise ValueError("no components to make a unique id of")
    if len(parts) == 1:
        candidate = _NON_ALPHANUMERIC.sub("", parts[0])
        if len(candidate) <= _MAX_ID_LEN:
            return candidate
    digest = hashlib.md5("/".join(parts).encode(), usedforsecurity=False).hexdigest()
    deduped: list[str] = []
    for part in parts:
        if not deduped or not deduped[-1].endswith(part):
            deduped.append(part)
    human = "".join(_NON_ALPHANUMERIC.sub("", p) for p in deduped if p != _HIDDEN_FROM_HUMAN_ID)
    return human[:_MAX_HUMAN_LEN] + digest[:_HASH_LEN].upper()


def _ids(node: IConstruct) -> list[str]:
    return [scope.node.id for scope in node.node.scopes[1:]]  # from the app's children down


class _Restorer:
    """Rewrites a stage-rooted unique id or path inside a string to the app-rooted one."""

    def __init__(self, stage: Stage) -> None:
        depth = len(_ids(stage))
        self.renames: dict[str, str] = {}
        for node in stage.node.find_all():
            path = _ids(node)
            if len(path) > depth + 1:  # below a stack of the stage
                self.renames[make_unique_id(path)] = make_unique_id(path[depth:])
        self.marker = make_unique_id(_ids(stage))[:-_HASH_LEN]  # every staged id starts so
        self.path_prefix = stage.node.path + "/"

    def __call__(self, text: str) -> str:
        if text.startswith(self.path_prefix):
            text = text[len(self.path_prefix) :]
        if self.marker in text:
            for staged, plain in self.renames.items():
                if staged in text:
                    text = text.replace(staged, plain)
        return text


# After the aspects Tags.of(...).add() registers (at AspectPriority.DEFAULT), before the
# read-only ones.
_AFTER_TAGS = (AspectPriority.DEFAULT + AspectPriority.READONLY) // 2
# Above the priority Tags.of(...).add() gives its tags (100).
_TAG_PRIORITY = 1000


@jsii.implements(IAspect)
class _RestoreNameTags:
    def __init__(self, restore: _Restorer) -> None:
        self._restore = restore

    def visit(self, node: IConstruct) -> None:
        if not isinstance(node, CfnResource):
            return
        # L1s keep their TagManager as `tags`, or (ITaggableV2) as `cdk_tag_manager`.
        tags = getattr(node, "cdk_tag_manager", None) or getattr(node, "tags", None)
        if not isinstance(tags, TagManager):  # an L1 without tags
            return
        name = tags.tag_values().get("Name")
        if name is not None and self._restore(name) != name:
            tags.set_tag("Name", self._restore(name), _TAG_PRIORITY)


def keep_app_identity(stage: Stage) -> int:
    """Put back every logical id and path-derived name that the stage changed; how many
    were changed (the Name tags follow when the stage is synthesized)."""
    restore = _Restorer(stage)
    Aspects.of(stage).add(_RestoreNameTags(restore), priority=_AFTER_TAGS)
    changed = 0
    for node in stage.node.find_all():
        if not isinstance(node, CfnElement):
            continue
        element = node
        scopes = element.node.scopes
        below = [s.node.id for s in scopes[scopes.index(Stack.of(element)) + 1 :]]
        kept = [restore(part) for part in below]
        if kept != below:
            element.override_logical_id(make_unique_id(kept))
            changed += 1
        changed += _restore_names(element, restore)
    return changed


# The create-only names CDK derives from paths (and the rules' descriptions), by L1 class.
_PATH_NAMES: tuple[tuple[type[CfnElement], str], ...] = (
    (ec2.CfnSecurityGroup, "group_description"),
    (ec2.CfnSecurityGroupIngress, "description"),
    (ec2.CfnSecurityGroupEgress, "description"),
    (appscaling.CfnScalingPolicy, "policy_name"),
    (ecs.CfnTaskDefinition, "family"),
)


def _restore_names(element: CfnElement, restore: _Restorer) -> int:
    changed = 0
    for kind, attribute in _PATH_NAMES:
        if not isinstance(element, kind):
            continue
        value = getattr(element, attribute)
        if isinstance(value, str) and restore(value) != value:
            setattr(element, attribute, restore(value))
            changed += 1
    return changed
