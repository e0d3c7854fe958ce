"""Which CloudWatch metrics the templates read and which metrics the processes emitted.

Read side: every metric an `AWS::CloudWatch::Alarm` (its single metric, or the `MetricStat`
entries of its metric math) or an `AWS::CloudWatch::Dashboard` widget (the `metrics` arrays
of its DashboardBody) reads, from a synthesized template.

Emit side: the CloudWatch embedded metric format (EMF) documents in the processes' logs,
expanded to the metrics CloudWatch would extract from them: one per metric name and
declared dimension set (docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/
CloudWatch_Embedded_Metric_Format_Specification.html).

A metric is its namespace, name and exact dimensions: CloudWatch treats each dimension
combination as a separate metric, so an alarm on {service} is not fed by an emission with
{service, Method} unless the document also declares the {service} set.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from reportgrid import resources

# Namespaces whose metrics AWS services publish themselves: nothing of ours emits them.
AWS_NAMESPACE_PREFIXES: Final = ("AWS/", "ECS/ContainerInsights")
# A dashboard metric array may repeat the previous array's value at a position with ".".
_SAME_AS_ABOVE: Final = "."


@dataclass(frozen=True, slots=True, order=True)
class MetricKey:
    """What CloudWatch identifies a metric by."""

    namespace: str
    name: str
    dimensions: tuple[tuple[str, str], ...]  # (name, value), sorted

    @classmethod
    def of(cls, namespace: str, name: str, dimensions: Mapping[str, str]) -> MetricKey:
        return cls(namespace, name, tuple(sorted(dimensions.items())))

    @property
    def ours(self) -> bool:
        return self.namespace == resources.METRICS_NAMESPACE

    @property
    def aws(self) -> bool:
        return self.namespace.startswith(AWS_NAMESPACE_PREFIXES)

    def __str__(self) -> str:
        dims = ", ".join(f"{k}={v}" for k, v in self.dimensions)
        return f"{self.namespace}/{self.name}{{{dims}}}"


@dataclass(frozen=True, slots=True)
class MetricRead:
    """One metric one alarm or dashboard widget reads."""

    key: MetricKey
    stack: str
    reader: str  # e.g. "alarm MonitoringEdgeFaults1F0A2B3C", "dashboard X widget 'Edge requests'"

    def __str__(self) -> str:
        return f"{self.key} (read by {self.stack} {self.reader})"


# -- the templates ------------------------------------------------------------------------


def resolve(value: Any, region: str) -> Any:
    """`value` with Fn::Join evaluated and AWS::Region filled in; any other intrinsic
    becomes a placeholder string without quotes or backslashes, so a DashboardBody (JSON
    text joined around intrinsics) still parses."""
    if isinstance(value, list):
        return [resolve(v, region) for v in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1:
        ((key, arg),) = value.items()
        if key == "Ref" and arg == "AWS::Region":
            return region
        if key == "Fn::Join":
            separator, parts = arg
            return separator.join(_text(resolve(p, region)) for p in parts)
        if key == "Ref" or key.startswith("Fn::"):
            return f"<{key}:{_placeholder(arg)}>"
    return {k: resolve(v, region) for k, v in value.items()}


def _text(value: Any) -> str:
    return value if isinstance(value, str) else f"<{_placeholder(value)}>"


def _placeholder(arg: Any) -> str:
    text = arg if isinstance(arg, str) else json.dumps(arg, separators=(",", ":"))
    return text.replace('"', "").replace("\\", "")


def _dimensions(entries: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    return {str(d["Name"]): str(d["Value"]) for d in entries}


def alarm_metrics(
    logical_id: str, properties: Mapping[str, Any], *, stack: str, region: str
) -> list[MetricRead]:
    """The metrics one AWS::CloudWatch::Alarm reads: its metric, or each MetricStat of its
    metric math (the expressions only combine those)."""
    props = resolve(dict(properties), region)
    reader = f"alarm {logical_id}"
    if "MetricName" in props:
        key = MetricKey.of(
            props["Namespace"], props["MetricName"], _dimensions(props.get("Dimensions", []))
        )
        return [MetricRead(key, stack, reader)]
    found = []
    for query in props.get("Metrics", []):
        if "MetricStat" in query:
            metric = query["MetricStat"]["Metric"]
            key = MetricKey.of(
                metric["Namespace"], metric["MetricName"], _dimensions(metric.get("Dimensions", []))
            )
            found.append(MetricRead(key, stack, f"{reader} ({query['Id']})"))
    return found


def dashboard_metrics(
    logical_id: str, properties: Mapping[str, Any], *, stack: str, region: str
) -> list[MetricRead]:
    """The metrics the widgets of one AWS::CloudWatch::Dashboard graph. A metric array is
    [namespace, name, dim1, value1, ..., {options}]; an array of only {options} is a math
    expression over the others."""
    body = json.loads(resolve(properties["DashboardBody"], region))
    found = []
    for widget in body.get("widgets", []):
        widget_props = widget.get("properties", {})
        title = widget_props.get("title", widget.get("type", "widget"))
        previous: list[Any] = []
        for entry in widget_props.get("metrics", []):
            parts = [p for p in entry if not isinstance(p, dict)]
            parts = [
                previous[i] if p == _SAME_AS_ABOVE and i < len(previous) else p
                for i, p in enumerate(parts)
            ]
            if not parts:
                continue  # a math expression
            previous = parts
            namespace, name, *dims = parts
            if len(dims) % 2:
                raise ValueError(f"{logical_id} widget {title!r}: odd dimension list {entry}")
            key = MetricKey.of(namespace, name, dict(zip(dims[::2], dims[1::2], strict=True)))
            found.append(MetricRead(key, stack, f"dashboard {logical_id} widget {title!r}"))
    return found


def template_metrics(template: Mapping[str, Any], *, stack: str, region: str) -> list[MetricRead]:
    """Every metric the template's alarms and dashboards read."""
    found: list[MetricRead] = []
    for logical_id, resource in template.get("Resources", {}).items():
        kind, props = resource["Type"], resource.get("Properties", {})
        if kind == "AWS::CloudWatch::Alarm":
            found.extend(alarm_metrics(logical_id, props, stack=stack, region=region))
        elif kind == "AWS::CloudWatch::Dashboard":
            found.extend(dashboard_metrics(logical_id, props, stack=stack, region=region))
    return found


