"""The data lineage a model card records: where the data came from, how it was split, its fingerprint.

Its own small module (it needs :mod:`pipeserve.data` only), so the pipeline's load_data step does
not carry the packaging and evaluation code that :mod:`pipeserve.workflow` imports.
"""

from __future__ import annotations

from typing import Any

from pipeserve import data as data_mod


def data_lineage(ds: data_mod.Dataset, test_size: float, random_state: int) -> dict[str, Any]:
    """The model card's ``data`` entry for a dataset and its split."""
    return {
        "source": ds.source,
        "target": ds.target,
        "rows": int(len(ds.frame)),
        "test_size": test_size,
        "random_state": random_state,
        "fingerprint": data_mod.fingerprint(ds.frame),
        "schema": data_mod.schema(ds),
    }
