"""The compiled fast path of parameter validation agrees with jsonschema, the reference,
on every kind's schema: it may only ever say "valid" where jsonschema does."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reportgrid.engine.kinds import REGISTRY
from reportgrid.engine.registry import CostClass, KindSpec
from reportgrid.errors import InvalidArgument
from reportgrid.v1 import reports_pb2 as pb

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 100_000),
    st.floats(-1e6, 1e6, allow_nan=False),
    st.sampled_from(
        [
            "region",
            "amount",
            "sum",
            "count",
            "p90",
            "percentile",
            "day",
            "ts",
            "=",
            ">=",
            "in",
            "contains",
            "",
            "x" * 300,
        ]
    ),
)
# JSON-like values biased towards the shapes our schemas take.
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(
            st.sampled_from(
                [
                    "op",
                    "column",
                    "value",
                    "as",
                    "descending",
                    "group_by",
                    "aggregates",
                    "filters",
                    "sort",
                    "top_n",
                    "cpu_ms",
                    "seed",
                    "output_rows",
                    "output_bytes",
                    "interval",
                    "timestamp_column",
                    "extra",
                ]
            ),
            inner,
            max_size=5,
        ),
    ),
    max_leaves=12,
)
PARAMS = st.dictionaries(
    st.sampled_from(
        [
            "group_by",
            "aggregates",
            "filters",
            "sort",
            "top_n",
            "cpu_ms",
            "output_rows",
            "output_bytes",
            "seed",
            "interval",
            "timestamp_column",
            "unknown",
        ]
    ),
    VALUES,
    max_size=6,
)


@pytest.mark.parametrize("spec", list(REGISTRY), ids=lambda s: s.name)
def test_every_builtin_kind_has_the_fast_path(spec: KindSpec) -> None:
    assert spec._fast is not None


@pytest.mark.parametrize("spec", list(REGISTRY), ids=lambda s: s.name)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(params=PARAMS)
def test_fast_path_never_accepts_what_jsonschema_rejects(
    spec: KindSpec, params: dict[str, Any]
) -> None:
    reference = spec._validator.is_valid(params)
    assert spec._accepts_fast(params) == reference


def test_a_schema_with_keywords_beyond_draft_7_is_validated_by_jsonschema_alone() -> None:
    spec = KindSpec(
        name="t",
        version=1,
        description="",
        cost=CostClass.LIGHT,
        params_schema={
            "type": "object",
            "additionalProperties": False,
            "prefixItems": [{"type": "string"}],
            "properties": {"n": {"type": "integer"}},
        },
        output_formats=frozenset({pb.OUTPUT_FORMAT_CSV}),
        input_formats=frozenset(),
        generator=lambda request: None,
    )
    assert spec._fast is None
    with pytest.raises(InvalidArgument) as caught:
        spec.validate_params({"n": "one"})
    assert caught.value.violations[0].field == "params.n"
