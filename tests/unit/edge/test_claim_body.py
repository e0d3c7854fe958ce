"""The lean claim's PutItem body, written as text, is the JSON of exactly what the
aiobotocore path sends (grpc_edge/idempotency.py put_claim_body)."""

from __future__ import annotations

import json

from grpc_edge import idempotency
from grpc_edge.idempotency import Claim, claim_item, claim_key, put_claim_body, put_claim_head


def test_the_text_body_is_the_botocore_calls_parameters() -> None:
    # Characters JSON must escape, where a tenant or table could bring them
    pk = claim_key('acme"\\\u00e9', "key-1")
    claim = Claim("rpt_abc", "j1:" + "f" * 64, 1796220278569, "eu-west-1", 1796306678)
    body = put_claim_body(put_claim_head('reports"t'), pk, claim, now=1796220300)
    assert json.loads(body) == {
        "TableName": 'reports"t',
        "Item": claim_item(pk, claim),
        "ConditionExpression": idempotency._CONDITION,
        "ExpressionAttributeNames": idempotency._NAMES,
        "ExpressionAttributeValues": {":now": {"N": "1796220300"}},
        "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
    }
