"""The tutorial-style Flask app: ``POST /predict`` with ``{"instances": [[...], ...]}`` answered with
``{"predictions": [...]}``, run with ``app.run()`` (Werkzeug's threaded server) as tutorials do.

    python benchmarks/apps/flask_app.py REPO --port 17092   # model chosen with ?model=NAME
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> None:
    import numpy as np
    from common import baseline_options
    from flask import Flask, jsonify, request

    opts, models = baseline_options(__doc__.splitlines()[0])
    default = next(iter(models))

    app = Flask(__name__)

    @app.route("/health")
    def health():
        return jsonify({"status": "ok"})

    @app.route("/predict", methods=["POST"])
    def predict():
        data = request.get_json()
        model = models[request.args.get("model", default)]
        predictions = model.predict(np.array(data["instances"]))
        return jsonify({"predictions": predictions.tolist()})

    app.run(host=opts.host, port=opts.port)  # defaults: threaded, one log line per request


if __name__ == "__main__":
    main()
