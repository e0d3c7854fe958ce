"""The default per-tenant cap (REPORTGRID_DEFAULT_MAX_RUNNING, functions/tenant_slots.py) is
one fact derived from the fleet's size: the stream function and the queue worker are told
the same value, cdk.config.default_max_running(capacity), and it parses as their settings."""

from __future__ import annotations

from cdk.config import ON_DEMAND_INITIAL_SHARDS, default_max_running
from cdk.constructs.queue_worker import WORKER_COMMAND
from cdk.constructs.stream_worker import HANDLER
from reportgrid import resources as r
from reportgrid.settings import load_settings
from tests.infra.conftest import Synthesized, container, function_by_handler


def test_stream_and_queue_workers_get_the_fleet_derived_default_cap(synth: Synthesized) -> None:
    capacity = synth.config.capacity
    expected = default_max_running(capacity)
    # Half of what the stream workers hold at once (shards x parallelization x batch / 2).
    shards = capacity.stream_shards or ON_DEMAND_INITIAL_SHARDS
    held = shards * capacity.lambda_parallelization_factor * capacity.lambda_batch_size
    assert expected == max(1, held // 2)
    template = synth.regional("eu-west-1")
    _, function = function_by_handler(template, HANDLER)
    lambda_env = function["Properties"]["Environment"]["Variables"]
    worker = container(template, list(WORKER_COMMAND))["Environment"]
    worker_env = {v["Name"]: v["Value"] for v in worker}
    for variables in (lambda_env, worker_env):
        assert variables[r.ENV.DEFAULT_MAX_RUNNING] == str(expected)
        plain = {k: v for k, v in variables.items() if isinstance(v, str)}
        settings = load_settings({**plain, r.ENV.ID_SECRETS: "0" * 64})
        assert settings.default_max_running == expected
