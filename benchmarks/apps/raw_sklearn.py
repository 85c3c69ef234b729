"""The minimal hand-written server the issue quotes (~2,200 req/s at 1 row): a raw ASGI app on
uvicorn (uvloop + httptools) + orjson that takes a v2 JSON infer request, calls scikit-learn's
``predict`` and answers a v2 JSON response. No validation, no binary extension, no metrics.

    python benchmarks/apps/raw_sklearn.py REPO --port 17091
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def make_app(estimators):
    import numpy as np
    import orjson

    ready = orjson.dumps({"ready": True})

    async def app(scope, receive, send):
        if scope["type"] != "http":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        chunks, more = [], True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        path = scope["path"]
        status, body = 200, ready
        if path.endswith("/infer"):
            name = path.split("/")[3]
            try:
                request = orjson.loads(b"".join(chunks))
                tensor = request["inputs"][0]
                X = np.asarray(tensor["data"], dtype=np.float32).reshape(tensor["shape"])
                y = estimators[name].predict(X)
                body = orjson.dumps({"model_name": name, "outputs": [
                    {"name": "label", "datatype": "INT64", "shape": [len(y)], "data": y.tolist()}]})
            except Exception as exc:  # a minimal server: everything is a 400
                status, body = 400, orjson.dumps({"error": str(exc)})
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})

    return app


def main() -> None:
    import uvicorn

    from common import load_estimators

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("repo")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    opts = parser.parse_args()
    estimators = {name: est for name, (est, _card) in load_estimators(opts.repo).items()}
    uvicorn.run(make_app(estimators), host=opts.host, port=opts.port, loop="uvloop",
                http="httptools", log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
