"""The HTTP ceiling: a raw ASGI app on uvicorn (uvloop + httptools) that reads the request body and
answers a fixed small v2-shaped JSON response. Nothing can serve a model faster over HTTP.

    python benchmarks/apps/null_asgi.py --port 17090
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import serve_lifespan  # noqa: E402  (common imports nothing heavy at module level)

BODY = b'{"model_name":"null","outputs":[{"name":"label","datatype":"INT64","shape":[1],"data":[0]}]}'
HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]


async def app(scope, receive, send):
    if scope["type"] != "http":
        await serve_lifespan(receive, send)
        return
    more = True
    while more:  # drain the body like a real server must
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    opts = parser.parse_args()
    uvicorn.run(app, host=opts.host, port=opts.port, loop="uvloop", http="httptools",
                log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
