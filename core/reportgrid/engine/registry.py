"""The registry of report kinds: what each kind is called, what parameters it takes (a JSON
Schema), where it runs, which formats it reads and writes, and the generator that makes it.

The edge validates every SubmitReport against this registry, and the workers validate again
before they run (a task may have been written by an older or newer edge). Adding a kind is
one module that builds a `KindSpec` and one `register(...)` call in
`reportgrid/engine/kinds/__init__.py`.
"""

from __future__ import annotations

import enum
import itertools
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import fastjsonschema
from google.protobuf import struct_pb2
from jsonschema import Draft202012Validator

from reportgrid import limits
from reportgrid.errors import FieldViolation, InvalidArgument
from reportgrid.v1 import reports_pb2 as pb

# Every output format the engine's writers produce, and every input format its readers take.
ALL_OUTPUT_FORMATS: frozenset[pb.OutputFormat.ValueType] = frozenset(
    {
        pb.OUTPUT_FORMAT_CSV,
        pb.OUTPUT_FORMAT_JSON,
        pb.OUTPUT_FORMAT_PARQUET,
        pb.OUTPUT_FORMAT_MARKDOWN,
    }
)
TABULAR_INPUT_FORMATS: frozenset[pb.DataFormat.ValueType] = frozenset(
    {pb.DATA_FORMAT_CSV, pb.DATA_FORMAT_JSON, pb.DATA_FORMAT_PARQUET}
)


# Keywords whose meaning is the same in draft 7 (what fastjsonschema compiles) and in
# draft 2020-12 (what our schemas declare). A schema using anything else is validated by
# jsonschema alone.
_FAST_KEYWORDS = frozenset(
    {
        "$schema",
        "title",
        "description",
        "default",
        "type",
        "enum",
        "const",
        "properties",
        "required",
        "additionalProperties",
        "items",
        "minItems",
        "maxItems",
        "uniqueItems",
        "minLength",
        "maxLength",
        "pattern",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "multipleOf",
        "allOf",
        "anyOf",
        "oneOf",
        "not",
        "if",
        "then",
        "else",
    }
)
_DRAFT7 = "http://json-schema.org/draft-07/schema#"


def _schema_keywords(node: object) -> set[str]:
    """Keywords used anywhere in a schema (property names under `properties` excluded)."""
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            found.add(key)
            children = (
                value.values() if key == "properties" and isinstance(value, dict) else [value]
            )
            for child in children:
                found |= _schema_keywords(child)
    elif isinstance(node, list):
        for child in node:
            found |= _schema_keywords(child)
    return found


def _fast_validator(schema: Mapping[str, Any]) -> Callable[[Any], Any] | None:
    """A compiled validator for the accept path, when the schema allows it. On the edge's
    hot path jsonschema's interpreter costs about as much as the rest of a Submit."""
    if not _schema_keywords(schema) <= _FAST_KEYWORDS:
        return None
    compiled: Callable[[Any], Any] = fastjsonschema.compile({**schema, "$schema": _DRAFT7})
    return compiled


class UnboundedSchema(ValueError):
    """A kind's schema lets a request grow without bound (a list without maxItems, a string
    without maxLength, an open object): validating it could take any time."""


@dataclass(frozen=True, slots=True)
class SchemaBounds:
    """The largest document a schema accepts: its JSON values (every object, array and
    scalar counts one) and its nesting depth (the top object is depth 1)."""

    nodes: int
    depth: int


def schema_bounds(schema: Mapping[str, Any], where: str = "params") -> SchemaBounds:
    """The bounds of `schema`, or UnboundedSchema naming the first unbounded place.
    `allOf`/`if`/`then`/`else` only constrain what `properties` already declares, so the
    shape comes from `type`, `properties`, `items`, `enum`/`const` and `anyOf`/`oneOf`."""
    branches = schema.get("anyOf") or schema.get("oneOf")
    if branches:
        found = [schema_bounds(branch, where) for branch in branches]
        return SchemaBounds(max(b.nodes for b in found), max(b.depth for b in found))
    if "enum" in schema or "const" in schema:
        return SchemaBounds(1, 1)
    kind = schema.get("type")
    if isinstance(kind, list):  # each type's keywords apply to it alone
        found = [schema_bounds({**schema, "type": one}, where) for one in kind]
        return SchemaBounds(max(b.nodes for b in found), max(b.depth for b in found))
    if kind == "object":
        if schema.get("additionalProperties", True) is not False:
            raise UnboundedSchema(f"{where}: an object must set additionalProperties false")
        props = [schema_bounds(v, f"{where}.{k}") for k, v in schema.get("properties", {}).items()]
        return SchemaBounds(
            1 + sum(p.nodes for p in props), 1 + max((p.depth for p in props), default=0)
        )
    if kind == "array":
        if "maxItems" not in schema or "items" not in schema:
            raise UnboundedSchema(f"{where}: an array must set maxItems and items")
        item = schema_bounds(schema["items"], f"{where}[]")
        return SchemaBounds(1 + schema["maxItems"] * item.nodes, 1 + item.depth)
    if kind == "string" and "maxLength" not in schema:
        raise UnboundedSchema(f"{where}: a string must set maxLength")
    if kind in ("string", "integer", "number", "boolean", "null"):
        return SchemaBounds(1, 1)
    raise UnboundedSchema(f"{where}: give every value a type (or enum/const)")


