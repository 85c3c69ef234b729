"""The champion/challenger gate: may the challenger replace the champion, by a declared rule?

A rule is clauses separated by ``;`` (all must hold)::

    f1_macro>=champion                   not worse than the champion
    log_loss<=champion+0.02              at most 0.02 worse (absolute)
    accuracy>=champion-1%                at most 1 % worse (relative to the champion's value)
    f1_macro>=0.9                        a floor, whatever the champion
    default                              the task's default clause (below)

Operators are ``>=``, ``>``, ``<=``, ``<``; metric names are those of :mod:`pipeserve.evaluation`.
The empty rule means ``default``: the task's primary metric must not be worse than the champion's,
``f1_macro>=champion`` for classification and ``rmse<=champion`` for regression (see
:data:`PRIMARY_METRIC` for why). Without a champion (the first version) clauses that compare with
the champion pass and floors still apply. A metric the challenger (or, for a comparison, the
champion) lacks fails its clause: the gate never passes what it could not check.

:func:`evaluate` returns a :class:`Verdict` that renders as Markdown for the KFP UI.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from pipeserve.catalog import CLASSIFICATION, REGRESSION
from pipeserve.errors import ConfigError, NotFound, UserError
from pipeserve.modelcard import ANNOTATION_PREFIX

if TYPE_CHECKING:
    from pipeserve.kube.client import Cluster
    from pipeserve.registry import Registry

# f1_macro, not accuracy: on imbalanced data (breast_cancer is 63/37) accuracy hides a model that
# neglects the minority class, and macro-F1 weighs every class equally; not roc_auc: evaluation
# leaves it out when the test split lacks a class, and it saturates at 1.0 on easy data; not
# log_loss: a calibration measure whose small fluctuations would hold back equally good models
# (use it as a secondary clause with a margin). rmse for regression: the loss in the target's unit.
PRIMARY_METRIC = {CLASSIFICATION: "f1_macro", REGRESSION: "rmse"}
TASK_METRICS = {CLASSIFICATION: ("accuracy", "f1_macro", "log_loss", "roc_auc"), REGRESSION: ("rmse", "mae", "r2")}
LOWER_IS_BETTER = frozenset({"log_loss", "rmse", "mae"})
# kube.builder.lineage_annotations rounds the pipeserve.dev/metrics values to this many decimals.
ANNOTATION_DECIMALS = 4
_CHAMPION = "champion"  # pipeserve.registry.CHAMPION
_EXAMPLE = "e.g. 'f1_macro>=champion; log_loss<=champion+0.02; accuracy>=0.9'"
_CLAUSE = re.compile(r"(?P<metric>[A-Za-z_][A-Za-z0-9_]*)\s*(?P<op>>=|<=|==|=|>|<)\s*(?P<rhs>.*)")
_CHAMPION_RHS = re.compile(r"champion\s*(?:(?P<sign>[+-])\s*(?P<offset>[0-9.]+(?:[eE][+-]?[0-9]+)?)\s*(?P<pct>%)?)?")
_OPS = {">=": lambda a, b: a >= b, ">": lambda a, b: a > b, "<=": lambda a, b: a <= b, "<": lambda a, b: a < b}


@dataclass(frozen=True)
class Clause:
    """One condition: ``metric op number`` (a floor/ceiling) or ``metric op champion[±offset[%]]``."""

    metric: str
    op: str
    value: float = 0.0
    champion: bool = False
    relative: bool = False

    def __str__(self) -> str:
        if not self.champion:
            return f"{self.metric}{self.op}{self.value:g}"
        if not self.value:
            return f"{self.metric}{self.op}champion"
        return f"{self.metric}{self.op}champion{self.value:+g}{'%' if self.relative else ''}"

    def threshold(self, champion_value: float | None) -> float | None:
        if not self.champion:
            return self.value
        if champion_value is None:
            return None
        offset = abs(champion_value) * self.value / 100 if self.relative else self.value
        return champion_value + offset


@dataclass(frozen=True)
class Rule:
    """Clauses that must all hold (see the module docstring for the syntax)."""

    clauses: tuple[Clause, ...]

    def __str__(self) -> str:
        return "; ".join(str(c) for c in self.clauses)


def default_clause(task: str) -> Clause:
    """The task's default: its primary metric must not be worse than the champion's."""
    metric = PRIMARY_METRIC.get(task)
    if metric is None:
        raise ConfigError(f"Unknown task {task!r}: expected {' or '.join(PRIMARY_METRIC)}.")
    return Clause(metric, "<=" if metric in LOWER_IS_BETTER else ">=", champion=True)


def parse_rule(text: str | None, task: str) -> Rule:
    """Parse a gate rule for ``task``; empty (or None) means ``default``.

    Raises:
        ConfigError: A clause is malformed, names a metric the task does not have, or compares
            with the champion in the direction that rewards a worse model.
    """
    parts = [p.strip() for p in re.split(r"[;\n]", text or "")]
    parts = [p for p in parts if p] or ["default"]
    return Rule(tuple(_parse_clause(p, i, task) for i, p in enumerate(parts, 1)))


def _parse_clause(text: str, index: int, task: str) -> Clause:
    where = f"Gate rule clause {index} {text!r}"
    if text.lower() == "default":
        return default_clause(task)
    m = _CLAUSE.fullmatch(text)
    if not m:
        raise ConfigError(f"{where} is not METRIC OP VALUE (OP: >=, >, <=, <; VALUE: a number or "
                          f"champion[±N[%]]); {_EXAMPLE}.")
    metric, op, rhs = m["metric"], m["op"], m["rhs"].strip()
    if op in ("=", "=="):
        raise ConfigError(f"{where}: equality is not a gate condition; use >= or <=; {_EXAMPLE}.")
    known = TASK_METRICS.get(task)
    if known is None:
        raise ConfigError(f"Unknown task {task!r}: expected {' or '.join(TASK_METRICS)}.")
    if metric not in known:
        raise ConfigError(f"{where}: {task} models have no metric {metric!r}; use one of {', '.join(known)}.")
    champ = _CHAMPION_RHS.fullmatch(rhs)
    if champ:
        offset = float(champ["offset"] or 0) * (-1 if champ["sign"] == "-" else 1)
        higher_ok = op.startswith(">")
        if higher_ok == (metric in LOWER_IS_BETTER):
            better = "lower" if metric in LOWER_IS_BETTER else "higher"
            fix = Clause(metric, "<=" if metric in LOWER_IS_BETTER else ">=", -offset, True, bool(champ["pct"]))
            raise ConfigError(f"{where}: {better} {metric} is better, so this holds back models better than the "
                              f"champion; did you mean {fix}?")
        return Clause(metric, op, offset, champion=True, relative=bool(champ["pct"]))
    try:
        value = float(rhs)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise ConfigError(f"{where}: expected a number or champion[±N[%]] after {op!r}, got {rhs!r}; {_EXAMPLE}.")
    return Clause(metric, op, value)


@dataclass(frozen=True)
class ChampionMetrics:
    """The metrics the challenger is compared with, and where they came from.

    Args:
        metrics: Held-out metrics of the champion.
        source: Where they were read, for the verdict (``registry iris@champion``, ...).
        name: Model name, if known.
        version: Champion version, if known.
        decimals: The values were rounded to this many decimals (annotations): the challenger's
            are rounded the same way before comparing, so an identical model is not "worse".
        data_fingerprint: Fingerprint of the data the champion was evaluated on.
    """

    metrics: dict[str, float]
    source: str
    name: str | None = None
    version: str | None = None
    decimals: int | None = None
    data_fingerprint: str | None = None


def champion_from_registry(registry: Registry, name: str) -> ChampionMetrics | None:
    """The ``champion`` version's metrics from the registry; None if there is no champion yet."""
    try:
        mv = registry.get(f"{name}@{_CHAMPION}")
    except NotFound:
        return None
    return champion_from_version(mv.to_dict())


