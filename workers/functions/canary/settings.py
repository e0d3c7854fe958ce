"""The canary's environment, validated once per execution environment: which listener to
call and how (TLS and the name its certificate is for), where its API key is, which region
must have run the report, and how long a probe may take."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Annotated, Final

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from reportgrid.errors import SettingsError

# The variables the stack sets (cdk/constructs/canary_function.py names the same; a test
# checks both).
ENDPOINT: Final = "REPORTGRID_CANARY_ENDPOINT"
TLS: Final = "REPORTGRID_CANARY_TLS"
TLS_NAME: Final = "REPORTGRID_CANARY_TLS_NAME"
API_KEY_SECRET_ARN: Final = "REPORTGRID_CANARY_API_KEY_ARN"  # noqa: S105 -- a name
DEADLINE_SECONDS: Final = "REPORTGRID_CANARY_DEADLINE_SECONDS"
REGION: Final = "REPORTGRID_REGION"  # as reportgrid.resources.ENV.REGION
# The Lambda's timeout is 60 s: a probe stops well before it, so the failure is reported.
DEFAULT_DEADLINE_SECONDS: Final = 40.0


class CanarySettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=False)

    endpoint: Annotated[str, Field(min_length=1, validation_alias=ENDPOINT)]
    api_key_secret_arn: Annotated[str, Field(min_length=1, validation_alias=API_KEY_SECRET_ARN)]
    region: Annotated[str, Field(min_length=1, validation_alias=REGION)]
    tls: bool = Field(default=True, validation_alias=TLS)
    # The name on the listener's certificate, when the endpoint is another name for it
    # (the region's load balancer, whose certificate is for the service's domain).
    tls_name: str | None = Field(default=None, validation_alias=TLS_NAME)
    deadline_seconds: float = Field(
        default=DEFAULT_DEADLINE_SECONDS, gt=0, le=55, validation_alias=DEADLINE_SECONDS
    )


def load_settings(environ: Mapping[str, str] | None = None) -> CanarySettings:
    """From the environment; a missing or bad variable is a SettingsError naming it."""
    try:
        return CanarySettings.model_validate(dict(os.environ if environ is None else environ))
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in e['loc'])}: {e['msg']}" for e in err.errors()
        )
        raise SettingsError(f"canary settings: {problems}") from None
