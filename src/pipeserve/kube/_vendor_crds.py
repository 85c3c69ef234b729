"""Regenerate ``schemas/kserve-crds.json.gz``: strict JSON Schemas converted from the KServe CRDs.

The CRDs come from the KServe Go module that the local control plane builds its controller from
(``cluster/go/kserve/go.mod``; v0.20.0, because v0.21.0 is not served by the Go module proxy), so
the schema pipeserve checks against is the one the cluster installs. ``make vendor-crds`` runs::

    python -m pipeserve.kube._vendor_crds            # go mod download, then config/crd/full/
    python -m pipeserve.kube._vendor_crds DIR        # or any folder holding the CRD YAMLs

The CRDs' ``openAPIV3Schema`` is turned into JSON Schema (Draft 7) that behaves like the API
server with ``fieldValidation=Strict`` (kubectl's default): every object that lists its
properties gets ``additionalProperties: false``, ``x-kubernetes-int-or-string`` becomes
integer-or-string, ``nullable`` becomes a ``null`` type. The result (about 30 KB gzipped) is
committed, so validation works without the CRD files and loads in milliseconds instead of the
seconds a YAML parse of the 2 MB CRD takes.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

OUTPUT = Path(__file__).with_name("schemas") / "kserve-crds.json.gz"
CRD_FILES = (
    "serving.kserve.io_inferenceservices.yaml",
    "serving.kserve.io_servingruntimes.yaml",
    "serving.kserve.io_clusterservingruntimes.yaml",
)


def to_jsonschema(node: Any, strict: bool = True) -> Any:
    """Convert a CRD openAPIV3Schema node to JSON Schema, closing objects when ``strict``."""
    if isinstance(node, list):
        return [to_jsonschema(n, strict) for n in node]
    if not isinstance(node, dict):
        return node
    out = {
        k: to_jsonschema(v, strict)
        for k, v in node.items()
        if not k.startswith("x-kubernetes-") and k not in ("nullable", "description")
    }
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    if (
        strict
        and out.get("type") == "object"
        and "properties" in out
        and "additionalProperties" not in out
        and not node.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def convert(specs_dir: Path) -> dict[str, Any]:
    """Read the CRDs under ``specs_dir`` and return ``{"apiVersion/kind": schema, "_provenance": ...}``."""
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    out: dict[str, Any] = {"_provenance": {}}
    for filename in CRD_FILES:
        path = specs_dir / filename
        raw = path.read_bytes()
        crd = yaml.load(raw, Loader=loader)
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            if not version.get("served", True):
                continue
            schema = to_jsonschema(version["schema"]["openAPIV3Schema"])
            # The CRD leaves metadata open; pipeserve.kube.schema puts a strict ObjectMeta there.
            schema["properties"]["metadata"] = {"type": "object"}
            out[f"{group}/{version['name']}/{kind}"] = schema
        out["_provenance"][filename] = {"sha256": hashlib.sha256(raw).hexdigest(), "bytes": len(raw)}
    provenance = specs_dir / "PROVENANCE.md"
    if provenance.is_file():
        out["_provenance"]["notes"] = [
            line for line in provenance.read_text().splitlines() if line.startswith("| serving.kserve.io_")
        ]
    return out


KSERVE_MODULE = "github.com/kserve/kserve"
WRAPPER_GO_MOD = Path(__file__).resolve().parents[3] / "cluster" / "go" / "kserve" / "go.mod"


def kserve_module() -> tuple[str, Path]:
    """``(version, folder)`` of the KServe module the cluster's wrapper go.mod pins (downloaded if needed)."""
    import re
    import subprocess

    match = re.search(rf"^\s*{re.escape(KSERVE_MODULE)} (v\S+)", WRAPPER_GO_MOD.read_text(), re.M)
    if match is None:
        raise SystemExit(f"{WRAPPER_GO_MOD} does not require {KSERVE_MODULE}")
    version = match.group(1)
    out = subprocess.run(["go", "mod", "download", "-json", f"{KSERVE_MODULE}@{version}"], capture_output=True,
                         text=True, check=True, cwd=WRAPPER_GO_MOD.parent)
    return version, Path(json.loads(out.stdout)["Dir"])


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        print(__doc__, file=sys.stderr)
        return 2
    if argv:
        data = convert(Path(argv[0]))
    else:
        version, folder = kserve_module()
        data = convert(folder / "config" / "crd" / "full")
        data["_provenance"]["module"] = f"{KSERVE_MODULE}@{version} config/crd/full (Go module proxy)"
    payload = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
    # mtime=0 keeps the gzip bytes reproducible.
    OUTPUT.write_bytes(gzip.compress(payload, compresslevel=9, mtime=0))
    kinds = sorted(k for k in data if not k.startswith("_"))
    print(f"wrote {OUTPUT} ({OUTPUT.stat().st_size} bytes): {', '.join(kinds)}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
