"""The CloudFormation stack names of a deployment, and the outputs operators' tools read.

One definition for the CDK app (cdk/deployment.py) and the operator's commands in the CLI
(`reportgrid admin` finds the table, `reportgrid trace --aws` finds the log groups), which
cannot import the CDK app."""

from __future__ import annotations

from typing import Final

DATA_STACK: Final = "Reportgrid-Data"
GLOBAL_STACK: Final = "Reportgrid-Global"
PIPELINE_STACK: Final = "Reportgrid-Pipeline"
# The data stack's output naming the global table (cdk/stacks/data.py).
TABLE_OUTPUT: Final = "TableName"


def regional_stack_name(region: str) -> str:
    """CloudFormation names a log group it creates without a name "<stack name>-<logical
    id>-<suffix>", so this is also the prefix of every log group of the region's processes."""
    return f"Reportgrid-{region}"


def replication_stack_name(region: str) -> str:
    return f"Reportgrid-{region}-Replication"
