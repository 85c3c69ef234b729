"""The pure parts of rollouts, no cluster: reading a served InferenceService back, snapshots, rollout checks.

The same objects the cluster tests (test_rollout.py) produce, written by hand: what KServe 0.20's
controller puts on the Deployment and the Knative Service while a rollout is in flight.
"""

from __future__ import annotations

import copy
import dataclasses
import json

import pytest
from kube.conftest import make_card
from kube.test_builder import VALID_SPECS

from pipeserve.kube import DeploymentSpec, build_inference_service
from pipeserve.kube.readback import merge_options, read_served
from pipeserve.kube.rollout_status import deployment_pending, knative_pending, template_difference
from pipeserve.rollout import Rollout, snapshot

URI = "s3://bucket/mlartifacts/1/abc/artifacts/model"


@pytest.mark.parametrize("spec", VALID_SPECS.values(), ids=VALID_SPECS.keys())
def test_reading_a_served_inference_service_back_rebuilds_it(spec: DeploymentSpec) -> None:
    spec = dataclasses.replace(spec, canary_traffic_percent=None)  # a rollout's choice, not the setup's
    card = make_card()
    doc = build_inference_service(card, URI, spec)
    served = read_served(doc)
    assert (served.model_name, served.model_version, served.storage_uri) == ("iris", "1", URI)
    assert build_inference_service(card, URI, DeploymentSpec.from_options(**served.options)) == doc


def test_a_changed_target_or_autoscaler_drops_what_belonged_to_the_old_one() -> None:
    served = read_served(build_inference_service(make_card(), URI, DeploymentSpec(min_replicas=2))).options
    assert (served["target"], served["gpus"], served["node_selector"]) == (
        "triton-gpu", 1, {"nvidia.com/gpu.present": "true"})
    cpu = merge_options(served, {"target": "triton-cpu"})
    assert "gpus" not in cpu and "node_selector" not in cpu and "tolerations" not in cpu and "cpu_limit" not in cpu
    assert cpu["min_replicas"] == 2 and cpu["target"] == "triton-cpu"
    DeploymentSpec.from_options(**cpu)  # a valid spec, where keeping the GPU would be refused
    keda = merge_options(served, {"autoscaler": "keda"})
    assert "scale_metric" not in keda and "scale_target" not in keda and keda["gpus"] == 1
    assert merge_options(served, {"min_replicas": 3, "target": "triton-gpu"})["gpus"] == 1  # same target: kept


def test_a_knative_canary_reads_back_as_in_flight() -> None:
    doc = build_inference_service(make_card(), URI, DeploymentSpec(mode="Knative", canary_traffic_percent=10))
    doc["status"] = {"components": {"predictor": {"latestRolledoutRevision": "iris-predictor-00001"}}}
    served = read_served(doc)
    assert served.in_canary and served.canary_traffic_percent == 10
    assert served.rolled_out_revision == "iris-predictor-00001"
    assert "canary_traffic_percent" not in served.options
    assert not read_served(build_inference_service(make_card(), URI, DeploymentSpec(mode="Knative"))).in_canary


def _stored(doc: dict) -> dict:
    """``doc`` as the API server returns it: system metadata, webhook defaults, status."""
    stored = copy.deepcopy(doc)
    stored["metadata"].update(namespace="ml", uid="u-1", resourceVersion="42", generation=3,
                              creationTimestamp="2026-12-01T00:00:00Z", finalizers=["inferenceservice.finalizers"],
                              managedFields=[{"manager": "pipeserve", "operation": "Apply"}])
    stored["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"] = "{...}"
    stored["spec"]["predictor"]["model"]["name"] = ""
    stored["status"] = {"conditions": [{"type": "Ready", "status": "True"}]}
    return stored


def test_a_snapshot_is_what_a_restore_applies() -> None:
    doc = build_inference_service(make_card(), URI, DeploymentSpec(target="triton-cpu"))
    stored = _stored(doc)
    snap = snapshot(stored)
    assert set(snap) == {"apiVersion", "kind", "metadata", "spec"}
    assert set(snap["metadata"]) == {"name", "namespace", "labels", "annotations"}
    assert "kubectl.kubernetes.io/last-applied-configuration" not in snap["metadata"]["annotations"]
    assert snap["metadata"]["annotations"] == doc["metadata"]["annotations"]
    assert snap["spec"] == stored["spec"] and snap["spec"] is not stored["spec"]
    json.dumps(snap)


def _deployment(isvc: dict, **status: int) -> dict:
    """The predictor Deployment KServe writes for ``isvc`` (what matters here), with a rollout state."""
    model = isvc["spec"]["predictor"]["model"]
    annotations = {**isvc["metadata"]["annotations"], **isvc["spec"]["predictor"].get("annotations", {}),
                   "internal.serving.kserve.io/storage-initializer-sourceuri": model["storageUri"]}
    resources = {kind: {k: ("1000m" if v == "1" else v) for k, v in values.items()}  # normalized quantities
                 for kind, values in model["resources"].items()}
    return {
        "metadata": {"name": "iris-predictor", "generation": 2},
        "spec": {"replicas": 1, "template": {
            "metadata": {"annotations": annotations},
            "spec": {"nodeSelector": isvc["spec"]["predictor"].get("nodeSelector", {}),
                     "tolerations": isvc["spec"]["predictor"].get("tolerations", []),
                     "containers": [{"name": "kserve-container", "image": "nvcr.io/nvidia/tritonserver:23.05-py3",
                                     "resources": resources}]}}},
        "status": {"observedGeneration": 2, "replicas": 1, "updatedReplicas": 1, "availableReplicas": 1, **status},
    }


