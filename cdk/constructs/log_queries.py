"""The investigation's saved Logs Insights queries (reportgrid/cli/log_queries.py) over the
log groups of the region's processes, one AWS::Logs::QueryDefinition each, in the console's
"Saved queries" under reportgrid/.

The raw L1 resource: the L2 QueryString builder orders the commands itself (fields, parse,
filter, stats, sort, limit), and a query must be saved exactly as `reportgrid trace` runs
it."""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Stack
from aws_cdk import aws_logs as logs
from constructs import Construct

from cdk.constructs.canary_function import CanaryFunction
from reportgrid.cli.log_queries import QUERY_NAME_PREFIX, SAVED_QUERIES

# VPC flow logs (cdk/constructs/network.py) say nothing about reports.
_NOT_SERVICE_LOGS = "FlowLogs"


def service_log_groups(stack: Stack) -> list[logs.LogGroup]:
    """Every log group the stack creates for a process of ours (edge, workers, Lambdas),
    so a component added later is queried without an edit here."""
    return [
        group
        for group in stack.node.find_all()
        if isinstance(group, logs.LogGroup)
        and group.node.id != _NOT_SERVICE_LOGS
        and not _in_canary(group)
    ]


def _in_canary(group: logs.LogGroup) -> bool:
    """The synthetic canary (with the pipeline only) is a client, not the service: its log
    group has its own alarm, and leaving it out keeps the saved queries the same with and
    without the pipeline (which deploys the app's stacks unchanged)."""
    return isinstance(group.node.scope, CanaryFunction)


class SavedQueries(Construct):
    """Exposes `definitions` (query name -> resource)."""

    def __init__(self, scope: Construct, id_: str, *, log_groups: Sequence[logs.ILogGroup]) -> None:
        super().__init__(scope, id_)
        names = [group.log_group_name for group in log_groups]
        self.definitions = {
            name: logs.CfnQueryDefinition(
                self,
                name.title().replace("-", ""),
                name=QUERY_NAME_PREFIX + name,
                query_string=query,
                log_group_names=names,
            )
            for name, query in SAVED_QUERIES.items()
        }
