"""The cluster's work pools: flow runs start as ``python -m prefect.engine`` (no workspace supervisor), and the
sweeps and consumers live in a pool of their own."""

from __future__ import annotations

import sys
from pathlib import Path

import yaml
from prefect.client.schemas.objects import FlowRun
from prefect.workers.process import ProcessJobConfiguration

from deployments.cluster import CONSUMER_DEPLOYMENTS, HOUSEKEEPING_POOL, POOL, process_pool_template

PROJECT = Path(__file__).resolve().parents[2]


def test_the_pool_template_starts_each_flow_run_with_the_engine_itself() -> None:
    template = process_pool_template()
    command = template["variables"]["properties"]["command"]["default"]
    assert command == f"{sys.executable} -m prefect.engine"
    # What a worker builds from the template: a configured command is what makes Prefect's process worker start
    # the engine directly instead of through prefect.runner._workspace_supervisor.
    config = ProcessJobConfiguration(command=command)
    config.prepare_for_flow_run(FlowRun(flow_id="00000000-0000-0000-0000-000000000000"))
    assert config._command_configured
    assert config.command == command


def test_sweeps_and_consumers_run_in_the_housekeeping_pool_and_everything_else_in_the_action_pool() -> None:
    deployments = yaml.safe_load((PROJECT / "prefect.yaml").read_text())["deployments"]
    pools = {d["name"]: d["work_pool"]["name"] for d in deployments}
    housekeeping = {d["name"] for d in deployments if {"sweep", "housekeeping"} & set(d["tags"])}
    assert {name.split("/")[1] for name in CONSUMER_DEPLOYMENTS} <= housekeeping
    assert {"expire-approvals", "recover-actions"} <= housekeeping
    assert {pools[name] for name in housekeeping} == {HOUSEKEEPING_POOL}
    assert {pool for name, pool in pools.items() if name not in housekeeping} == {POOL}