def champion_from_version(version: Mapping[str, Any]) -> ChampionMetrics:
    """The champion's metrics from its registered version, as ``ModelVersion.to_dict()`` gives it.

    (The pipeline's register step reads the champion and hands this dict to the gate step, which
    then needs no registry client.)
    """
    name, number = version.get("name"), str(version["version"])
    return ChampionMetrics({str(k): float(v) for k, v in (version.get("metrics") or {}).items()},
                           f"registry {name}@{_CHAMPION} (version {number})", name, number,
                           data_fingerprint=version.get("data_fingerprint"))


def champion_from_annotations(annotations: Mapping[str, str], what: str = "the InferenceService") -> ChampionMetrics:
    """The served model's metrics from an InferenceService's ``pipeserve.dev/*`` annotations.

    Raises:
        UserError: No (or unreadable) ``pipeserve.dev/metrics`` annotation.
    """
    key = ANNOTATION_PREFIX + "metrics"
    raw = annotations.get(key)
    if not raw:
        raise UserError(f"{what} has no {key} annotation, so the served model's metrics are unknown; deploy it with "
                        "pipeserve, or compare with the registry's champion instead.")
    try:
        metrics = {str(k): float(v) for k, v in json.loads(raw).items()}
    except (ValueError, TypeError, AttributeError) as exc:
        raise UserError(f"{what}'s {key} annotation is not a JSON object of numbers: {raw[:80]!r}.") from exc
    name = annotations.get(ANNOTATION_PREFIX + "model-name")
    version = annotations.get(ANNOTATION_PREFIX + "model-version")
    label = f"{what} (serving {name} version {version})" if name else what
    return ChampionMetrics(metrics, label, name, version, ANNOTATION_DECIMALS,
                           annotations.get(ANNOTATION_PREFIX + "data-fingerprint"))


