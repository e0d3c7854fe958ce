"""Issue 19.3 and 19.5 (submit-time half): every kind's parameters are bounded by
construction, a huge document is refused before jsonschema sees it, and each per-kind,
per-path limit (reportgrid/limits.py) is checked at submit with a field violation that
names the field. Issue 19.1, the service's half: input.s3_uri stays inside the tenant's
prefix of an input bucket."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from google.protobuf import struct_pb2

from reportgrid import limits, resources
from reportgrid.engine.kinds import REGISTRY
from reportgrid.engine.registry import CostClass, KindSpec, UnboundedSchema
from reportgrid.errors import InvalidArgument
from reportgrid.v1 import reports_pb2 as pb
from reportgrid.validation import InputPolicy, tenant_input_location, validate_submit

TENANT = "tenant-b"
BUCKET = "tenant-inputs"
INPUTS = InputPolicy.of([BUCKET])
PREFIX = resources.tenant_input_prefix(TENANT)


def _nodes(schema: Any, where: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every sub-schema that describes a value, with its path. allOf, if/then/else and not
    only narrow what the schema around them admits, so they need no bounds of their own."""
    if not isinstance(schema, dict):
        return
    yield where, schema
    for name, sub in schema.get("properties", {}).items():
        yield from _nodes(sub, f"{where}.{name}")
    if "items" in schema:
        yield from _nodes(schema["items"], f"{where}[]")
    for keyword in ("anyOf", "oneOf"):
        for i, sub in enumerate(schema.get(keyword, [])):
            yield from _nodes(sub, f"{where}/{keyword}{i}")


def _types(schema: dict[str, Any]) -> set[str]:
    kind = schema.get("type", [])
    return set(kind) if isinstance(kind, list) else {kind}


@pytest.mark.parametrize("spec", list(REGISTRY), ids=lambda s: s.name)
def test_every_list_string_and_object_of_every_kind_is_bounded(spec: KindSpec) -> None:
    for where, node in _nodes(spec.params_schema, "params"):
        types = _types(node)
        if "array" in types:
            assert "maxItems" in node, f"{spec.name} {where}: an array without maxItems"
        if "string" in types and "enum" not in node and "const" not in node:
            assert "maxLength" in node, f"{spec.name} {where}: a string without maxLength"
        if "object" in types:
            assert node.get("additionalProperties") is False or "maxProperties" in node, (
                f"{spec.name} {where}: an open object"
            )
    assert spec.bounds.nodes <= limits.MAX_PARAMS_NODES
    assert spec.bounds.depth <= limits.MAX_PARAMS_DEPTH


def test_a_kind_with_an_unbounded_schema_is_refused_at_registration() -> None:
    with pytest.raises(UnboundedSchema, match=r"params\.names: an array must set maxItems"):
        KindSpec(
            name="open",
            version=1,
            description="",
            cost=CostClass.LIGHT,
            params_schema={
                "type": "object",
                "additionalProperties": False,
                "properties": {"names": {"type": "array", "items": {"enum": ["a"]}}},
            },
            output_formats=frozenset({pb.OUTPUT_FORMAT_CSV}),
            input_formats=frozenset(),
            generator=lambda request: None,
        )


def _request(kind: str, params: dict[str, Any], **input_: Any) -> pb.SubmitReportRequest:
    request = pb.SubmitReportRequest(kind=kind)
    request.params.update(params)
    if input_:
        request.input.CopyFrom(pb.ReportInput(**input_))
    return request


def _violations(request: pb.SubmitReportRequest) -> dict[str, str]:
    """Each bad field and what was said about it (several descriptions joined)."""
    with pytest.raises(InvalidArgument) as caught:
        validate_submit(request, REGISTRY, tenant=TENANT, inputs=INPUTS)
    found: dict[str, str] = {}
    for v in caught.value.violations:
        found[v.field] = f"{found[v.field]}; {v.description}" if v.field in found else v.description
    return found


def _csv(data: bytes, params: dict[str, Any] | None = None) -> pb.SubmitReportRequest:
    return _request(
        "summary",
        params or {"aggregates": [{"op": "count"}]},
        inline_data=data,
        format=pb.DATA_FORMAT_CSV,
    )


def test_the_hostile_aggregates_list_is_refused_in_bounded_time() -> None:
    """The reported request: ~240 KB of `"aggregates": [{}] * 60000` (jsonschema took
    ~10 s on it, on the edge's event loop)."""
    request = _csv(b"a\n1\n", {"aggregates": [{}] * 60_000})
    assert request.ByteSize() > 200_000
    started = time.perf_counter()
    found = _violations(request)
    elapsed = time.perf_counter() - started
    assert list(found) == ["params"]
    assert "more than" in found["params"]
    assert "summary" in found["params"]
    assert elapsed < 0.05, f"took {elapsed:.3f} s"


