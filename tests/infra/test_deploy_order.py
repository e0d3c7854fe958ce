"""The deploy order, read from the synthesized cloud assembly (cdk.out/manifest.json and
the templates): the replication rules come from the stack that runs after every bucket
exists, globally named resources are created once, and the README's "Order" is exactly
the dependency graph. The references between stacks, and that the regions deploy in
parallel, are judged in test_template_graph.py.
"""

from __future__ import annotations

import json
import re
from typing import Any

from tests.infra.conftest import ACCOUNT, REPO_ROOT, Synthesized, flatten
from tests.infra.test_template_graph import Assembly


def templates(synth: Synthesized) -> dict[str, dict[str, Any]]:
    return Assembly.read(synth.outdir).templates


def test_replication_rules_are_put_by_the_later_stack_only(synth: Synthesized) -> None:
    for stack in synth.deployment.regions.values():
        for bucket in synth.templates[stack.stack_name].find_resources("AWS::S3::Bucket").values():
            assert "ReplicationConfiguration" not in bucket["Properties"]
    for region, stack in synth.deployment.replication.items():
        template = templates(synth)[stack.stack_name]
        (put,) = (r for r in template["Resources"].values() if r["Type"] == "Custom::AWS")
        create = json.loads(flatten(put["Properties"]["Create"], region))
        assert create["action"] == "putBucketReplication"
        rules = create["parameters"]["ReplicationConfiguration"]["Rules"]
        destinations = {rule["Destination"]["Bucket"] for rule in rules}
        peers = synth.config.replication_regions(region)
        assert destinations == {f"arn:aws:s3:::reportgrid-results-{ACCOUNT}-{p}" for p in peers}
        delete = json.loads(flatten(put["Properties"]["Delete"], region))
        assert delete["action"] == "deleteBucketReplication"


def test_globally_named_resources_are_created_once(synth: Synthesized) -> None:
    # IAM role names and S3 bucket names are global (per account / per partition): two
    # stacks creating the same one fail the second deploy.
    names: dict[str, str] = {}
    for stack, template in templates(synth).items():
        for resource in template.get("Resources", {}).values():
            key = {"AWS::IAM::Role": "RoleName", "AWS::S3::Bucket": "BucketName"}.get(
                resource["Type"]
            )
            name = resource.get("Properties", {}).get(key) if key else None
            if isinstance(name, str):
                assert name not in names, f"{name} is created by {names[name]} and {stack}"
                names[name] = stack


def readme_order() -> list[tuple[int, str]]:
    """(step, stack) for each deploy line of README's "### Order" block."""
    text = (REPO_ROOT / "README.md").read_text()
    section = text.split("### Order", 1)[1]
    block = section.split("```sh", 1)[1].split("```", 1)[0]
    steps = []
    for line in block.splitlines():
        match = re.match(r"npx aws-cdk@2 deploy (?:-e )?(\S+)\s+# (\d+)\.", line.strip())
        if match:
            steps.append((int(match[2]), match[1]))
    return steps


def test_readme_order_is_the_dependency_graph(synth: Synthesized) -> None:
    deps = Assembly.read(synth.outdir).dependencies()
    steps = readme_order()
    step = {stack: number for number, stack in steps}
    assert set(step) == set(deps), "README's Order lists exactly the app's stacks"
    for stack, before in deps.items():
        for dependency in before:
            assert step[dependency] < step[stack], f"{stack} must come after {dependency}"
    # Stacks given the same step really can deploy together.
    for a, number in step.items():
        for b, other in step.items():
            if a != b and number == other:
                assert b not in deps[a], f"{a} and {b} share step {number} but {a} needs {b}"
