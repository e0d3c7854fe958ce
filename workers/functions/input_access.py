"""Reading a report's S3 input as its tenant, not as the worker (docs/SECURITY.md, "Tenant
boundary").

The worker roles cannot read the input buckets. For each tenant the worker assumes the
input reader role with the session tag tenant=<tenant>; that role may s3:GetObject only
`<bucket>/tenants/${aws:PrincipalTag/tenant}/*` (cdk/constructs/input_reader.py). So even a
worker bug that skipped the prefix check (reportgrid/validation.tenant_input_location)
could not read another tenant's object or the results bucket.

Credentials are cached per tenant until shortly before they expire: one AssumeRole per
tenant and hour per process, not one per report. AWS advises caching assumed credentials
to stay clear of STS throttling
(https://repost.aws/knowledge-center/iam-sts-throttling-error).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import boto3

from functions.clients import client
from reportgrid import resources
from reportgrid.settings import Settings

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client
    from mypy_boto3_sts.client import STSClient

# Renew this long before the credentials expire, so a download never starts with
# credentials about to lapse (a heavy input may take minutes).
RENEW_BEFORE_SECONDS: Final = 900
# AssumeRole's default and, for a role assumed by a role (role chaining, as here), its
# maximum session: one hour
# (https://docs.aws.amazon.com/IAM/latest/UserGuide/id_roles_use.html, "role chaining").
SESSION_SECONDS: Final = 3600
# Tenants whose clients are kept; the least recently used goes first.
MAX_CACHED_TENANTS: Final = 256


@dataclass(frozen=True, slots=True)
class Credentials:
    access_key_id: str
    secret_access_key: str
    session_token: str
    expires_at: float  # epoch seconds


# Builds an S3 client from assumed credentials (tests point it at the moto server).
S3Factory = Callable[[Credentials], "S3Client"]


class TenantInputs:
    """S3 clients that read as one tenant. Without a role (the local region: moto does not
    enforce IAM) every tenant gets the worker's own client; the worker's prefix check still
    applies."""

    def __init__(
        self,
        *,
        role_arn: str | None,
        sts: STSClient | None,
        make_s3: S3Factory,
        fallback_s3: S3Client,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if role_arn is not None and sts is None:
            raise ValueError("assuming the input reader role needs an STS client")
        self._role_arn = role_arn
        self._sts = sts
        self._make_s3 = make_s3
        self._fallback = fallback_s3
        self._clock = clock
        self._lock = threading.Lock()
        self._clients: OrderedDict[str, tuple[float, S3Client]] = OrderedDict()
        self.assumed = 0  # AssumeRole calls made (tests, logs)

    def s3_for(self, tenant: str) -> S3Client:
        if self._role_arn is None or self._sts is None:  # both or neither (__init__)
            return self._fallback
        with self._lock:
            cached = self._clients.get(tenant)
            if cached is not None and cached[0] - RENEW_BEFORE_SECONDS > self._clock():
                self._clients.move_to_end(tenant)
                return cached[1]
        credentials = self._assume(self._sts, self._role_arn, tenant)
        s3 = self._make_s3(credentials)
        with self._lock:
            self._clients[tenant] = (credentials.expires_at, s3)
            self._clients.move_to_end(tenant)
            while len(self._clients) > MAX_CACHED_TENANTS:
                self._clients.popitem(last=False)
        return s3

    def _assume(self, sts: STSClient, role_arn: str, tenant: str) -> Credentials:
        # The tag becomes aws:PrincipalTag/tenant in the session's requests; passing it
        # needs sts:TagSession in the role's trust policy
        # (https://docs.aws.amazon.com/IAM/latest/UserGuide/id_session-tags.html).
        response = sts.assume_role(
            RoleArn=role_arn,
            RoleSessionName=f"reportgrid-input-{tenant}"[:64],
            DurationSeconds=SESSION_SECONDS,
            Tags=[{"Key": resources.INPUT_TENANT_TAG, "Value": tenant}],
        )
        self.assumed += 1
        creds = response["Credentials"]
        return Credentials(
            access_key_id=creds["AccessKeyId"],
            secret_access_key=creds["SecretAccessKey"],
            session_token=creds["SessionToken"],
            expires_at=creds["Expiration"].timestamp(),
        )


def boto3_tenant_inputs(settings: Settings, fallback_s3: S3Client) -> TenantInputs:
    """The deployed wiring: STS and S3 clients from boto3, in the worker's region."""

    # boto3's default session is not thread-safe and the queue worker runs reports on
    # several threads: each client comes from a session of its own (boto3 docs, "Multithreading
    # or multiprocessing with clients"); finished clients are thread-safe.
    def make_s3(credentials: Credentials) -> S3Client:
        session = boto3.session.Session(
            aws_access_key_id=credentials.access_key_id,
            aws_secret_access_key=credentials.secret_access_key,
            aws_session_token=credentials.session_token,
        )
        return client("s3", settings, session=session)

    sts = (
        client("sts", settings, session=boto3.session.Session())
        if settings.input_reader_role_arn
        else None
    )
    return TenantInputs(
        role_arn=settings.input_reader_role_arn, sts=sts, make_s3=make_s3, fallback_s3=fallback_s3
    )