def test_nesting_deeper_than_the_schema_allows_is_refused_before_the_schema_runs() -> None:
    deep: Any = "x"
    for _ in range(50):
        deep = [deep]
    found = _violations(_csv(b"a\n1\n", {"aggregates": [{"op": "count"}], "group_by": deep}))
    assert list(found) == ["params"]
    assert "deeper than" in found["params"]


def test_the_largest_valid_document_is_accepted_and_a_bad_one_names_its_fields() -> None:
    """The bound is the schema's own: the biggest valid request passes the pre-check."""
    filters = [
        {"column": "a", "op": "in", "value": ["x"] * limits.MAX_IN_VALUES}
        for _ in range(limits.MAX_FILTERS)
    ]
    valid = _csv(b"a\n1\n", {"aggregates": [{"op": "count"}], "filters": filters})
    accepted = validate_submit(valid, REGISTRY, tenant=TENANT, inputs=INPUTS)
    assert accepted.params["filters"] == filters
    filters[3]["value"][7] = {}
    started = time.perf_counter()
    found = _violations(_csv(b"a\n1\n", {"aggregates": [{"op": "count"}], "filters": filters}))
    assert "params.filters[3].value[7]" in found
    assert time.perf_counter() - started < 1.0


@pytest.mark.parametrize(
    ("kind", "params", "field"),
    [
        ("synthetic", {"cpu_ms": limits.MAX_LIGHT_CPU_MS + 1}, "params.cpu_ms"),
        (
            "synthetic",
            {"output_bytes": limits.MAX_LIGHT_OUTPUT_BYTES + 1, "output_rows": 100_000},
            "params.output_bytes",
        ),
        ("synthetic", {"output_rows": limits.MAX_LIGHT_OUTPUT_ROWS + 1}, "params.output_rows"),
        ("synthetic_heavy", {"cpu_ms": limits.MAX_HEAVY_CPU_MS + 1}, "params.cpu_ms"),
        (
            "synthetic_heavy",
            {"output_bytes": limits.MAX_HEAVY_OUTPUT_BYTES + 1, "output_rows": 100_000},
            "params.output_bytes",
        ),
    ],
)
def test_synthetic_limits_per_path(kind: str, params: dict[str, Any], field: str) -> None:
    found = _violations(_request(kind, params))
    assert list(found) == [field]
    assert "maximum" in found[field]


def test_the_heavy_path_keeps_its_larger_bounds() -> None:
    # Each path's maxima pass as sent; the heavy ones are above the light ones.
    heavy = {
        "cpu_ms": limits.MAX_HEAVY_CPU_MS,
        "output_bytes": limits.MAX_HEAVY_OUTPUT_BYTES,
        "output_rows": limits.MAX_HEAVY_OUTPUT_ROWS,
    }
    light = {
        "cpu_ms": limits.MAX_LIGHT_CPU_MS,
        "output_bytes": limits.MAX_LIGHT_OUTPUT_BYTES,
        "output_rows": limits.MAX_LIGHT_OUTPUT_ROWS,
    }
    assert all(heavy[name] > light[name] for name in heavy)
    for kind, params in (("synthetic_heavy", heavy), ("synthetic", light)):
        valid = validate_submit(_request(kind, params), REGISTRY, tenant=TENANT, inputs=INPUTS)
        assert valid.kind.name == kind
        assert {name: valid.params[name] for name in params} == params


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        # The reported one: 120,000 empty column names in 240 KiB.
        (b"," * 120_000 + b"\n1\n", "columns"),
        (
            ",".join(f"c{i}" for i in range(limits.MAX_INLINE_COLUMNS + 1)).encode() + b"\n",
            "columns",
        ),
        (b"a,,b\n1,2,3\n", "empty column names"),
        (b"a;;b\n1;2;3\n", "empty column names"),  # DuckDB sniffs the delimiter too
        (b"a," + b"x" * (limits.MAX_COLUMN_NAME_CHARS + 1) + b"\n1,2\n", "column names over"),
        (b"a\n" + b"1\n" * (limits.MAX_INLINE_ROWS + 1), "rows"),
    ],
    ids=[
        "empty-names-flood",
        "too-many-columns",
        "empty-name",
        "empty-name-semicolons",
        "long-name",
        "too-many-rows",
    ],
)
def test_inline_csv_shape_limits(data: bytes, expected: str) -> None:
    found = _violations(_csv(data))
    assert list(found) == ["input.inline_data"]
    assert expected in found["input.inline_data"]


