"""The gate rule: syntax, clear errors, verdicts, Markdown, and champion metrics from annotations."""

from __future__ import annotations

import pytest

from pipeserve import gate
from pipeserve.catalog import CLASSIFICATION, REGRESSION
from pipeserve.errors import ConfigError, UserError
from pipeserve.workflow import FitResult

CHAMPION = gate.ChampionMetrics({"accuracy": 0.9, "f1_macro": 0.88, "log_loss": 0.30, "roc_auc": 0.97},
                                "registry iris@champion (version 4)", "iris", "4", data_fingerprint="sha256:aaa")
BETTER = {"accuracy": 0.93, "f1_macro": 0.92, "log_loss": 0.31, "roc_auc": 0.98}
WORSE = {"accuracy": 0.86, "f1_macro": 0.80, "log_loss": 0.45, "roc_auc": 0.95}


@pytest.mark.parametrize(("text", "task", "canonical"), [
    ("", CLASSIFICATION, "f1_macro>=champion"),
    (None, REGRESSION, "rmse<=champion"),
    ("default", REGRESSION, "rmse<=champion"),
    ("accuracy >= champion ; f1_macro>=0.9", CLASSIFICATION, "accuracy>=champion; f1_macro>=0.9"),
    ("log_loss<=champion+0.02", CLASSIFICATION, "log_loss<=champion+0.02"),
    ("accuracy>=champion - 1 %", CLASSIFICATION, "accuracy>=champion-1%"),
    ("default\nr2>-0.5;;", REGRESSION, "rmse<=champion; r2>-0.5"),
    ("mae<champion", REGRESSION, "mae<champion"),
])
def test_rules_parse_to_a_canonical_form(text: str | None, task: str, canonical: str) -> None:
    assert str(gate.parse_rule(text, task)) == canonical


@pytest.mark.parametrize(("text", "match"), [
    ("acc>=champion", r"clause 1 'acc>=champion': classification models have no metric 'acc'; use one of accuracy"),
    ("f1_macro>=champion; rmse<=champion", r"clause 2 .* no metric 'rmse'"),
    ("log_loss>=champion", r"lower log_loss is better.* did you mean log_loss<=champion\?"),
    ("accuracy<=champion+0.1", r"higher accuracy is better.* did you mean accuracy>=champion-0.1\?"),
    ("f1_macro>=0.9x", r"expected a number or champion\[±N\[%\]\] after '>=', got '0.9x'"),
    ("f1_macro>=", "expected a number"),
    ("f1_macro>=nan", "expected a number"),
    ("accuracy==0.9", "equality is not a gate condition"),
    ("accuracy better than champion", "is not METRIC OP VALUE"),
])
def test_bad_rules_fail_in_one_line_naming_the_clause(text: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match) as info:
        gate.parse_rule(text, CLASSIFICATION)
    assert "\n" not in str(info.value) and info.value.exit_code == 2


def test_default_rule_promotes_better_and_holds_back_worse() -> None:
    passed = gate.evaluate(BETTER, CHAMPION, task=CLASSIFICATION, challenger_label="iris/5")
    assert passed.passed and passed.decision == "promote" and passed.rule == "f1_macro>=champion"
    failed = gate.evaluate(WORSE, CHAMPION, task=CLASSIFICATION)
    assert not failed.passed and failed.decision == "hold back"
    assert failed.summary() == "gate failed (hold back): f1_macro>=champion: 0.8000 vs 0.8800"


def test_equal_primary_metric_is_not_worse() -> None:
    assert gate.evaluate(dict(CHAMPION.metrics), CHAMPION, task=CLASSIFICATION).passed
    assert not gate.evaluate(dict(CHAMPION.metrics), CHAMPION, "f1_macro>champion", task=CLASSIFICATION).passed


def test_maximum_regressions_absolute_and_relative() -> None:
    rule = "default; log_loss<=champion+0.02; accuracy>=champion-1%"
    ok = gate.evaluate({**BETTER, "log_loss": 0.32, "accuracy": 0.891}, CHAMPION, rule, task=CLASSIFICATION)
    assert ok.passed, ok.summary()
    assert [r.threshold for r in ok.results][1:] == pytest.approx([0.32, 0.891])
    too_much = gate.evaluate({**BETTER, "log_loss": 0.33}, CHAMPION, rule, task=CLASSIFICATION)
    assert [r.passed for r in too_much.results] == [True, False, True]
    assert "log_loss<=champion+0.02: 0.3300 vs 0.3200" in too_much.summary()