class _SizedValues(Protocol):
    def __len__(self) -> int: ...
    def __iter__(self) -> Iterator[struct_pb2.Value]: ...


def struct_exceeds(params: struct_pb2.Struct, *, nodes: int, depth: int) -> str | None:
    """What makes `params` larger than the bounds, or None. It walks at most `nodes`
    values and stops there, so a hostile document costs O(bound), not O(its size)."""
    too_many = f"holds more than {nodes} values"
    seen = 1 + len(params.fields)
    if seen > nodes:
        return too_many
    # (a container's values, the container's depth); each container's size is counted
    # (len is O(1)) before it is walked, so one huge list is refused without walking it.
    stack: list[tuple[_SizedValues, int]] = [(params.fields.values(), 1)]
    while stack:
        values, level = stack.pop()
        for value in values:
            which = value.WhichOneof("kind")
            if which not in {"struct_value", "list_value"}:
                continue
            if level + 1 > depth:
                return f"nests deeper than {depth} levels"
            children: _SizedValues = (
                value.struct_value.fields.values()
                if which == "struct_value"
                else value.list_value.values
            )
            seen += len(children)
            if seen > nodes:
                return too_many
            stack.append((children, level + 1))
    return None


class SlowValidation(Exception):
    """validate_params(defer_slow=True) found the request invalid and naming each bad
    field needs the slow validator: rerun it where a slow call blocks no one."""


class CostClass(enum.Enum):
    LIGHT = pb.COST_CLASS_LIGHT  # run by the stream (Lambda) worker
    HEAVY = pb.COST_CLASS_HEAVY  # forwarded to the queue (Fargate) worker


class Generator(Protocol):
    """Makes a report. The engine package defines the request/result types it passes."""

    def __call__(self, request: Any, /) -> Any: ...