def assembly_metrics(outdir: Path) -> list[MetricRead]:
    """Every metric the alarms and dashboards of a cloud assembly (cdk.out) read: each
    stack's template from manifest.json, in the stack's region."""
    manifest = json.loads((outdir / "manifest.json").read_text())
    found: list[MetricRead] = []
    for name, artifact in manifest["artifacts"].items():
        if artifact["type"] != "aws:cloudformation:stack":
            continue
        region = artifact["environment"].rsplit("/", 1)[-1]
        template = json.loads((outdir / artifact["properties"]["templateFile"]).read_text())
        found.extend(template_metrics(template, stack=name, region=region))
    return found


# -- the logs -----------------------------------------------------------------------------


def emf_documents(lines: Iterable[str]) -> Iterator[dict[str, Any]]:
    """The EMF documents among log lines. CloudWatch takes one only when the whole log
    event is the JSON object, with nothing before or after it."""
    for line in lines:
        text = line.strip()
        if not text.startswith("{"):
            continue
        try:
            document = json.loads(text)
        except ValueError:
            continue
        metadata = document.get("_aws") if isinstance(document, dict) else None
        if isinstance(metadata, dict) and "CloudWatchMetrics" in metadata:
            yield document


def _is_value(value: Any) -> bool:
    def number(v: Any) -> bool:
        return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)

    if isinstance(value, list):
        return bool(value) and all(number(v) for v in value)
    return number(value)


def extracted(document: Mapping[str, Any]) -> set[MetricKey]:
    """The metrics CloudWatch extracts from one EMF document: each metric of a directive
    whose value is on the root node, once per dimension set whose keys are all string
    members of the root node."""
    found: set[MetricKey] = set()
    for directive in document["_aws"]["CloudWatchMetrics"]:
        namespace = directive.get("Namespace")
        if not isinstance(namespace, str):
            continue
        names = [
            m["Name"]
            for m in directive.get("Metrics", [])
            if _is_value(document.get(m.get("Name")))
        ]
        for dimension_set in directive.get("Dimensions", []):
            values = {k: v for k in dimension_set if isinstance(v := document.get(k), str)}
            if len(values) != len(dimension_set):
                continue  # CloudWatch rejects the set: a dimension without a string value
            found.update(MetricKey.of(namespace, name, values) for name in names)
    return found


def emitted_in(lines: Iterable[str]) -> set[MetricKey]:
    found: set[MetricKey] = set()
    for document in emf_documents(lines):
        found |= extracted(document)
    return found


def log_files(directory: Path) -> dict[str, Path]:
    """Every *.log under a directory (each process's, and each Lambda function's in a
    folder of its own), by its path relative to the directory without ".log"."""
    return {
        path.relative_to(directory).with_suffix("").as_posix(): path
        for path in sorted(directory.rglob("*.log"))
    }


def emitted_by_log(directory: Path) -> dict[MetricKey, set[str]]:
    """Each metric emitted in the logs under a directory, and which logs emitted it."""
    found: dict[MetricKey, set[str]] = {}
    for name, path in log_files(directory).items():
        with path.open(encoding="utf-8", errors="replace") as lines:
            for key in emitted_in(lines):
                found.setdefault(key, set()).add(name)
    return found