def test_regression_uses_rmse_lower_is_better() -> None:
    champ = gate.ChampionMetrics({"rmse": 55.0, "mae": 46.0, "r2": 0.42}, "registry")
    assert gate.evaluate({"rmse": 54.9, "mae": 47.0, "r2": 0.43}, champ, task=REGRESSION).passed
    assert not gate.evaluate({"rmse": 55.1, "mae": 40.0, "r2": 0.5}, champ, task=REGRESSION).passed


def test_first_version_passes_but_floors_still_apply() -> None:
    first = gate.evaluate(WORSE, None, task=CLASSIFICATION)
    assert first.passed and first.results[0].note == "no champion to compare with"
    assert "No champion yet" in first.notes[0]
    floored = gate.evaluate(WORSE, None, "default; f1_macro>=0.9", task=CLASSIFICATION)
    assert not floored.passed and floored.results[1].note == ""


def test_what_cannot_be_checked_fails() -> None:
    no_auc = {k: v for k, v in BETTER.items() if k != "roc_auc"}
    verdict = gate.evaluate(no_auc, CHAMPION, "default; roc_auc>=champion", task=CLASSIFICATION)
    assert not verdict.passed and verdict.results[1].note == "the challenger has no roc_auc"
    champ = gate.ChampionMetrics({"f1_macro": 0.5}, "registry")
    verdict = gate.evaluate(BETTER, champ, "default; roc_auc>=champion", task=CLASSIFICATION)
    assert not verdict.passed and verdict.results[1].note == "the champion has no roc_auc"


def test_markdown_shows_both_metric_sets_the_rule_and_the_verdict() -> None:
    verdict = gate.evaluate(WORSE, CHAMPION, "default; log_loss<=champion+0.02", task=CLASSIFICATION,
                            challenger_label="iris/5", data_fingerprint="sha256:bbb")
    md = verdict.to_markdown()
    assert md.startswith("# Gate: failed ❌ (hold back)\n")
    assert "- **Rule:** `f1_macro>=champion; log_loss<=champion+0.02`" in md
    assert "- **Challenger:** iris/5" in md and "registry iris@champion (version 4)" in md
    assert "| `f1_macro>=champion` | 0.8000 | 0.8800 | 0.8800 | **fail** |" in md
    assert "| log_loss ↓ | 0.4500 | 0.3000 | +0.1500 |" in md
    assert "| roc_auc | 0.9500 | 0.9700 | -0.0200 |" in md
    assert "evaluated on other data" in md
    as_dict = verdict.to_dict()
    assert as_dict["passed"] is False and as_dict["decision"] == "hold back"
    assert as_dict["champion"]["version"] == "4" and len(as_dict["results"]) == 2


def test_champion_from_the_annotations_the_manifest_builder_writes(iris_fit: FitResult) -> None:
    from pipeserve.kube.builder import lineage_annotations
    from pipeserve.kube.spec import DeploymentSpec

    annotations = lineage_annotations(iris_fit.card, DeploymentSpec())
    champ = gate.champion_from_annotations(annotations, "InferenceService ml/iris")
    assert (champ.name, champ.version, champ.decimals) == ("iris", "1", 4)
    assert champ.data_fingerprint == iris_fit.card.data["fingerprint"]
    assert "serving iris version 1" in champ.source
    assert champ.metrics == pytest.approx(iris_fit.card.metrics, abs=5e-5)
    # The annotation rounds to 4 decimals: the very same model must not look worse than itself.
    assert gate.evaluate(iris_fit.card.metrics, champ, task=CLASSIFICATION).passed
    assert gate.evaluate(iris_fit.card.metrics, champ, "log_loss<=champion", task=CLASSIFICATION).passed


@pytest.mark.parametrize(("annotations", "match"), [
    ({}, "has no pipeserve.dev/metrics annotation"),
    ({"pipeserve.dev/metrics": "{oops"}, "not a JSON object of numbers"),
    ({"pipeserve.dev/metrics": '["accuracy"]'}, "not a JSON object of numbers"),
])
def test_unusable_annotations_say_so(annotations: dict[str, str], match: str) -> None:
    with pytest.raises(UserError, match=match):
        gate.champion_from_annotations(annotations)