@dataclass(frozen=True)
class KindSpec:
    """One report kind."""

    name: str
    version: int
    description: str
    params_schema: Mapping[str, Any]
    cost: CostClass
    output_formats: frozenset[pb.OutputFormat.ValueType]
    # Formats the kind reads from `input`; empty when it reads no input.
    input_formats: frozenset[pb.DataFormat.ValueType]
    generator: Generator
    # May the kind read its input from S3? (Inline input is always allowed when it reads
    # input at all.)
    accepts_s3_input: bool = True
    # Cross-field checks the schema cannot express; return violations, raise nothing.
    extra_checks: Callable[[Mapping[str, Any]], Iterable[FieldViolation]] | None = None
    _validator: Draft202012Validator = field(init=False, repr=False, compare=False)
    _fast: Callable[[Any], Any] | None = field(init=False, repr=False, compare=False)
    bounds: SchemaBounds = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        Draft202012Validator.check_schema(self.params_schema)
        # Bounded by construction: validation of an accepted document is O(small), and
        # check_params_size can reject anything larger before the schema runs.
        bounds = schema_bounds(self.params_schema)
        if bounds.nodes > limits.MAX_PARAMS_NODES or bounds.depth > limits.MAX_PARAMS_DEPTH:
            raise UnboundedSchema(
                f"kind {self.name!r} accepts {bounds.nodes} values {bounds.depth} deep; the "
                f"limit is {limits.MAX_PARAMS_NODES} values {limits.MAX_PARAMS_DEPTH} deep"
            )
        object.__setattr__(self, "bounds", bounds)
        object.__setattr__(self, "_validator", Draft202012Validator(self.params_schema))
        object.__setattr__(self, "_fast", _fast_validator(self.params_schema))

    @property
    def reads_input(self) -> bool:
        return bool(self.input_formats)

    def cost_for(self, input_source: str | None) -> CostClass:
        """Where a request runs. Input from S3 (up to gigabytes, downloaded and scanned) is
        always heavy; otherwise the kind's own class decides. `input_source` is the
        ReportInput oneof name: "inline_data", "s3_uri" or None."""
        return CostClass.HEAVY if input_source == "s3_uri" else self.cost

    def check_params_size(self, params: struct_pb2.Struct, *, prefix: str = "params") -> None:
        """Reject, in O(bound) work, parameters larger than any this kind accepts: run it
        before converting or validating them (jsonschema takes seconds on a list of 60,000
        items, and the edge validates on its event loop)."""
        problem = struct_exceeds(params, nodes=self.bounds.nodes, depth=self.bounds.depth)
        if problem is not None:
            raise InvalidArgument.field(
                prefix,
                f"{problem}; {self.name!r} takes at most {self.bounds.nodes} values "
                f"{self.bounds.depth} levels deep (see ListReportKinds for its schema)",
            )

    def validate_params(
        self, params: Mapping[str, Any], *, prefix: str = "params", defer_slow: bool = False
    ) -> None:
        """Raise InvalidArgument with one violation per bad parameter, named by its path
        ("params.aggregates[1].op"). With `defer_slow`, raise SlowValidation instead of
        running jsonschema (tens of ms on a large bad document): the edge then reruns the
        validation off its event loop."""
        if self._fast is not None and self._accepts_fast(params):
            violations: list[FieldViolation] = []
        elif defer_slow:
            raise SlowValidation(self.name)
        else:
            # jsonschema is the reference: it decides, and names each bad field precisely.
            # iter_errors is lazy: stop after a bounded number of errors.
            errors = itertools.islice(self._validator.iter_errors(params), limits.MAX_SCHEMA_ERRORS)
            violations = [
                FieldViolation(_path(prefix, error.absolute_path), _short(error.message))
                for error in sorted(errors, key=_error_order)
            ]
        if not violations and self.extra_checks is not None:
            violations = list(self.extra_checks(params))
        if violations:
            raise InvalidArgument(violations)

    def _accepts_fast(self, params: Mapping[str, Any]) -> bool:
        assert self._fast is not None
        try:
            self._fast(params)
        except fastjsonschema.JsonSchemaException:
            return False
        return True

    def to_proto(self) -> pb.ReportKind:
        return pb.ReportKind(
            name=self.name,
            version=self.version,
            description=self.description,
            params_schema=json.dumps(self.params_schema, sort_keys=True),
            output_formats=sorted(self.output_formats),
            cost_class=self.cost.value,
            input_formats=sorted(self.input_formats),
        )


def _short(message: str) -> str:
    """jsonschema quotes the offending value in full ("[{}, {}, ...] is too long")."""
    limit = 200
    return message if len(message) <= limit else message[: limit - 1] + "…"


def _error_order(error: Any) -> tuple[str, str]:
    return (".".join(map(str, error.absolute_path)), error.message)


def _path(prefix: str, parts: Iterable[str | int]) -> str:
    path = prefix
    for part in parts:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


class Registry:
    """Kinds by name. The process-wide one is `reportgrid.engine.kinds.REGISTRY`."""

    def __init__(self) -> None:
        self._kinds: dict[str, KindSpec] = {}

    def register(self, spec: KindSpec) -> KindSpec:
        if spec.name in self._kinds:
            raise ValueError(f"report kind {spec.name!r} is registered twice")
        self._kinds[spec.name] = spec
        return spec

    def get(self, name: str, *, field: str = "kind") -> KindSpec:
        """The kind, or InvalidArgument naming the known kinds."""
        spec = self._kinds.get(name)
        if spec is None:
            known = ", ".join(sorted(self._kinds)) or "none"
            what = "is required" if not name else f"{name!r} is not a report kind"
            raise InvalidArgument.field(field, f"{what}; known kinds: {known}")
        return spec

    def __contains__(self, name: object) -> bool:
        return name in self._kinds

    def __iter__(self) -> Any:
        return iter(sorted(self._kinds.values(), key=lambda s: s.name))

    def to_proto(self) -> pb.ListReportKindsResponse:
        return pb.ListReportKindsResponse(kinds=[spec.to_proto() for spec in self])
