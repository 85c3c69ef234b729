"""Compare-and-set on aliases: two promotes race, one wins, the other fails clearly, nothing is lost."""

from __future__ import annotations

import contextlib
import dataclasses
import subprocess
import threading
import time

import pytest
from helpers import cli_command

from pipeserve.errors import ConflictError
from pipeserve.registry import CHAMPION, open_registry
from pipeserve.registry import _mlflow as mf
from pipeserve.registry.mlflow_registry import MlflowRegistry
from pipeserve.workflow import FitResult

# Long enough that both promotes are between their check and their write at the same time.
WINDOW_S = 0.5


@pytest.fixture
def three_versions(registry: MlflowRegistry, good_fit: FitResult) -> MlflowRegistry:
    for _ in range(3):
        registry.register(good_fit.model_dir)
    registry.promote("iris", "1", expected=None)
    return registry


def _widen_the_window(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every alias write waits first, so two promotes that both passed their check overlap.

    The move to 3 waits longer: without the lock, the move to 2 finishes (write, history, re-read)
    inside its window, the worst case for a check-then-write.
    """
    real = MlflowRegistry._write_alias

    def slow(self: MlflowRegistry, client: object, name: str, alias: str, version: str | None) -> None:
        time.sleep(WINDOW_S * (3 if version == "3" else 1))
        real(self, client, name, alias, version)

    monkeypatch.setattr(MlflowRegistry, "_write_alias", slow)


def _race(uri: str, versions: list[str], expected: str) -> dict[str, object]:
    """Promote each version from its own thread and registry client, all reading ``expected``."""
    results: dict[str, object] = {}
    start = threading.Barrier(len(versions))

    def promote(version: str) -> None:
        reg = open_registry(uri)  # a client of its own, as another process would have
        reg.aliases("iris")  # warm up: connect before the barrier
        start.wait()
        try:
            results[version] = reg.promote("iris", version, expected=expected, actor=f"writer-{version}")
        except ConflictError as exc:
            results[version] = exc

    threads = [threading.Thread(target=promote, args=(v,)) for v in versions]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


def test_two_concurrent_promotes_one_wins_the_other_fails_clearly(three_versions: MlflowRegistry,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    _widen_the_window(monkeypatch)
    results = _race(three_versions.settings.uri, ["2", "3"], expected="1")
    won = [v for v, r in results.items() if not isinstance(r, Exception)]
    lost = [r for r in results.values() if isinstance(r, ConflictError)]
    assert len(won) == 1 and len(lost) == 1, results
    winner = won[0]
    assert f"points to {winner}, not 1 as read before (moved by writer-{winner}" in str(lost[0])
    assert three_versions.get("iris@champion").version == winner
    moves = [(e.from_version, e.to_version, e.actor) for e in three_versions.history("iris", CHAMPION)]
    assert moves == [(None, "1", three_versions.settings.actor), ("1", winner, f"writer-{winner}")]  # no lost move
    assert three_versions.rollback("iris").to_version == "1"


def test_without_the_lock_the_same_race_loses_a_move(three_versions: MlflowRegistry,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Why the lock exists: MLflow's alias writes are last-writer-wins; both promotes 'succeed'."""
    _widen_the_window(monkeypatch)
    monkeypatch.setattr(mf, "alias_lock", lambda *args: contextlib.nullcontext())
    results = _race(three_versions.settings.uri, ["2", "3"], expected="1")
    assert not any(isinstance(r, Exception) for r in results.values()), results  # both "won"
    assert three_versions.get("iris@champion").version == "3"
    assert [e.to_version for e in three_versions.history("iris", CHAMPION)] == ["1", "3"]  # the move to 2 is lost


def test_a_held_lock_makes_a_promote_wait_then_give_up_clearly(three_versions: MlflowRegistry) -> None:
    client = three_versions._client()
    client.create_registered_model(mf.LOCK_PREFIX + "iris",
                                   tags={"pipeserve.lock": "x", "pipeserve.lock.actor": "bob@ci"})
    impatient = MlflowRegistry(dataclasses.replace(three_versions.settings, lock_wait=0.5))
    with pytest.raises(ConflictError, match=r"aliases of iris are being moved by bob@ci .* gave up after 0 s") as info:
        impatient.promote("iris", "2")
    assert "\n" not in str(info.value)
    assert three_versions.get("iris@champion").version == "1"


def test_an_abandoned_lock_expires(three_versions: MlflowRegistry) -> None:
    client = three_versions._client()
    client.create_registered_model(mf.LOCK_PREFIX + "iris", tags={"pipeserve.lock": "crashed"})
    time.sleep(1.1)
    reg = MlflowRegistry(dataclasses.replace(three_versions.settings, lock_ttl=1.0))
    assert reg.promote("iris", "2", expected="1").to_version == "2"
    assert [m.name for m in client.search_registered_models()] == ["iris"]  # no lock left behind


def test_the_lock_is_released_when_the_move_fails(three_versions: MlflowRegistry) -> None:
    with pytest.raises(ConflictError):
        three_versions.promote("iris", "2", expected="3")
    assert [m.name for m in three_versions._client().search_registered_models()] == ["iris"]


def run_concurrently(commands: list[list[str]], timeout: float = 240) -> list[subprocess.CompletedProcess[str]]:
    procs = [subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for c in commands]
    done = []
    for cmd, proc in zip(commands, procs, strict=False):
        out, err = proc.communicate(timeout=timeout)
        done.append(subprocess.CompletedProcess(cmd, proc.returncode, out, err))
    return done


def check_cli_race(uri: str, registry: MlflowRegistry) -> None:
    """Two `pipeserve models promote` processes that both read champion 1: exactly one moves it."""
    results = run_concurrently([cli_command("models", "promote", "iris", v, "--expect", "1", "--registry", uri)
                                for v in ("2", "3")])
    codes = sorted(r.returncode for r in results)
    assert codes == [0, 1], [(r.returncode, r.stdout, r.stderr) for r in results]
    winner = next(r for r in results if r.returncode == 0)
    loser = next(r for r in results if r.returncode == 1)
    version = winner.args[winner.args.index("promote") + 2]
    assert f"iris@champion: 1 → {version}" in winner.stdout
    [line] = loser.stderr.strip().splitlines()
    assert line.startswith("pipeserve models promote: error: Cannot move iris@champion to ")
    assert f"it points to {version}, not 1" in line
    assert registry.get("iris@champion").version == version
    assert [e.to_version for e in registry.history("iris", CHAMPION)] == ["1", version]


@pytest.mark.slow
def test_two_promote_processes_on_one_sqlite_file(three_versions: MlflowRegistry) -> None:
    check_cli_race(three_versions.settings.uri, three_versions)

