"""`pipeserve submit` and `pipeserve schedule` against the local cluster's KFP API (kfp-api-double).

The real KFP API server cannot be built here (its Go module is not on the module proxy), so the
local cluster runs kfp-api-double, which validates every request like the backend does (see
docs/local-cluster.md). What the runs look like is read back with kfp.Client, as a user would.
"""

from __future__ import annotations

import json
import uuid
import warnings

import pytest
from helpers import run_cli

pytestmark = pytest.mark.cluster


@pytest.fixture
def client(kfp_endpoint):
    import kfp

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return kfp.Client(host=kfp_endpoint)


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    """The pipeline compiled once (submit compiles it itself when --package is not given)."""
    path = tmp_path_factory.mktemp("pkg") / "pipeline.yaml"
    assert run_cli("compile", "--output", str(path)).code == 0
    return path


def test_submit_creates_a_run_that_kfp_client_lists(client, kfp_endpoint, package):
    experiment = f"exp-{uuid.uuid4().hex[:6]}"
    # A pipeline of its own: the same package under the same name is the same version (the cluster may be reused).
    own = ("--pipeline-name", f"p-{uuid.uuid4().hex[:6]}", "--experiment", experiment)
    result = run_cli("submit", "--host", kfp_endpoint, "--package", str(package), *own,
                     "-a", "source=wine", "-a", "model_name=wine", "-a", "test_size=0.25", "--output", "json")
    assert result.code == 0, result.err
    submitted = json.loads(result.out)
    assert submitted["kind"] == "run" and submitted["link"] == f"{kfp_endpoint}/#/runs/details/{submitted['id']}"
    run = client.get_run(submitted["id"])
    assert run.display_name == submitted["name"] and run.state == "PENDING"  # nothing executes runs here
    assert run.runtime_config.parameters == {"source": "wine", "model_name": "wine", "test_size": 0.25}
    assert run.pipeline_version_reference.pipeline_version_id == submitted["version_id"]
    exp = client.get_experiment(experiment_name=experiment)
    assert [r.run_id for r in client.list_runs(experiment_id=exp.experiment_id).runs] == [submitted["id"]]
    # The same package again: the same pipeline version, a second run.
    again = json.loads(run_cli("submit", "--host", kfp_endpoint, "--package", str(package), *own,
                               "--output", "json").out)
    assert again["version_id"] == submitted["version_id"] and again["id"] != submitted["id"]
    assert "is already uploaded" not in result.err and "is already uploaded" in run_cli(
        "submit", "--host", kfp_endpoint, "--package", str(package), *own).err


def test_submit_compiles_when_no_package_is_given_and_prints_the_link(kfp_endpoint):
    name = f"p-{uuid.uuid4().hex[:6]}"
    result = run_cli("submit", "--host", kfp_endpoint, "--pipeline-name", name)
    assert result.code == 0, result.err
    assert "compiled the pipeline" in result.err and "uploaded pipeline" in result.err
    kind_and_id, link = result.out.splitlines()
    assert kind_and_id.startswith("run ") and link.startswith(f"{kfp_endpoint}/#/runs/details/")
    # Compiled again (KFP stamps a new time into it): still the same pipeline, so the same version.
    again = run_cli("submit", "--host", kfp_endpoint, "--pipeline-name", name)
    assert again.code == 0 and "is already uploaded" in again.err, again.err


def test_submit_wait_reports_a_run_that_never_finishes(kfp_endpoint, package):
    result = run_cli("submit", "--host", kfp_endpoint, "--package", str(package), "--wait", "--timeout", "2")
    assert result.code == 1
    assert "is still PENDING after 2s" in result.err.splitlines()[-1]


