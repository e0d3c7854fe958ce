"""Settings given as Secrets Manager ARNs (as the Lambda gets them) are fetched at start-up."""

from __future__ import annotations

import pytest

from reportgrid.errors import SettingsError
from reportgrid.local.bootstrap import client
from reportgrid.local.servers import MotoServer
from reportgrid.resources import ENV
from reportgrid.settings import load_settings


def test_id_secrets_and_redis_url_come_from_their_arns(moto_server: MotoServer) -> None:
    moto_server.reset()
    sm = client("secretsmanager", "eu-west-1", moto_server.endpoint_url)
    ids_arn = sm.create_secret(Name="ids", SecretString="a" * 20 + "," + "b" * 20)["ARN"]
    redis_arn = sm.create_secret(Name="redis", SecretString="rediss://u:p@cache:6379/0")["ARN"]

    settings = load_settings(
        {
            ENV.REGION: "eu-west-1",
            ENV.AWS_ENDPOINT_URL: moto_server.endpoint_url,
            ENV.ID_SECRETS_ARN: ids_arn,
            ENV.REDIS_URL_ARN: redis_arn,
        }
    )

    assert [s.get_secret_value() for s in settings.id_secrets] == ["a" * 20, "b" * 20]
    assert settings.redis_url == "rediss://u:p@cache:6379/0"


def test_a_value_given_directly_wins_over_its_arn(moto_server: MotoServer) -> None:
    settings = load_settings(
        {
            ENV.REGION: "eu-west-1",
            ENV.ID_SECRETS: "c" * 16,
            ENV.ID_SECRETS_ARN: "arn:aws:secretsmanager:eu-west-1:123456789012:secret:never-read",
        }
    )
    assert settings.id_secrets[0].get_secret_value() == "c" * 16


@pytest.mark.parametrize(
    ("arn", "message"),
    [
        ("not-an-arn", "is not a Secrets Manager secret ARN"),
        (
            "arn:aws:secretsmanager:eu-west-1:123456789012:secret:missing",
            "cannot read the secret (ResourceNotFoundException)",
        ),
    ],
)
def test_a_bad_or_missing_secret_names_the_variable(
    moto_server: MotoServer, arn: str, message: str
) -> None:
    moto_server.reset()
    with pytest.raises(SettingsError) as caught:
        load_settings(
            {
                ENV.REGION: "eu-west-1",
                ENV.AWS_ENDPOINT_URL: moto_server.endpoint_url,
                ENV.ID_SECRETS_ARN: arn,
            }
        )
    assert str(caught.value).startswith(f"{ENV.ID_SECRETS_ARN}: ")
    assert message in str(caught.value)
