"""Issue 8's "done when", end to end through `pipeserve run` (the pipeline on kfp.local, in process):
a weak model becomes version 1 and champion, a default one version 2 and champion through the gate,
a weak one version 3 held back; rollback gives 1, promote gives 2; MLflow's own client agrees and
`models:/iris@champion` downloads version 2."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from helpers import run_cli

from pipeserve.modelcard import find_model_dirs, read_card, verify_files
from pipeserve.registry.mlflow_registry import MlflowRegistry


def _run(tmp_path: Path, uri: str, label: str, *argv: str) -> tuple[str, Path]:
    out = tmp_path / label
    result = run_cli("run", *argv, "--registry", uri, "--no-smoke", "--output", str(out), "--cpu")
    assert result.code == 0, result.err[-3000:]
    return result.out, out


@pytest.mark.slow
def test_the_done_when_flow(registry: MlflowRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    uri = registry.settings.uri

    summary, out = _run(tmp_path, uri, "weak", "-p", "C=0.001")
    assert "Model iris v1: logistic_regression" in summary
    assert re.search(r"registry +iris version 1 \(challenger\)", summary)
    assert re.search(r"champion +iris@champion: unset -> 1", summary)
    assert read_card(out / "model" / "iris").version == "1" and (out / "inferenceservice.yaml").is_file()

    summary, out = _run(tmp_path, uri, "default")
    assert "Model iris v2" in summary and "gate passed (promote): f1_macro>=champion" in summary
    assert re.search(r"champion +iris@champion: 1 -> 2", summary)
    # The emitted manifest is the registered, re-stamped version 2, and the repository beside it too.
    manifest = (out / "inferenceservice.yaml").read_text()
    assert "pipeserve.dev/model-version: '2'" in manifest
    assert (out / "model" / "iris" / "2" / "model.onnx").is_file()
    assert (out / "gate.md").read_text().startswith("# Gate: passed")

    summary, out = _run(tmp_path, uri, "weak-again", "-p", "C=0.001")
    assert "Model iris v3" in summary and "gate failed (hold back): f1_macro>=champion: 0.6105 vs 0.9666" in summary
    assert re.search(r"champion +stays 2: version 3 was held back \(not an error\)", summary)
    assert "InferenceService   not emitted: the gate held the model back" in summary
    assert not (out / "inferenceservice.yaml").exists()
    assert (out / "gate.md").read_text().startswith("# Gate: failed")
    assert registry.aliases("iris") == {"champion": "2", "challenger": "3"}

    rollback = run_cli("models", "rollback", "iris", "--registry", uri)
    assert rollback.code == 0 and "iris@champion: 2 → 1 (rollback" in rollback.out
    promoted = run_cli("models", "promote", "iris", "2", "--registry", uri)
    assert promoted.code == 0 and "iris@champion: 1 → 2 (promote" in promoted.out

    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", uri)
    import mlflow
    from mlflow import MlflowClient

    client = MlflowClient()
    assert client.get_registered_model("iris").aliases == {"champion": 2, "challenger": 3}
    assert str(client.get_model_version_by_alias("iris", "champion").version) == "2"
    path = Path(mlflow.artifacts.download_artifacts("models:/iris@champion", dst_path=str(tmp_path / "download")))
    [model_dir] = find_model_dirs(path)
    card = read_card(model_dir)
    verify_files(model_dir, card)
    assert (card.name, card.version) == ("iris", "2") and (model_dir / "2" / "model.onnx").is_file()
    assert card.metrics["f1_macro"] > 0.9
    history = json.loads(run_cli("models", "history", "iris", "--registry", uri, "--output", "json").out)
    assert [(h["action"], h["from_version"], h["to_version"]) for h in history if h["alias"] == "champion"] == [
        ("promote", None, "1"), ("promote", "1", "2"), ("rollback", "2", "1"), ("promote", "1", "2")]
