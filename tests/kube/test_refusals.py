"""One table of refusals (refusals.py), asserted three ways: builder, `helm template`, schema check."""

from __future__ import annotations

import copy

import pytest

from pipeserve.kube import DeploymentSpec, build_inference_service
from pipeserve.kube.admission import CHART_WORDS, ISVC_WORDS, SPEC_WORDS, problems
from pipeserve.kube.schema import validate

from .conftest import make_card
from .refusals import REFUSALS, Refusal
from .render import helm_template

ISVC_FIELDS = {"min_replicas": "minReplicas", "max_replicas": "maxReplicas", "metric": "scaleMetric",
               "target": "scaleTarget", "canary": "canaryTrafficPercent", "autoscaler": "autoscalerClass"}


def expected(case: Refusal, surface: str) -> str:
    """What ``surface``'s message must contain: the admission rule's own words, else the fragment."""
    if surface in case.fragments:
        return case.fragments[surface]
    if case.fragment is not None:
        return case.fragment
    words = {"spec": SPEC_WORDS, "chart": CHART_WORDS, "isvc": ISVC_WORDS}[surface]
    found = problems(DeploymentSpec(**case.spec).scaling(), words)
    assert found, f"no admission rule refuses {case.spec}: give the case a fragment"
    problem = found[0]
    return f"spec.predictor.{ISVC_FIELDS[problem.field]}: {problem.message}" if surface == "isvc" else problem.message


def hand_written(case: Refusal) -> dict:
    doc = copy.deepcopy(build_inference_service(make_card(), "s3://models/iris/", DeploymentSpec(target=case.base)))
    assert validate(doc) == []  # the starting point is valid: only the edits can be refused
    for path, value in case.isvc.items():
        node = doc
        for key in path[:-1]:
            node = node[key]
        if value is None:
            node.pop(path[-1], None)
        else:
            node[path[-1]] = value
    return doc


@pytest.mark.parametrize("case", REFUSALS.values(), ids=REFUSALS.keys())
def test_the_builder_refuses(case):
    with pytest.raises(Exception) as info:
        DeploymentSpec.from_options(**case.spec)
    assert expected(case, "spec") in str(info.value)


@pytest.mark.parametrize("case", [c for c in REFUSALS.values() if c.chart],
                         ids=[k for k, c in REFUSALS.items() if c.chart])
def test_the_chart_refuses(helm, case):
    with pytest.raises(AssertionError) as info:
        helm_template(helm, None, *case.chart_args())
    assert expected(case, "chart") in str(info.value)


@pytest.mark.parametrize("case", [c for c in REFUSALS.values() if c.isvc is not None],
                         ids=[k for k, c in REFUSALS.items() if c.isvc is not None])
def test_the_schema_check_refuses_the_hand_written_inference_service(case):
    errors = validate(hand_written(case))
    assert any(expected(case, "isvc") in e for e in errors), errors


def test_the_table_proves_its_expectations_can_fail():
    # A message that is not the rule's own is not found: the comparisons above are not vacuous.
    case = REFUSALS["min > max"]
    with pytest.raises(Exception) as info:
        DeploymentSpec.from_options(**case.spec)
    assert expected(case, "spec") in str(info.value)
    assert expected(case, "chart") not in str(info.value)  # the chart's words differ from the CLI's
    assert validate(hand_written(Refusal({}, {}, kserve=True))) == []