def champion_from_serving(cluster: Cluster, name: str, namespace: str | None = None) -> ChampionMetrics:
    """The served model's metrics: the ``pipeserve.dev/*`` annotations of a deployed InferenceService.

    Args:
        cluster: A connected :class:`pipeserve.kube.client.Cluster` (the kubeconfig's context, or
            the pod's own credentials inside a pipeline step).
        name: The InferenceService.
        namespace: Its namespace (default: the cluster connection's).

    Raises:
        ClusterError: The InferenceService does not exist or cannot be read.
        UserError: It carries no (readable) ``pipeserve.dev/metrics`` annotation.
    """
    isvc = cluster.get_inference_service(name, namespace or None)
    meta = isvc.get("metadata") or {}
    where = f"InferenceService {meta.get('namespace') or namespace or cluster.namespace}/{name}"
    return champion_from_annotations(meta.get("annotations") or {}, where)


@dataclass(frozen=True)
class ClauseResult:
    """How one clause fared: the values compared and the verdict."""

    clause: str
    metric: str
    challenger: float | None
    champion: float | None
    threshold: float | None
    passed: bool
    note: str = ""


@dataclass(frozen=True)
class Verdict:
    """The gate's decision: ``passed`` only if every clause passed."""

    passed: bool
    rule: str
    task: str
    results: tuple[ClauseResult, ...]
    challenger: dict[str, float]
    champion: ChampionMetrics | None
    challenger_label: str = "challenger"
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def decision(self) -> str:
        return "promote" if self.passed else "hold back"

    def summary(self) -> str:
        """One line: the decision and the clauses that decided it."""
        failed = [r for r in self.results if not r.passed]
        shown = failed or list(self.results)
        detail = "; ".join(f"{r.clause}: {_fmt(r.challenger)} vs {_fmt(r.threshold)}"
                           + (f" ({r.note})" if r.note else "") for r in shown)
        return f"gate {'passed' if self.passed else 'failed'} ({self.decision}): {detail}"

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["decision"] = self.decision
        return out

    def to_markdown(self) -> str:
        """Both metric sets, the rule, each clause and the verdict, for the KFP UI's Markdown viewer."""
        champ = self.champion
        lines = [f"# Gate: {'passed ✅ (promote)' if self.passed else 'failed ❌ (hold back)'}", "",
                 f"- **Rule:** `{self.rule}`", f"- **Challenger:** {self.challenger_label}",
                 f"- **Champion:** {champ.source if champ else 'none yet (first version)'}", "",
                 "| clause | challenger | champion | threshold | result |", "| --- | ---: | ---: | ---: | --- |"]
        lines += [f"| `{r.clause}` | {_fmt(r.challenger)} | {_fmt(r.champion)} | {_fmt(r.threshold)} | "
                  f"{'pass' if r.passed else '**fail**'}{' — ' + r.note if r.note else ''} |" for r in self.results]
        lines += ["", "## Metrics (held-out test split)", "",
                  "| metric | challenger | champion | Δ |", "| --- | ---: | ---: | ---: |"]
        theirs = champ.metrics if champ else {}
        for metric in sorted(set(self.challenger) | set(theirs)):
            a, b = self.challenger.get(metric), theirs.get(metric)
            delta = f"{a - b:+.4f}" if a is not None and b is not None else ""
            lines.append(f"| {metric}{' ↓' if metric in LOWER_IS_BETTER else ''} | {_fmt(a)} | {_fmt(b)} | {delta} |")
        lines += ["", "↓: lower is better."]
        if self.notes:
            lines += ["", *[f"> {n}" for n in self.notes]]
        return "\n".join(lines) + "\n"


