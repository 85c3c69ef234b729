"""Re-stamp a packaged model folder with the version the registry assigned; verify what comes back.

A model folder carries its version three times: the Triton version folder (``<name>/<v>/``),
``version_policy`` in ``config.pbtxt``, and the model card (``version`` and the paths in
``files``). :func:`restamp` writes a copy in which all three say the new number, and proves it
with :func:`pipeserve.modelcard.verify_files`.
"""

from __future__ import annotations

import dataclasses
import re
import shutil
from collections.abc import Mapping
from pathlib import Path

from pipeserve.errors import IntegrityError, UserError
from pipeserve.modelcard import (
    CARD_FILE,
    TRITON_CONFIG_FILE,
    ModelCard,
    find_model_dirs,
    hash_files,
    read_card,
    sha256_file,
    verify_files,
    write_card,
)

_VERSION_POLICY = re.compile(r"(version_policy\s*:\s*\{\s*specific\s*:\s*\{\s*versions\s*:\s*\[)\s*([0-9]+)\s*(\])")


def single_model_dir(path: Path) -> Path:
    """The one model folder at ``path`` (itself, or its only sub-folder holding a model card)."""
    found = find_model_dirs(Path(path))
    if len(found) != 1:
        names = ", ".join(p.name for p in found)
        raise UserError(
            f"{path} holds {len(found)} models ({names}); register one at a time: give the model folder, "
            f"e.g. {found[0]}."
        )
    return found[0]


def restamp(model_dir: Path, version: str, repository: Path, lineage: Mapping[str, str] | None = None) -> ModelCard:
    """Copy ``model_dir`` to ``repository/<name>/`` stamped with ``version``; return the new card.

    The source folder is verified against its card first (a tampered folder is never registered),
    and the copy is verified against the new card before it is returned.

    Args:
        model_dir: A packaged model folder (``<name>/`` with ``model-card.json``).
        version: The version number to stamp.
        repository: Empty folder the stamped copy is written into.
        lineage: Entries added to the card's ``lineage``.

    Raises:
        UserError: Not a model folder, or its layout is not the one pipeserve packages.
        IntegrityError: The source folder does not match its card.
    """
    model_dir = Path(model_dir)
    card = read_card(model_dir)
    verify_files(model_dir, card)
    if model_dir.name != card.name:
        raise UserError(f"Model folder {model_dir} is named {model_dir.name!r} but its card says {card.name!r}; "
                        "Triton needs the folder named after the model. Rename the folder.")
    old_dirs = sorted(p.name for p in model_dir.iterdir() if p.is_dir())
    if old_dirs != [card.version]:
        raise UserError(f"Model folder {model_dir} should hold exactly one version folder, {card.version!r} (its "
                        f"card's version); found {old_dirs}. Re-package the model with `pipeserve run`.")
    dest = Path(repository) / card.name
    shutil.copytree(model_dir, dest)
    if version != card.version:
        (dest / card.version).rename(dest / version)
    config = dest / TRITON_CONFIG_FILE
    if config.is_file():
        text, count = _VERSION_POLICY.subn(rf"\g<1> {version} \g<3>", config.read_text())
        if count != 1:
            raise UserError(f"{model_dir / TRITON_CONFIG_FILE} has {count} `version_policy: {{ specific: {{ versions: "
                            "[ N ] } }` entries, expected one. Re-package the model with `pipeserve run`.")
        config.write_text(text)
    files = hash_files(dest)
    renamed = {_renamed(rel, card.version, version): sha for rel, sha in card.files.items()}
    changed = sorted(rel for rel in set(files) | set(renamed)
                     if rel != TRITON_CONFIG_FILE and files.get(rel) != renamed.get(rel))
    if changed:  # only the version folder's name and config.pbtxt may change
        raise IntegrityError(f"Re-stamping {model_dir} as version {version} changed {', '.join(changed)}; "
                             "this is a bug in pipeserve, please report it.")
    stamped = dataclasses.replace(card, version=version, files=files, lineage={**card.lineage, **(lineage or {})})
    write_card(dest, stamped)
    verify_files(dest, stamped)
    return stamped




def _renamed(rel: str, old: str, new: str) -> str:
    head, sep, tail = rel.partition("/")
    return f"{new}/{tail}" if sep and head == old else rel


def verify_download(model_dir: Path, name: str, version: str, card_sha256: str | None) -> ModelCard:
    """Check a downloaded model folder: its card is the one registered, and every file matches it.

    Raises:
        IntegrityError: The card's sha256 differs from ``card_sha256`` (the registry's record), the
            card names another model or version, or a file does not match the card.
    """
    what = f"{name}/{version}"
    if not (model_dir / CARD_FILE).is_file():
        raise IntegrityError(f"The artifact of {what} has no {name}/{CARD_FILE}; it is not a pipeserve model folder.")
    if card_sha256 and sha256_file(model_dir / CARD_FILE) != card_sha256:
        raise IntegrityError(f"The model card of {what} was changed after registration (its sha256 differs from the "
                             "registry's pipeserve.card_sha256 tag); refusing it. Register the model again.")
    card = read_card(model_dir)
    if card.name != name or card.version != version:
        raise IntegrityError(f"The artifact of {what} holds {card.name}/{card.version}; refusing it.")
    try:
        verify_files(model_dir, card)
    except IntegrityError as exc:
        raise IntegrityError(f"{what} in the registry was tampered with: {exc}") from exc
    return card
