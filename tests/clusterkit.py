"""What the tests in tests/cluster do to the local control plane, written once.

Import it as ``from clusterkit import wait_for, new_namespace, ...`` (pytest puts tests/ on sys.path).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from pipeserve.kube.client import Cluster

ISVC = ("serving.kserve.io/v1beta1", "InferenceService")
GPU_NODE = "gpu-node-0"
GPU = "nvidia.com/gpu"


def wait_for(probe: Callable[[], Any], what: str, timeout: float = 60, interval: float = 0.3) -> Any:
    """Call ``probe`` until it returns something truthy and return that; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = probe()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}; last: {last!r}")
        time.sleep(interval)


def new_namespace(cluster: Cluster, prefix: str) -> str:
    """Create a namespace of the test's own; return once its default ServiceAccount exists (pods need it)."""
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    cluster.apply_objects([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}])
    wait_for(lambda: cluster.get("v1", "ServiceAccount", "default", name), f"ServiceAccount default in {name}")
    return name


def empty_namespace(cluster: Cluster, ns: str, delete: bool = True) -> None:
    """Delete the namespace's InferenceServices and wait until their pods are gone (frees the GPUs)."""
    for isvc in cluster.list(*ISVC, ns):
        cluster.delete_inference_service(isvc["metadata"]["name"], ns)
    wait_for(lambda: not cluster.list("v1", "Pod", ns) or None, f"the pods of {ns} gone", 90)
    if delete:
        cluster.delete("v1", "Namespace", ns)


@contextmanager
def own_namespace(cluster: Cluster, prefix: str) -> Iterator[str]:
    """A namespace of the test's own, emptied and deleted afterwards."""
    name = new_namespace(cluster, prefix)
    try:
        yield name
    finally:
        empty_namespace(cluster, name)


def free_gpus(cluster: Cluster, node: str = GPU_NODE) -> int:
    """GPUs of ``node`` no live pod holds (other tests and sessions may hold some)."""
    allocatable = int(cluster.get("v1", "Node", node)["status"]["allocatable"][GPU])
    used = sum(int(c["resources"].get("limits", {}).get(GPU, 0))
               for p in cluster.list("v1", "Pod") if p["spec"].get("nodeName") == node
               and p["status"].get("phase") in ("Pending", "Running") and not p["metadata"].get("deletionTimestamp")
               for c in p["spec"]["containers"])
    return allocatable - used


@contextmanager
def gpus_taken(cluster: Cluster, ns: str) -> Iterator[int]:
    """Hold every free GPU of the GPU node with a pod in ``ns`` (so nothing else can be scheduled there)."""
    free = free_gpus(cluster)
    if free:
        cluster.apply_objects([{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "gpu-hog", "namespace": ns},
                                "spec": {"nodeSelector": {f"{GPU}.present": "true"},
                                         "tolerations": [{"key": GPU, "operator": "Exists", "effect": "NoSchedule"}],
                                         "containers": [{"name": "hog", "image": "busybox",
                                                         "resources": {"limits": {GPU: str(free)}}}]}}])
        wait_for(lambda: (cluster.get("v1", "Pod", "gpu-hog", ns) or {}).get("spec", {}).get("nodeName"),
                 "the GPU-holding pod scheduled")
    try:
        yield free
    finally:
        cluster.delete("v1", "Pod", "gpu-hog", ns)
