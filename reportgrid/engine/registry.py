"""The registry of report kinds: what each kind is called, what parameters it takes (a JSON
Schema), where it runs, which formats it reads and writes, and the generator that makes it.

The edge validates every SubmitReport against this registry, and the workers validate again
before they run (a task may have been written by an older or newer edge). Adding a kind is
one module that builds a `KindSpec` and one `register(...)` call in
`reportgrid/engine/kinds/__init__.py`.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import fastjsonschema
from jsonschema import Draft202012Validator

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

    def __post_init__(self) -> None:
        Draft202012Validator.check_schema(self.params_schema)
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

    def validate_params(self, params: Mapping[str, Any], *, prefix: str = "params") -> None:
        """Raise InvalidArgument with one violation per bad parameter, named by its path
        ("params.aggregates[1].op")."""
        if self._fast is not None and self._accepts_fast(params):
            violations: list[FieldViolation] = []
        else:
            # jsonschema is the reference: it decides, and names each bad field precisely.
            violations = [
                FieldViolation(_path(prefix, error.absolute_path), error.message)
                for error in sorted(self._validator.iter_errors(params), key=_error_order)
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
