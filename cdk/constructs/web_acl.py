"""The ALB's WAF web ACL: a per-client-IP rate limit and Amazon's IP reputation list.

Global Accelerator preserves client IPs, so the rate rule counts real clients. The generic
managed rule sets (Common, KnownBadInputs) are left out on purpose: they inspect HTTP
bodies and URIs for web attacks, and gRPC bodies are protobuf (binary, up to 320 KiB), which
SizeRestrictions_BODY would block outright.
"""

from __future__ import annotations

from aws_cdk import aws_wafv2 as wafv2
from constructs import Construct

RATE_RULE_NAME = "per-ip-rate"


def _visibility(name: str) -> wafv2.CfnWebACL.VisibilityConfigProperty:
    return wafv2.CfnWebACL.VisibilityConfigProperty(
        cloud_watch_metrics_enabled=True, metric_name=name, sampled_requests_enabled=True
    )


class RateLimitedWebAcl(Construct):
    def __init__(
        self, scope: Construct, id_: str, *, load_balancer_arn: str, requests_per_5min: int
    ) -> None:
        super().__init__(scope, id_)
        self.web_acl = wafv2.CfnWebACL(
            self,
            "WebAcl",
            scope="REGIONAL",
            default_action=wafv2.CfnWebACL.DefaultActionProperty(allow={}),
            visibility_config=_visibility("reportgrid-edge"),
            rules=[
                wafv2.CfnWebACL.RuleProperty(
                    name=RATE_RULE_NAME,
                    priority=0,
                    action=wafv2.CfnWebACL.RuleActionProperty(block={}),
                    statement=wafv2.CfnWebACL.StatementProperty(
                        rate_based_statement=wafv2.CfnWebACL.RateBasedStatementProperty(
                            aggregate_key_type="IP",
                            limit=requests_per_5min,
                            evaluation_window_sec=300,
                        )
                    ),
                    visibility_config=_visibility(RATE_RULE_NAME),
                ),
                wafv2.CfnWebACL.RuleProperty(
                    name="aws-ip-reputation",
                    priority=1,
                    override_action=wafv2.CfnWebACL.OverrideActionProperty(none={}),
                    statement=wafv2.CfnWebACL.StatementProperty(
                        managed_rule_group_statement=wafv2.CfnWebACL.ManagedRuleGroupStatementProperty(
                            vendor_name="AWS", name="AWSManagedRulesAmazonIpReputationList"
                        )
                    ),
                    visibility_config=_visibility("aws-ip-reputation"),
                ),
            ],
        )
        wafv2.CfnWebACLAssociation(
            self,
            "Association",
            resource_arn=load_balancer_arn,
            web_acl_arn=self.web_acl.attr_arn,
        )
