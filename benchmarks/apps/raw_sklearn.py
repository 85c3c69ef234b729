"""The minimal hand-written server the issue quotes (~2,200 req/s at 1 row): a raw ASGI app on
uvicorn (uvloop + httptools) + orjson that takes a v2 JSON infer request, calls scikit-learn's
``predict`` and answers a v2 JSON response. No validation, no binary extension, no metrics.

    python benchmarks/apps/raw_sklearn.py REPO --port 17091
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import serve_lifespan  # noqa: E402


def make_app(estimators):
    import numpy as np
    import orjson

    ready = orjson.dumps({"ready": True})

    async def app(scope, receive, send):
        if scope["type"] != "http":
            await serve_lifespan(receive, send)
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
    from common import baseline_options

    opts, estimators = baseline_options(__doc__.splitlines()[0])
    uvicorn.run(make_app(estimators), host=opts.host, port=opts.port, loop="uvloop",
                http="httptools", log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
