"""DeploymentSpec: every combination a cluster would reject is refused with a message naming the fix."""

from __future__ import annotations

import pytest

from pipeserve.errors import ConfigError
from pipeserve.kube import DeploymentConfigError, DeploymentSpec, Toleration

# Combinations KServe itself would refuse are in refusals.py (asserted on every surface); these are
# the spec's own checks.
REFUSED = {
    "unknown target": (dict(target="mlserver"), "Unknown target 'mlserver'; valid targets are: triton-gpu"),
    "bad quantity": (dict(memory_limit="4GB"), "memory_limit '4GB' is not a Kubernetes quantity"),
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