def test_a_deployment_rolls_out_only_when_it_carries_the_spec_and_the_new_pods_are_available() -> None:
    v1 = build_inference_service(make_card(), URI, DeploymentSpec())
    v2 = build_inference_service(make_card(version="2", files={"2/model.onnx": "e" * 64}), URI + "2", DeploymentSpec())
    deployment = _deployment(v2)
    assert template_difference(v2, deployment["spec"]["template"]) is None
    assert deployment_pending(v2, deployment) is None
    stale = template_difference(v2, _deployment(v1)["spec"]["template"])
    assert stale == "annotation pipeserve.dev/model-version is '1', not '2'"  # the version first: clearest
    assert deployment_pending(v2, _deployment(v1)).startswith("waiting for KServe to update Deployment iris-predictor")
    assert deployment_pending(v2, None) == "waiting for KServe to create the predictor Deployment"
    lagging = _deployment(v2, observedGeneration=1)
    assert "Deployment controller" in deployment_pending(v2, lagging)
    surging = _deployment(v2, replicas=2, updatedReplicas=1, availableReplicas=1)  # the old pod serves, new Pending
    assert deployment_pending(v2, surging) == \
        "Deployment iris-predictor: 0 of 1 new replica(s) available (1 old one(s) still serving)"
    stuck = _deployment(v2, replicas=2, updatedReplicas=1, availableReplicas=1)
    stuck["status"]["conditions"] = [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                                      "message": 'ReplicaSet "iris-predictor-7d" has timed out progressing.'}]
    assert deployment_pending(v2, stuck).startswith("the Deployment exceeded its progress deadline: ReplicaSet")
    moved = copy.deepcopy(deployment)
    moved["spec"]["template"]["spec"]["nodeSelector"] = {}
    assert template_difference(v2, moved["spec"]["template"]) == "nodeSelector {}"
    smaller = copy.deepcopy(deployment)
    smaller["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"] = "2Gi"
    assert template_difference(v2, smaller["spec"]["template"]) == "limits memory=2Gi"


def _ksvc(isvc: dict, traffic: list[dict], generation: int = 2, observed: int = 2, ready: str = "True") -> dict:
    return {
        "metadata": {"name": "iris-predictor", "generation": generation},
        "spec": {"template": {"metadata": {"annotations": {**isvc["metadata"]["annotations"]}},
                              "spec": {"containers": [{"name": "kserve-container",
                                                       "resources": isvc["spec"]["predictor"]["model"]["resources"]}]}},
                 "traffic": traffic},
        "status": {"observedGeneration": observed, "latestCreatedRevisionName": "iris-predictor-00002",
                   "latestReadyRevisionName": "iris-predictor-00002",
                   "conditions": [{"type": "Ready", "status": ready}]},
    }


def test_a_knative_rollout_waits_for_kserves_traffic_block_and_knatives_status() -> None:
    spec = DeploymentSpec(target="triton-cpu", mode="Knative", canary_traffic_percent=10)
    isvc = build_inference_service(make_card(), URI, spec)
    stored = {**isvc, "status": {"components": {"predictor": {"latestRolledoutRevision": "iris-predictor-00001",
                                                              "latestReadyRevision": "iris-predictor-00002"}}}}
    split = [{"latestRevision": True, "percent": 10},
             {"latestRevision": False, "percent": 90, "revisionName": "iris-predictor-00001", "tag": "prev"}]
    assert knative_pending(isvc, _ksvc(isvc, split), stored) is None
    assert knative_pending(isvc, _ksvc(isvc, [{"latestRevision": True, "percent": 100}]), stored) == \
        "waiting for KServe to route 10 % to the latest revision of Knative Service iris-predictor (now 100)"
    # Nothing rolled out yet: KServe 0.20 gives the latest revision everything, whatever the canary says.
    fresh = {**isvc, "status": {"components": {"predictor": {"latestReadyRevision": "iris-predictor-00002"}}}}
    assert knative_pending(isvc, _ksvc(isvc, [{"latestRevision": True, "percent": 100}]), fresh) is None
    assert "is Knative Serving's controller running?" in knative_pending(isvc, _ksvc(isvc, split, observed=1), stored)
    assert "not Ready" in knative_pending(isvc, _ksvc(isvc, split, ready="False"), stored)


def test_a_rollout_reads_as_json() -> None:
    rollout = Rollout(action="canary", name="iris", version="2", previous="1", namespace="ml",
                      inference_service="iris", mode="Knative", change=None, changed=True, waited=True, seconds=0.4,
                      url=None, traffic=[{"revision": "iris-predictor-00002", "latest": True, "percent": 10,
                                          "tag": None}])
    assert json.loads(json.dumps(rollout.to_dict()))["traffic"][0]["percent"] == 10