def test_inline_json_shape_limits() -> None:
    record = "{" + ",".join(f'"k{i}": 1' for i in range(limits.MAX_INLINE_COLUMNS + 1)) + "}"
    request = _request(
        "summary",
        {"aggregates": [{"op": "count"}]},
        inline_data=record.encode(),
        format=pb.DATA_FORMAT_JSON,
    )
    found = _violations(request)
    assert "columns" in found["input.inline_data"]
    empty = _request(
        "summary",
        {"aggregates": [{"op": "count"}]},
        inline_data=b'[{"": 1, "a": 2}]',
        format=pb.DATA_FORMAT_JSON,
    )
    assert "empty column names" in _violations(empty)["input.inline_data"]


@pytest.mark.parametrize(
    "request_",
    [
        _csv(b"region,amount\neu,10\nus,7\n"),
        _request(
            "summary",
            {"aggregates": [{"op": "count"}]},
            inline_data=b'{"a": 1}\n{"a": 2, "b": 3}\n',
            format=pb.DATA_FORMAT_JSON,
        ),
    ],
    ids=["csv", "json-lines"],
)
def test_ordinary_inline_input_passes(request_: pb.SubmitReportRequest) -> None:
    valid = validate_submit(request_, REGISTRY, tenant=TENANT, inputs=INPUTS)
    assert valid.kind.name == "summary"
    assert valid.params == {"aggregates": [{"op": "count"}]}


def _s3(uri: str) -> pb.SubmitReportRequest:
    return _request(
        "summary", {"aggregates": [{"op": "count"}]}, s3_uri=uri, format=pb.DATA_FORMAT_CSV
    )


@pytest.mark.parametrize("key", ["sales.csv", "2024/q1/sales.csv", "date=2024-01-01/part-0.csv"])
def test_an_input_in_the_tenants_own_prefix_is_accepted(key: str) -> None:
    uri = f"s3://{BUCKET}/{PREFIX}{key}"
    valid = validate_submit(_s3(uri), REGISTRY, tenant=TENANT, inputs=INPUTS)
    assert valid.kind.name == "summary"
    # The worker reads exactly that object, checked again against the task's tenant.
    assert tenant_input_location(uri, tenant=TENANT, inputs=INPUTS) == (BUCKET, PREFIX + key)


@pytest.mark.parametrize(
    "uri",
    [
        f"s3://{BUCKET}/tenants/tenant-a/sales.csv",  # another tenant's prefix
        f"s3://{BUCKET}/tenants/tenant-b2/sales.csv",  # a prefix that only starts like ours
        f"s3://{BUCKET}/sales.csv",  # outside every prefix
        f"s3://{BUCKET}/{PREFIX}../tenant-a/sales.csv",
        f"s3://{BUCKET}/{PREFIX}a//b.csv",
        f"s3://{BUCKET}/{PREFIX}",
        f"s3://{BUCKET}/{PREFIX}./a.csv",
        f"s3://{BUCKET}/{PREFIX}a b.csv",
        f"s3://{BUCKET}/{PREFIX}" + "k" * limits.MAX_S3_KEY_BYTES,
        f"s3://reportgrid-results-123456789012-us-east-1/{PREFIX}x.csv",  # not an input bucket
        "s3://other-bucket/tenants/tenant-b/sales.csv",
        "http://tenant-inputs/tenants/tenant-b/sales.csv",
    ],
)
def test_an_input_outside_the_tenants_prefix_is_refused_the_same_way(uri: str) -> None:
    found = _violations(_s3(uri))
    assert list(found) == ["input.s3_uri"]
    assert found["input.s3_uri"] == _violations(_s3("s3://other-bucket/x"))["input.s3_uri"]
    assert f"s3://{BUCKET}/{PREFIX}" in found["input.s3_uri"]
    assert "tenant-a" not in found["input.s3_uri"]


def test_without_input_buckets_no_s3_input_is_accepted() -> None:
    request = _s3(f"s3://{BUCKET}/{PREFIX}a.csv")
    with pytest.raises(InvalidArgument) as caught:
        validate_submit(request, REGISTRY, tenant=TENANT, inputs=InputPolicy.of([]))
    assert "no input buckets" in caught.value.violations[0].description


def test_the_params_walk_stops_at_the_bound() -> None:
    """A container's size is counted before it is walked: a list of a million entries costs
    what a list of one does."""
    huge = struct_pb2.Struct()
    huge.update({"aggregates": [0] * 1_000_000})
    spec = REGISTRY.get("summary")
    started = time.perf_counter()
    with pytest.raises(InvalidArgument):
        spec.check_params_size(huge)
    assert time.perf_counter() - started < 0.01
