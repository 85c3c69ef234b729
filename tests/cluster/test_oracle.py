"""The refusal table meets the oracle: KServe's own webhook (and the API server's CRD validation).

Every case of tests/kube/refusals.py that an InferenceService can express is sent to the local
control plane as a server-side dry run. Cases marked ``kserve=True`` must be refused there too;
cases marked ``kserve=False`` must be accepted, which proves pipeserve is stricter than KServe for
them (KServe would clamp or ignore the setting silently) and keeps the table honest.
"""

from __future__ import annotations

import pytest
from kube.refusals import REFUSALS
from kube.test_refusals import hand_written

from pipeserve.kube.client import Cluster, ManifestRejected

pytestmark = pytest.mark.cluster

EXPRESSIBLE = {k: c for k, c in REFUSALS.items() if c.isvc is not None}


@pytest.fixture(scope="module")
def cluster(local_cluster, namespace) -> Cluster:
    return Cluster(kubeconfig=str(local_cluster)).connect()


def test_every_case_kserve_refuses_can_be_sent_to_it():
    assert all(c.isvc is not None for c in REFUSALS.values() if c.kserve)
    assert {c.kserve for c in EXPRESSIBLE.values()} == {True, False}  # both verdicts are exercised


@pytest.mark.parametrize("case", EXPRESSIBLE.values(), ids=EXPRESSIBLE.keys())
def test_kserve_agrees_with_the_table(cluster, namespace, case):
    doc = hand_written(case)
    doc["metadata"]["namespace"] = namespace  # a dry run stores nothing: every case is a fresh create
    if case.kserve:
        with pytest.raises(ManifestRejected) as info:
            cluster.apply_objects([doc], dry_run=True)
        assert info.value.exit_code == 2
        assert "admission webhook" in str(info.value) or "is invalid" in str(info.value)
    else:
        # Accepted as written: pipeserve refuses it although KServe would not (it clamps or ignores it).
        stored = cluster.apply_objects([doc], dry_run=True)
        assert stored[0]["kind"] == "InferenceService"
