"""The data stack, in the primary region: the global table and the id secret, replicated to
every other region (with the pipeline also the synthetic canary's key). Deployed first; the
regional stacks find them by name."""

from __future__ import annotations

from typing import Any

from aws_cdk import CfnOutput, Stack
from constructs import Construct

from cdk.config import DeployConfig
from cdk.constructs.canary_key_secret import CanaryKeySecret
from cdk.constructs.id_secret import IdSecret
from cdk.constructs.report_table import LeaseTable, ReportTable
from cdk.constructs.webhooks import WebhookSecret


class DataStack(Stack):
    def __init__(self, scope: Construct, id_: str, *, config: DeployConfig, **kwargs: Any) -> None:
        super().__init__(scope, id_, **kwargs)
        others = [region for region in config.regions if region != config.primary_region]
        self.table = ReportTable(self, "Reports", replica_regions=others).table
        # `reportgrid admin` finds the table here (the name is fixed today; the output keeps
        # the operator's CLI right if it ever is not).
        CfnOutput(self, "TableName", value=self.table.table_name)
        arbiter = config.lease_arbiter
        self.lease_table = (
            LeaseTable(
                self, "Leases", replica_regions=others, witness_region=arbiter.witness_region
            ).table
            if arbiter is not None
            else None
        )
        self.id_secret = IdSecret(self, "IdSecrets", replica_regions=others).secret
        self.webhook_secret = WebhookSecret(self, "WebhookSecret", replica_regions=others).secret
        self.canary_key = (
            CanaryKeySecret(self, "CanaryKey", replica_regions=others).secret
            if config.guarded_rollouts
            else None
        )
