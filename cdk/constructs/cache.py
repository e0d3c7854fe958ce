"""ElastiCache for Valkey, serverless: the read cache and the Watch pub/sub.

Why serverless rather than a Multi-AZ replication group: the edge's read load follows the
request rate (up to ~10,000 RPC/s per region with bursts), and serverless scales memory and
throughput by itself with no node type, shard count or failover to manage; it always
replicates across AZs, always encrypts in transit and at rest, and bills by use. A fixed
replication group would need sizing for the peak and a resharding procedure. The cost
floor of serverless is accepted; the usage limits below cap its spend.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from aws_cdk import Fn, SecretValue
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_elasticache as elasticache
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from cdk.constructs.nag import suppress
from reportgrid import resources as r

USER_NAME = "reportgrid"
# Keys and channels under the project's prefix only ("rg:"), everything else denied.
_KEY_PREFIX = r.CACHE_REPORT_PREFIX.split(":")[0] + ":*"
ACCESS_STRING = f"on ~{_KEY_PREFIX} &{_KEY_PREFIX} +@all"
CACHE_PORTS = ec2.Port.tcp_range(6379, 6380)  # 6379 primary, 6380 reader endpoint


class ValkeyCache(Construct):
    """Serverless Valkey with an RBAC user whose password lives in Secrets Manager.

    `url_secret` holds the full `rediss://user:password@host:port` URL: the containers get
    it as ENV.REDIS_URL (an ECS secret), the Lambda gets its ARN as ENV.REDIS_URL_ARN."""

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        vpc: ec2.IVpc,
        subnets: ec2.SubnetSelection,
        max_data_gb: int,
        max_ecpu_per_second: int,
    ) -> None:
        super().__init__(scope, id_)
        self.security_group = ec2.SecurityGroup(
            self, "SecurityGroup", vpc=vpc, description="Valkey", allow_all_outbound=False
        )
        self.connections = ec2.Connections(
            security_groups=[self.security_group], default_port=CACHE_PORTS
        )
        self.auth_secret = secretsmanager.Secret(
            self,
            "AuthSecret",
            description="Reportgrid Valkey RBAC user",
            generate_secret_string=secretsmanager.SecretStringGenerator(
                secret_string_template=json.dumps({"username": USER_NAME}),
                generate_string_key="password",
                password_length=48,
                exclude_punctuation=True,  # the password is embedded in a URL
            ),
        )
        password = self.auth_secret.secret_value_from_json("password").unsafe_unwrap()
        user = elasticache.CfnUser(
            self,
            "User",
            engine="valkey",
            user_id=f"{r.PROJECT}-app",
            user_name=USER_NAME,
            access_string=ACCESS_STRING,
            authentication_mode={"Type": "password", "Passwords": [password]},
        )
        # Valkey user groups must hold a user named "default"; this one cannot log in.
        default_user = elasticache.CfnUser(
            self,
            "DefaultUser",
            engine="valkey",
            user_id=f"{r.PROJECT}-default-off",
            user_name="default",
            access_string="off -@all",
            authentication_mode={"Type": "no-password-required"},
        )
        group = elasticache.CfnUserGroup(
            self,
            "UserGroup",
            engine="valkey",
            user_group_id=f"{r.PROJECT}-users",
            user_ids=[user.user_id, default_user.user_id],
        )
        group.add_resource_dependency(user)
        group.add_resource_dependency(default_user)
        private_subnet_ids: Sequence[str] = vpc.select_subnets(
            subnet_type=subnets.subnet_type
        ).subnet_ids
        self.cache = elasticache.CfnServerlessCache(
            self,
            "Cache",
            engine="valkey",
            major_engine_version="8",
            serverless_cache_name=r.PROJECT,
            description="Reportgrid read cache and report state notifications",
            security_group_ids=[self.security_group.security_group_id],
            subnet_ids=list(private_subnet_ids),
            user_group_id=group.user_group_id,
            cache_usage_limits=elasticache.CfnServerlessCache.CacheUsageLimitsProperty(
                data_storage=elasticache.CfnServerlessCache.DataStorageProperty(
                    unit="GB", maximum=max_data_gb
                ),
                ecpu_per_second=elasticache.CfnServerlessCache.ECPUPerSecondProperty(
                    maximum=max_ecpu_per_second
                ),
            ),
            snapshot_retention_limit=1,
        )
        self.cache.add_resource_dependency(group)
        url = Fn.join(
            "",
            [
                f"rediss://{USER_NAME}:",
                password,
                "@",
                self.cache.attr_endpoint_address,
                ":",
                self.cache.attr_endpoint_port,
            ],
        )
        self.url_secret = secretsmanager.Secret(
            self,
            "UrlSecret",
            description="Reportgrid Valkey URL with credentials (REPORTGRID_REDIS_URL)",
            secret_string_value=SecretValue.unsafe_plain_text(url),
        )
        for secret in (self.auth_secret, self.url_secret):
            suppress(
                secret,
                "AwsSolutions-SMG4",
                "The Valkey user password is set on the ElastiCache user by this stack; "
                "rotating it means redeploying the stack (a rotation Lambda would change it "
                "behind the user's back and break every connection).",
            )
