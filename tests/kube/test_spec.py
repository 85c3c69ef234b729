"""DeploymentSpec: every combination a cluster would reject is refused with a message naming the fix."""

from __future__ import annotations

import pytest

from pipeserve.errors import ConfigError
from pipeserve.kube import DeploymentConfigError, DeploymentSpec, Toleration

REFUSED = {
    "canary in Standard mode": (
        dict(canary_traffic_percent=10),
        "canaryTrafficPercent splits traffic between Knative revisions and is only honoured in Knative mode",
    ),
    "minReplicas 0 with HPA": (dict(min_replicas=0), "min_replicas 0 (scale to zero) is impossible with the hpa autoscaler"),
    "no replicas at all": (
        dict(autoscaler="none", min_replicas=0, max_replicas=0), "max_replicas must be at least 1",
    ),
    "GPU with sklearnserver": (
        dict(target="sklearnserver", gpus=1), "A GPU with the sklearnserver runtime would sit idle",
    ),
    "GPU with triton-cpu": (dict(target="triton-cpu", gpus=1), "use target triton-gpu"),
    "triton-gpu without GPU": (dict(gpus=0), "Target triton-gpu needs at least one GPU; use target triton-cpu"),
    "qps (docs typo)": (dict(scale_metric="qps"), "the CRD only accepts 'rps'"),
    "rps with HPA": (
        dict(scale_metric="rps"),
        "Scale metric 'rps' is not allowed with the hpa autoscaler in Standard mode; 'rps' belongs to the kpa autoscaler",
    ),
    "cpu with KPA": (dict(mode="Knative", scale_metric="cpu"), "Scale metric 'cpu' is not allowed with the kpa autoscaler"),
    "KPA in Standard": (dict(autoscaler="kpa"), "exists only in Knative mode"),
    "HPA in Knative": (dict(mode="Knative", autoscaler="hpa"), "In Knative mode KServe scales with the Knative Pod Autoscaler"),
    "KEDA in Knative": (dict(mode="Knative", autoscaler="keda"), "keda autoscaler works only in Standard mode"),
    "KEDA GPU metric without GPU": (
        dict(target="triton-cpu", autoscaler="keda", scale_metric="gpu-utilization"), "needs a GPU target",
    ),
    "KEDA queue time without Triton": (
        dict(target="pipeserve", autoscaler="keda", scale_metric="triton-queue-time"), "comes from Triton",
    ),
    "legacy mode name": (dict(mode="Serverless"), "'Serverless' was renamed to 'Knative' in KServe 0.16"),
    "unknown target": (dict(target="mlserver"), "Unknown target 'mlserver'; valid targets are: triton-gpu"),
    "min > max": (dict(min_replicas=4, max_replicas=2), "min_replicas (4) is greater than max_replicas (2)"),
    "fixed replicas that differ": (dict(autoscaler="none", min_replicas=1, max_replicas=3), "set them equal"),
    "metric with fixed replicas": (dict(autoscaler="none", scale_metric="cpu"), "takes no scale metric"),
    "cpu target over 100": (dict(scale_target=150), "is a percentage (1..100); got 150"),
    "canary out of range": (dict(mode="Knative", canary_traffic_percent=120), "within 0..100; got 120"),
    "bad quantity": (dict(memory_limit="4GB"), "memory_limit '4GB' is not a Kubernetes quantity"),
    "bad name": (dict(name="1iris"), "is not a DNS-1123 label starting with a letter"),
    "name too long": (dict(name="a" * 64), "at most 63 characters"),
    "bad namespace": (dict(namespace="ML_Team"), "Namespace 'ML_Team' is not a DNS-1123 label"),
    "Exists with a value": (
        dict(tolerations=(Toleration(key="gpu", operator="Exists", value="x"),)), "operator Exists takes no value",
    ),
    "bad toleration effect": (dict(tolerations=(Toleration(key="gpu", effect="Never"),)), "effect must be NoSchedule"),
    "bad node selector": (dict(node_selector={"pool": "gpu nodes"}), "is not a valid label key/value pair"),
    "bad prometheus url": (dict(autoscaler="keda", prometheus_url="prometheus:9090"), "must be an http(s) URL"),
}


@pytest.mark.parametrize(("options", "message"), REFUSED.values(), ids=REFUSED.keys())
def test_refused_combinations_name_the_problem(options, message):
    with pytest.raises(DeploymentConfigError) as info:
        DeploymentSpec(**options).check()
    assert message in str(info.value)
    # A ConfigError: the CLI prints one line and exits with 2.
    assert isinstance(info.value, ConfigError) and info.value.exit_code == 2


def test_resolved_fills_target_defaults():
    gpu = DeploymentSpec().resolved()
    assert (gpu.autoscaler, gpu.scale_metric, gpu.scale_target, gpu.gpus) == ("hpa", "cpu", 80, 1)
    assert gpu.node_selector == {"nvidia.com/gpu.present": "true"}
    assert gpu.tolerations == (Toleration(key="nvidia.com/gpu"),)
    knative = DeploymentSpec(target="pipeserve", mode="Knative").resolved()
    assert (knative.autoscaler, knative.scale_metric, knative.gpus, knative.node_selector) == (
        "kpa", "concurrency", 0, {},
    )
    assert DeploymentSpec(target="pipeserve").resolved().cpu_request == "500m"


def test_from_options_takes_primitive_values_like_a_cli_or_kfp():
    spec = DeploymentSpec.from_options(
        target="triton-gpu",
        name="",  # KFP passes "" for an unset string: means default
        min_replicas=2,
        max_replicas=5,
        node_selector=["pool=gpu", "zone=a"],
        tolerations=["dedicated=gpu:NoSchedule", "nvidia.com/gpu", {"key": "spot", "operator": "Exists"}],
        canary_traffic_percent=None,
    )
    assert spec.name is None and (spec.min_replicas, spec.max_replicas) == (2, 5)
    assert spec.node_selector == {"pool": "gpu", "zone": "a"}
    assert spec.tolerations == (
        Toleration(key="dedicated", operator="Equal", value="gpu", effect="NoSchedule"),
        Toleration(key="nvidia.com/gpu", operator="Exists", effect=None),
        Toleration(key="spot", operator="Exists", effect=None),
    )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (dict(replicas=3), "Unknown deployment option(s) replicas; valid options are:"),
        (dict(node_selector=["pool"]), "must look like KEY=VALUE"),
        (dict(tolerations=[{"key": "a", "tolerance": 1}]), "must have a 'key' and only the fields"),
        (dict(tolerations=[""]), "An empty toleration"),
        (dict(canary_traffic_percent=5), "only honoured in Knative mode"),
    ],
)
def test_from_options_refuses_bad_primitives(options, message):
    with pytest.raises(DeploymentConfigError) as info:
        DeploymentSpec.from_options(**options)
    assert message in str(info.value)


def test_from_options_takes_comma_separated_strings_like_kfp_parameters():
    spec = DeploymentSpec.from_options(node_selector="pool=gpu, zone=a", tolerations="dedicated=gpu:NoSchedule", gpus=1)
    assert spec.node_selector == {"pool": "gpu", "zone": "a"}
    assert spec.tolerations == (Toleration(key="dedicated", operator="Equal", value="gpu", effect="NoSchedule"),)
    # Empty strings mean "default" (KFP passes "" for unset parameters).
    defaults = DeploymentSpec.from_options(node_selector="", tolerations="", namespace="", scale_metric="")
    assert defaults.resolved().node_selector == {"nvidia.com/gpu.present": "true"}
    assert defaults.namespace is None
