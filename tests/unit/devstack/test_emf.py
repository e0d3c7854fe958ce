"""The metric readers of reportgrid.local.emf: what the templates' alarms and dashboards
read, and what CloudWatch would extract from EMF log lines (CloudWatch_Embedded_Metric_
Format_Specification: a metric per name and declared dimension set, values on the root)."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import MetricUnit

from grpc_edge.metrics import EdgeMetrics
from reportgrid import resources
from reportgrid.local import emf

NS = resources.METRICS_NAMESPACE
SERVICE = resources.METRIC_SERVICE_DIMENSION


def key(name: str, **dimensions: str) -> emf.MetricKey:
    return emf.MetricKey.of(NS, name, dimensions)


def document(dimensions: list[list[str]], **root: Any) -> str:
    metrics = [{"Name": k, "Unit": "Count"} for k, v in root.items() if not isinstance(v, str)]
    return json.dumps(
        {
            "_aws": {
                "Timestamp": 0,
                "CloudWatchMetrics": [
                    {"Namespace": NS, "Dimensions": dimensions, "Metrics": metrics}
                ],
            },
            **root,
        }
    )


# -- what CloudWatch extracts from EMF ---------------------------------------------------


def test_each_declared_dimension_set_is_its_own_metric() -> None:
    line = document([[SERVICE], [SERVICE, "Method"]], service="edge", Method="Get", Requests=3)
    assert emf.emitted_in([line]) == {
        key("Requests", service="edge"),
        key("Requests", service="edge", Method="Get"),
    }


def test_a_set_with_more_dimensions_does_not_feed_the_smaller_one() -> None:
    line = document([[SERVICE, "Method"]], service="edge", Method="Get", Requests=3)
    emitted = emf.emitted_in([line])
    assert key("Requests", service="edge") not in emitted
    assert emitted == {key("Requests", service="edge", Method="Get")}


def test_dimension_order_does_not_matter() -> None:
    assert key("R", a="1", b="2") == emf.MetricKey.of(NS, "R", {"b": "2", "a": "1"})


@pytest.mark.parametrize(
    "line",
    [
        # The dimension has no value on the root node: CloudWatch rejects the set.
        document([[SERVICE]], Requests=1),
        # A dimension value that is not a string.
        document([[SERVICE]], service=7, Requests=1),
        # The metric's value is missing or not a number.
        json.dumps(
            {
                "_aws": {
                    "CloudWatchMetrics": [
                        {"Namespace": NS, "Dimensions": [[SERVICE]], "Metrics": [{"Name": "X"}]}
                    ]
                },
                "service": "edge",
            }
        ),
        document([[SERVICE]], service="edge", Requests=[]),
        # Not the whole log event: CloudWatch only reads a line that is the JSON object.
        "edge   | " + document([[SERVICE]], service="edge", Requests=1),
        # Plain JSON logs.
        json.dumps({"level": "INFO", "message": "hello", "_aws": "no"}),
        "not json {",
    ],
)
def test_what_cloudwatch_would_not_extract(line: str) -> None:
    assert emf.emitted_in([line]) == set()


def test_the_edge_emits_its_rollup_under_the_service_set_alone() -> None:
    # Given the real edge metrics after two calls
    metrics = EdgeMetrics()
    metrics.record("GetReport", "OK", 0.01)
    metrics.record("GetReport", "UNAVAILABLE", 0.02)
    out = io.StringIO()
    metrics.flush(out)
    # Then the dashboards' {service} metrics are among what CloudWatch extracts
    emitted = emf.emitted_in(out.getvalue().splitlines())
    edge = resources.SERVICE_EDGE
    assert {
        key(resources.METRIC.REQUESTS, service=edge),
        key(resources.METRIC.REQUEST_LATENCY, service=edge),
        key(resources.METRIC.REQUEST_FAULTS, service=edge),
        key(resources.METRIC.REQUESTS, service=edge, Method="GetReport", Code="UNAVAILABLE"),
    } <= emitted
    # and the per-method latency is only a per-method metric
    assert key(resources.METRIC.REQUEST_LATENCY, service=edge, Method="GetReport") in emitted


def test_powertools_metrics_are_read_from_stdout(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED", raising=False)
    monkeypatch.delenv("POWERTOOLS_DEV", raising=False)
    metrics = Metrics(namespace=NS, service=resources.SERVICE_QUEUE_WORKER)
    metrics.add_metric(resources.METRIC.REPORTS_COMPLETED, MetricUnit.Count, 1)
    metrics.flush_metrics()
    emitted = emf.emitted_in(capsys.readouterr().out.splitlines())
    assert emitted == {
        key(resources.METRIC.REPORTS_COMPLETED, service=resources.SERVICE_QUEUE_WORKER)
    }


def test_logs_are_read_per_file(tmp_path: Any) -> None:
    (tmp_path / "edge.log").write_text(
        "started\n" + document([[SERVICE]], service="edge", Requests=1) + "\n"
    )
    (tmp_path / "queue.log").write_text(document([[SERVICE]], service="edge", Requests=2) + "\n")
    (tmp_path / "notes.txt").write_text(document([[SERVICE]], service="x", Requests=1))
    functions = tmp_path / "functions" / "us-east-1"
    functions.mkdir(parents=True)
    (functions / "worker.log").write_text(document([[SERVICE]], service="w", Requests=1) + "\n")
    assert emf.emitted_by_log(tmp_path) == {
        key("Requests", service="edge"): {"edge", "queue"},
        key("Requests", service="w"): {"functions/us-east-1/worker"},
    }


# -- what the templates read --------------------------------------------------------------


def test_an_alarm_on_one_metric() -> None:
    props = {
        "Namespace": NS,
        "MetricName": "RequestFaults",
        "Dimensions": [{"Name": SERVICE, "Value": "reportgrid-edge"}],
        "Statistic": "Sum",
    }
    (read,) = emf.alarm_metrics("EdgeFaults", props, stack="S", region="eu-west-1")
    assert read.key == key("RequestFaults", service="reportgrid-edge")
    assert read.reader == "alarm EdgeFaults"


def test_an_alarm_on_metric_math_reads_each_metric_stat() -> None:
    props = {
        "Metrics": [
            {"Expression": "a + b", "Id": "expr_1"},
            {
                "Id": "a",
                "MetricStat": {
                    "Metric": {
                        "Namespace": "AWS/SQS",
                        "MetricName": "ApproximateNumberOfMessagesVisible",
                        "Dimensions": [
                            {"Name": "QueueName", "Value": {"Fn::GetAtt": ["Dlq", "QueueName"]}}
                        ],
                    },
                    "Period": 60,
                    "Stat": "Maximum",
                },
                "ReturnData": False,
            },
            {
                "Id": "b",
                "MetricStat": {"Metric": {"Namespace": NS, "MetricName": "X"}, "Stat": "Sum"},
            },
        ]
    }
    reads = emf.alarm_metrics("DeadLetters", props, stack="S", region="eu-west-1")
    assert [(r.key.namespace, r.key.name, r.reader) for r in reads] == [
        ("AWS/SQS", "ApproximateNumberOfMessagesVisible", "alarm DeadLetters (a)"),
        (NS, "X", "alarm DeadLetters (b)"),
    ]
    assert reads[0].key.aws
    assert not reads[0].key.ours
    assert reads[1].key.ours


def test_a_dashboard_body_joined_around_intrinsics() -> None:
    # As the CDK writes it: JSON text in pieces, with Refs inside its strings.
    body = {
        "Fn::Join": [
            "",
            [
                '{"widgets":[{"type":"metric","properties":{"title":"Edge","region":"',
                {"Ref": "AWS::Region"},
                '","metrics":[["',
                NS,
                '","Requests","service","reportgrid-edge",{"stat":"Sum"}],',
                '[".","RequestLatency",".",".",{"stat":"p99"}],',
                '[{"expression":"100 * a / b","id":"e"}],',
                '["AWS/Lambda","Errors","FunctionName","',
                {"Ref": "Fn1234"},
                '"]]}},{"type":"alarm","properties":{"alarms":["',
                {"Fn::GetAtt": ["Alarm", "Arn"]},
                '"]}}]}',
            ],
        ]
    }
    reads = emf.dashboard_metrics("Dash", {"DashboardBody": body}, stack="S", region="eu-west-1")
    assert [r.key for r in reads] == [
        key("Requests", service="reportgrid-edge"),
        key("RequestLatency", service="reportgrid-edge"),
        emf.MetricKey.of("AWS/Lambda", "Errors", {"FunctionName": "<Ref:Fn1234>"}),
    ]
    assert {r.reader for r in reads} == {"dashboard Dash widget 'Edge'"}


def test_template_metrics_reads_alarms_and_dashboards_only() -> None:
    template = {
        "Resources": {
            "A": {
                "Type": "AWS::CloudWatch::Alarm",
                "Properties": {"Namespace": NS, "MetricName": "M"},
            },
            "D": {
                "Type": "AWS::CloudWatch::Dashboard",
                "Properties": {
                    "DashboardBody": json.dumps(
                        {"widgets": [{"properties": {"metrics": [[NS, "N", "k", "v"]]}}]}
                    )
                },
            },
            "C": {"Type": "AWS::CloudWatch::CompositeAlarm", "Properties": {"AlarmRule": "x"}},
            "Q": {"Type": "AWS::SQS::Queue", "Properties": {}},
        }
    }
    reads = emf.template_metrics(template, stack="S", region="us-east-1")
    assert [r.key for r in reads] == [key("M"), key("N", k="v")]