def test_schedule_creates_a_recurring_run_that_kfp_client_lists(client, kfp_endpoint, package):
    experiment = f"sched-{uuid.uuid4().hex[:6]}"
    result = run_cli("schedule", "--host", kfp_endpoint, "--package", str(package), "--experiment", experiment,
                     "--cron", "0 0 3 * * *", "--output", "json")
    assert result.code == 0, result.err
    submitted = json.loads(result.out)
    job = client.get_recurring_run(submitted["id"])
    assert job.trigger.cron_schedule.cron == "0 0 3 * * *"
    assert job.max_concurrency == "1" or job.max_concurrency == 1
    exp = client.get_experiment(experiment_name=experiment)
    listed = client.list_recurring_runs(experiment_id=exp.experiment_id).recurring_runs
    assert [j.recurring_run_id for j in listed] == [submitted["id"]]


@pytest.mark.parametrize(("argv", "code", "message"), [
    (["--cron", "0 3 * * *"], 2, "KFP's cron takes 6 fields, seconds first"),
    (["--cron", "0 0 3 * * *", "--max-concurrency", "0"], 2, "--max-concurrency must be at least 1"),
])
def test_schedule_refuses_bad_input_in_one_line(kfp_endpoint, package, argv, code, message):
    result = run_cli("schedule", "--host", kfp_endpoint, "--package", str(package), *argv)
    assert result.code == code and result.err.count("\n") == 1 and message in result.err


def test_a_broken_pipeline_is_refused_by_the_server_with_its_message(kfp_endpoint, package, tmp_path):
    import yaml

    spec, *platform = yaml.safe_load_all(package.read_text())
    spec["schemaVersion"] = "2.0.0"  # the API server takes 2.1.0 only
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump_all([spec, *platform]))
    result = run_cli("submit", "--host", kfp_endpoint, "--package", str(broken), "--pipeline-name",
                     f"broken-{uuid.uuid4().hex[:6]}")
    assert result.code == 2, result.err
    assert "refused to upload the pipeline" in result.err and result.err.count("\n") == 1
    assert "2.0.0" in result.err


def test_an_unreachable_server_is_exit_1(package):
    result = run_cli("submit", "--host", "http://127.0.0.1:9", "--package", str(package))
    assert result.code == 1 and "is unreachable" in result.err


def test_training_resources_travel_with_a_submitted_run(client, kfp_endpoint, package):
    # The real backend compiles the run's Workflow from exactly these: the executors' resources read
    # the run's parameters, and the platform spec puts the training pods on the node pool asked for.
    result = run_cli("submit", "--host", kfp_endpoint, "--package", str(package), "--output", "json",
                     "-a", "train_cpu_limit=4", "-a", "train_memory_limit=16Gi",
                     "-a", 'train_node_selector={"pool": "training"}',
                     "-a", 'train_tolerations=[{"key": "training", "operator": "Exists", "effect": "NoSchedule"}]')
    assert result.code == 0, result.err
    submitted = json.loads(result.out)
    run = client.get_run(submitted["id"])
    assert run.runtime_config.parameters["train_cpu_limit"] == "4"
    assert run.runtime_config.parameters["train_node_selector"] == {"pool": "training"}
    version = client.get_pipeline_version(submitted["pipeline_id"], submitted["version_id"])
    # With a platform spec, the API keeps both documents: {"pipeline_spec": ..., "platform_spec": ...}.
    stored = version.pipeline_spec
    executors = stored["pipeline_spec"]["deploymentSpec"]["executors"]
    for name in ("exec-train", "exec-score-candidate"):
        resources = executors[name]["container"]["resources"]
        assert resources["resourceCpuLimit"] == "{{$.inputs.parameters['pipelinechannel--train_cpu_limit']}}"
        assert resources["resourceMemoryLimit"] == "{{$.inputs.parameters['pipelinechannel--train_memory_limit']}}"
    platform = stored["platform_spec"]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-train"]
    assert platform["nodeSelector"]["nodeSelectorJson"]["componentInputParameter"] == \
        "pipelinechannel--train_node_selector"
    assert platform["tolerations"][0]["tolerationJson"]["componentInputParameter"] == \
        "pipelinechannel--train_tolerations"