def evaluate(challenger: Mapping[str, float], champion: ChampionMetrics | None, rule: str | Rule | None = None, *,
             task: str, challenger_label: str = "challenger", data_fingerprint: str | None = None) -> Verdict:
    """Judge the challenger's held-out metrics against the champion's by ``rule``.

    Args:
        challenger: The challenger's metrics (its model card's ``metrics``).
        champion: The champion's metrics, or None when there is no champion (first version).
        rule: A rule string or parsed Rule; None or empty means the task's default.
        task: ``classification`` or ``regression``.
        challenger_label: How to name the challenger in the verdict (``iris/3``).
        data_fingerprint: The challenger's data fingerprint; a different one on the champion
            adds a note (metrics from different test data).
    """
    parsed = rule if isinstance(rule, Rule) else parse_rule(rule, task)
    decimals = champion.decimals if champion else None
    results = tuple(_judge(c, challenger, champion, decimals) for c in parsed.clauses)
    notes = []
    if champion is None:
        notes.append("No champion yet: clauses that compare with the champion pass; floors still apply.")
    elif data_fingerprint and champion.data_fingerprint and data_fingerprint != champion.data_fingerprint:
        notes.append(f"The champion was evaluated on other data ({champion.data_fingerprint[:19]}… vs "
                     f"{data_fingerprint[:19]}…): the metrics come from different test splits.")
    return Verdict(all(r.passed for r in results), str(parsed), task, results, dict(challenger), champion,
                   challenger_label, tuple(notes))


def _judge(clause: Clause, challenger: Mapping[str, float], champion: ChampionMetrics | None,
           decimals: int | None) -> ClauseResult:
    mine = _number(challenger.get(clause.metric))
    theirs = _number(champion.metrics.get(clause.metric)) if champion else None
    base = dict(clause=str(clause), metric=clause.metric, challenger=mine, champion=theirs)
    if mine is None:
        return ClauseResult(**base, threshold=None, passed=False, note=f"the challenger has no {clause.metric}")
    if clause.champion and champion is None:
        return ClauseResult(**base, threshold=None, passed=True, note="no champion to compare with")
    if clause.champion and theirs is None:
        return ClauseResult(**base, threshold=None, passed=False, note=f"the champion has no {clause.metric}")
    threshold = clause.threshold(theirs)
    assert threshold is not None
    if decimals is not None:
        passed = _OPS[clause.op](round(mine, decimals), round(threshold, decimals))
    else:  # absorb float noise from champion+offset arithmetic: ties pass >= and <=, fail > and <
        eps = 1e-12 * max(1.0, abs(threshold))
        lenient = clause.op in (">=", "<=")
        passed = _OPS[clause.op](mine + (eps if clause.op.startswith(">") == lenient else -eps), threshold)
    return ClauseResult(**base, threshold=threshold, passed=passed)


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.4f}"


@dataclass(frozen=True)
class GateResult:
    """The gate's verdict on a registered version, and the champion to compare-and-set against.

    Args:
        verdict: The decision and its reasons.
        version: The challenger's version.
        expected_champion: The registry's champion when the gate read it (None: none yet); a
            promote after a passed gate expects it still, so a champion moved meanwhile is noticed.
    """

    verdict: Verdict
    version: str
    expected_champion: str | None


def gate_registered(registry: Registry, name: str, version: str, rule: str | Rule | None = None, *,
                    serving: tuple[Cluster, str, str | None] | None = None) -> GateResult:
    """Judge registered version ``name/version`` against the champion by ``rule``.

    The champion's metrics come from the registry's ``champion`` version, or, with ``serving``
    (a connected cluster, an InferenceService name and namespace), from that InferenceService's
    lineage annotations: what is really served. Either way the registry's champion is what a
    following promote compares-and-sets against.

    Raises:
        NotFound: No such version.
        ConfigError: A bad rule.
        ClusterError: The InferenceService cannot be read.
    """
    mv = registry.get(f"{name}/{version}")
    task = mv.task or ""
    parsed = rule if isinstance(rule, Rule) else parse_rule(rule, task)  # a bad rule fails before any cluster call
    registered = champion_from_registry(registry, name)
    champion = champion_from_serving(*serving) if serving else registered
    verdict = evaluate(mv.metrics, champion, parsed, task=task, challenger_label=f"{name}/{mv.version}",
                       data_fingerprint=mv.data_fingerprint)
    return GateResult(verdict, mv.version, registered.version if registered else None)
