"""kfp.Client (kfp 2.17.3) against the local cluster's KFP API: kfp-api-double, a request-validating double.

The real KFP API server cannot be built here (docs/local-cluster.md says why); the double checks every
body against the kfp-server-api models and every pipeline spec as the 2.17 backend's template code
does, and answers refusals with the backend's status codes and messages. It compiles and runs nothing:
runs stay PENDING, as on the real backend without an Argo controller.
"""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[2]
PIPELINE = ROOT / "pipelines" / "train_and_serve.yaml"
sys.path.insert(0, str(ROOT / "cluster"))
from kfp_api_double import CronError, parse_cron  # noqa: E402


@pytest.fixture(scope="module")
def client(kfp_endpoint: str):
    import kfp

    return kfp.Client(host=kfp_endpoint)


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _post(url: str, body: dict) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def _broken(tmp_path: Path, **changes) -> Path:
    # The compiled file is two documents: the pipeline spec, then its Kubernetes platform spec.
    spec, platform = yaml.safe_load_all(PIPELINE.read_text())
    spec.update(changes)
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump_all([spec, platform]))
    return path


def test_healthz_names_the_double(client, kfp_endpoint: str) -> None:
    health = client.get_kfp_healthz()
    assert health.multi_user is False
    with urllib.request.urlopen(f"{kfp_endpoint}/apis/v2beta1/healthz", timeout=5) as resp:
        body = json.loads(resp.read())
    assert body["commit_sha"] == "kfp-api-double" and "compiles nothing" in body["tag_name"]


def test_upload_version_run_in_an_experiment_and_list(client) -> None:
    name = _name("train-and-serve")
    pipeline = client.upload_pipeline(str(PIPELINE), pipeline_name=name, description="pipeserve")
    assert client.get_pipeline_id(name) == pipeline.pipeline_id
    version = client.upload_pipeline_version(str(PIPELINE), "v2", pipeline_id=pipeline.pipeline_id)
    versions = client.list_pipeline_versions(pipeline.pipeline_id)
    assert [v.display_name for v in versions.pipeline_versions] == [name, "v2"]
    stored = client.get_pipeline_version(pipeline.pipeline_id, version.pipeline_version_id)
    # As the real backend returns a spec with a platform document: both, side by side.
    assert stored.pipeline_spec["pipeline_spec"]["pipelineInfo"]["name"] == "train-and-serve"
    assert stored.pipeline_spec["pipeline_spec"]["schemaVersion"] == "2.1.0"
    executors = stored.pipeline_spec["platform_spec"]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert "nodeSelector" in executors["exec-train"]

    experiment = client.create_experiment(_name("exp"))
    inline = client.create_run_from_pipeline_package(str(PIPELINE), arguments={"source": "wine"},
                                                     run_name="inline", experiment_name=experiment.display_name)
    pinned = client.run_pipeline(experiment.experiment_id, "pinned", pipeline_id=pipeline.pipeline_id,
                                 version_id=version.pipeline_version_id, params={"model_name": "wine"})
    run = client.get_run(inline.run_id)
    assert (run.state, run.experiment_id, run.display_name) == ("PENDING", experiment.experiment_id, "inline")
    assert run.runtime_config.parameters == {"source": "wine"}
    assert pinned.pipeline_version_reference.pipeline_version_id == version.pipeline_version_id
    runs = client.list_runs(experiment_id=experiment.experiment_id, sort_by="created_at desc")
    assert runs.total_size == 2 and {r.run_id for r in runs.runs} == {inline.run_id, pinned.run_id}
    assert {r.state for r in runs.runs} == {"PENDING"}  # nothing executes runs


def test_recurring_run_with_kfps_six_field_cron(client) -> None:
    pipeline = client.upload_pipeline(str(PIPELINE), pipeline_name=_name("nightly"))
    version = client.list_pipeline_versions(pipeline.pipeline_id).pipeline_versions[0]
    experiment = client.create_experiment(_name("sched"))
    recurring = client.create_recurring_run(experiment.experiment_id, "nightly", cron_expression="0 0 3 * * *",
                                            pipeline_id=pipeline.pipeline_id, version_id=version.pipeline_version_id,
                                            params={"source": "iris"}, max_concurrency=2)
    got = client.get_recurring_run(recurring.recurring_run_id)
    assert got.trigger.cron_schedule.cron == "0 0 3 * * *"
    assert (got.status, got.mode, got.max_concurrency) == ("ENABLED", "ENABLE", "2")
    listed = client.list_recurring_runs(experiment_id=experiment.experiment_id)
    assert [r.recurring_run_id for r in listed.recurring_runs] == [recurring.recurring_run_id]
    client.disable_recurring_run(recurring.recurring_run_id)
    assert client.get_recurring_run(recurring.recurring_run_id).status == "DISABLED"


