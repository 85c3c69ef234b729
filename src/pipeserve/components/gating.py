"""The gate component: may the registered challenger replace the champion, by the declared rule?"""

from kfp.dsl import Artifact, Input, Markdown, Model, Output


def gate(
    registered_model: Input[Model],
    model_name: str,
    decision: Output[Markdown],
    champion_json: str = "",
    gate_rule: str = "default",
    serving_name: str = "",
    serving_namespace: str = "",
    library: Input[Artifact] = None,
) -> str:
    """Compare the challenger's held-out metrics with the champion's by a rule; render the decision.

    The champion's metrics are the registry's champion (read by register), or, when serving_name
    names a deployed InferenceService, its pipeserve.dev/* lineage annotations: what is really served.

    Args:
        registered_model: The registered challenger (its model card holds its held-out metrics).
        model_name: Model name.
        decision: Both metric sets, the rule, each clause and the verdict (KFP UI: Markdown); its
            metadata names the registry's champion version, which promote expects still.
        champion_json: The registry's champion version, from register (empty: none yet).
        gate_rule: Clauses separated by ';', e.g. 'f1_macro>=champion; log_loss<=champion+0.02';
            'default' (or empty): the task's primary metric must not get worse.
        serving_name: A deployed InferenceService whose annotations give the champion's metrics;
            empty to use the registry's champion.
        serving_namespace: Its namespace; empty for the pod's own (or the kubeconfig context's).
        library: The pipeserve library (load_data's library output); unset where pipeserve is installed.

    Returns:
        The decision: 'promote' or 'hold back'.
    """
    __import__("sys").path[:0] = [library.path] if library else []  # pipeserve from load_data's library artifact
    import json
    from pathlib import Path

    from pipeserve.gate import champion_from_serving, champion_from_version, evaluate, parse_rule
    from pipeserve.modelcard import read_card

    card = read_card(Path(registered_model.path) / model_name)
    rule = parse_rule(gate_rule, card.task)  # a bad rule fails before any cluster call
    registered = champion_from_version(json.loads(champion_json)) if champion_json else None
    champion = registered
    if serving_name:
        from pipeserve.kube.client import Cluster

        champion = champion_from_serving(Cluster().connect(), serving_name, serving_namespace or None)
    verdict = evaluate(card.metrics, champion, rule, task=card.task, challenger_label=f"{card.name}/{card.version}",
                       data_fingerprint=card.data.get("fingerprint"))
    with open(decision.path, "w") as fh:
        fh.write(verdict.to_markdown())
    decision.metadata.update({
        "decision": verdict.decision, "passed": verdict.passed, "rule": verdict.rule, "summary": verdict.summary(),
        "challenger_version": card.version, "champion_version": registered.version if registered else "",
        "champion_source": champion.source if champion else "",
    })
    return verdict.decision
