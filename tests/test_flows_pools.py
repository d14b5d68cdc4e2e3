"""prefect.yaml's deployments load and the pools split the DAG as flows.stages tags it: every
gpu-tagged stage goes to the Docker pool's deployment, every other stage to the process pool's."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from flows.pools import CPU_DEPLOYMENT, GPU_DEPLOYMENT, pool_plan
from flows.stages import STAGES

ROOT = Path(__file__).resolve().parents[1]
DEPLOYMENTS = {d["name"]: d for d in yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]}


@pytest.mark.parametrize("name", sorted(DEPLOYMENTS))
def test_deployment_entrypoint_loads_and_takes_its_parameters(name):
    from prefect.flows import load_flow_from_entrypoint

    d = DEPLOYMENTS[name]
    flow = load_flow_from_entrypoint(str(ROOT / d["entrypoint"]))
    flow.validate_parameters({**d.get("parameters", {}), **({"name": "rl"} if "one_stage" in d["entrypoint"] else {})})


def test_stage_deployments_sit_on_their_pools():
    flow_name = "m1-stage"
    assert {CPU_DEPLOYMENT, GPU_DEPLOYMENT} == {f"{flow_name}/cpu", f"{flow_name}/gpu"}
    assert DEPLOYMENTS["cpu"]["work_pool"]["name"] == "m1-cpu"
    gpu = DEPLOYMENTS["gpu"]["work_pool"]
    assert gpu["name"] == "m1-gpu" and gpu["job_variables"]["image"] == "m1-gpu-worker:latest"
    assert gpu["job_variables"]["container_create_kwargs"]["device_requests"][0]["Capabilities"] == [["gpu"]]
    assert DEPLOYMENTS["by-pool"]["parameters"]["gpu_deployment"] == GPU_DEPLOYMENT


def test_gpu_stages_go_to_the_docker_pool_in_dependency_order():
    plan = pool_plan(STAGES, "cpu", "gpu")
    where = {name: dep for name, dep, _ in plan}
    assert where == {s.name: "gpu" if s.gpu else "cpu" for s in STAGES}
    assert {n for n, d in where.items() if d == "gpu"} >= {"sft", "rl"}
    seen = set()
    for name, _, ups in plan:
        assert set(ups) <= seen, f"{name} planned before its upstream {set(ups) - seen}"
        seen.add(name)


def test_plan_of_some_stages_keeps_only_their_edges():
    plan = pool_plan(STAGES, "cpu", "gpu", only=["sft", "rl"])
    assert [(n, u) for n, _, u in plan] == [("sft", []), ("rl", ["sft"])]
    with pytest.raises(ValueError, match="unknown stage"):
        pool_plan(STAGES, "cpu", "gpu", only=["nope"])


def test_docker_image_installs_the_gpu_extra_apart_from_the_cpu_pins():
    dockerfile = (ROOT / "docker/Dockerfile").read_text()
    assert "-c docker/constraints-gpu.txt -e '.[gpu]'" in dockerfile
    gpu_pins = (ROOT / "docker/constraints-gpu.txt").read_text()
    assert "torch==2.11.0" in gpu_pins and "vllm==0.23.0" in gpu_pins
    assert "torch==2.13.0" in (ROOT / "constraints.txt").read_text()