@pytest.mark.parametrize(("cron", "error"), [
    ("0 3 * * * * *", "Expected 5 to 6 fields, found 7: 0 3 * * * * *"),
    ("0 60 3 * * *", "End of range (60) above maximum (59): 60"),
    ("0 0 3 * * mon-xyz", 'Failed to parse int from xyz: strconv.Atoi: parsing "xyz": invalid syntax'),
    ("@fortnightly", "Unrecognized descriptor: @fortnightly"),
])
def test_a_cron_the_backend_refuses_is_refused_with_its_message(client, cron: str, error: str) -> None:
    from kfp_server_api.exceptions import ApiException

    pipeline = client.upload_pipeline(str(PIPELINE), pipeline_name=_name("badcron"))
    version = client.list_pipeline_versions(pipeline.pipeline_id).pipeline_versions[0]
    with pytest.raises(ApiException) as info:
        client.create_recurring_run(client.create_experiment(_name("c")).experiment_id, "bad", cron_expression=cron,
                                    pipeline_id=pipeline.pipeline_id, version_id=version.pipeline_version_id)
    body = json.loads(info.value.body)
    assert info.value.status == 400 and body["code"] == 3
    assert body["details"][0]["message"] == (
        f"Schedule cron is not a supported format(https://godoc.org/github.com/robfig/cron). Error: {error}")


def test_a_broken_spec_is_refused_with_the_backends_message(client, tmp_path: Path) -> None:
    from kfp_server_api.exceptions import ApiException

    broken = _broken(tmp_path, schemaVersion="2.0.0")
    message = "KFP only supports schema version 2.1.0, but the pipeline spec has version 2.0.0"
    with pytest.raises(ApiException) as info:  # the multipart upload handler: 400, error_message
        client.upload_pipeline(str(broken), pipeline_name=_name("broken"))
    body = json.loads(info.value.body)
    assert info.value.status == 400 and body["error_message"] == message
    assert body["error_details"] == ("Failed to create a pipeline and a pipeline version due to template creation "
                                     f"error: InvalidInputError: {message}: pipeline spec is invalid")
    with pytest.raises(ApiException) as info:  # CreateRun wraps it as an internal error, as 2.17's backend does
        client.create_run_from_pipeline_package(str(broken), run_name="broken")
    body = json.loads(info.value.body)
    assert info.value.status == 500 and body["code"] == 13
    assert body["message"] == ("Failed to create a new run: InternalServerError: Failed to create a run due to error "
                               "fetching manifest: Failed to fetch a template with an invalid pipeline spec manifest: "
                               f"InvalidInputError: {message}: pipeline spec is invalid")
    not_a_spec = tmp_path / "not-a-spec.yaml"
    not_a_spec.write_text(yaml.safe_dump({"pipelineInfo": {"name": "x"}, "root": {"dag": {}}, "bogus": 1}))
    with pytest.raises(ApiException) as info:  # does not parse as a PipelineSpec: not a template at all
        client.upload_pipeline(str(not_a_spec), pipeline_name=_name("bogus"))
    assert json.loads(info.value.body)["error_message"] == "unknown template format"


def test_run_parameters_are_checked_against_the_pipelines_inputs(client) -> None:
    from kfp_server_api.exceptions import ApiException

    with pytest.raises(ApiException) as info:
        client.create_run_from_pipeline_package(str(PIPELINE), arguments={"sorce": "wine"}, run_name="typo")
    body = json.loads(info.value.body)
    assert info.value.status == 400
    assert body["details"][0]["message"] == "parameter(s) provided are not required by pipeline: sorce"
    with pytest.raises(ApiException) as info:
        client.create_run_from_pipeline_package(str(PIPELINE), arguments={"source": 3}, run_name="type")
    assert json.loads(info.value.body)["details"][0]["message"] == (
        "input parameter source requires type string, but the input parameter is not of string value type")


def test_bodies_are_checked_against_the_kfp_server_api_models(kfp_endpoint: str) -> None:
    status, body = _post(f"{kfp_endpoint}/apis/v2beta1/experiments", {"display_name": _name("e"), "colour": "red"})
    assert (status, body["code"]) == (400, 3) and 'unknown field "colour"' in body["message"]
    status, body = _post(f"{kfp_endpoint}/apis/v2beta1/runs", {"display_name": "r", "state": "EXPLODED",
                                                               "pipeline_spec": {}})
    assert status == 400 and "invalid value for enum type" in body["message"]
    status, body = _post(f"{kfp_endpoint}/apis/v2beta1/experiments", {"displayName": 7})
    assert status == 400 and "expected a string" in body["message"]
    status, body = _post(f"{kfp_endpoint}/apis/v2beta1/runs", {"display_name": "r",
                                                               "experiment_id": "no-such-experiment",
                                                               "pipeline_spec": {}})
    assert (status, body["details"][0]["message"]) == (404, "Experiment no-such-experiment not found")


@pytest.mark.parametrize("cron", ["0 0 3 * * *", "0 0 3 * *", "*/10 * * * * *", "0 30 9 * * mon-fri", "@daily",
                                  "@every 1h30m", "0 0 12 1 jan,jul ?"])
def test_cron_port_accepts_what_robfig_cron_v1_accepts(cron: str) -> None:
    parse_cron(cron)


@pytest.mark.parametrize("cron", ["", "* * * *", "0 0 24 * * *", "0 0 0 0 * *", "5-1 * * * * *", "*/0 * * * * *",
                                  "1-2-3 * * * * *", "@every 5 minutes", "0 0 3 * * 7"])
def test_cron_port_refuses_what_robfig_cron_v1_refuses(cron: str) -> None:
    with pytest.raises(CronError):
        parse_cron(cron)
