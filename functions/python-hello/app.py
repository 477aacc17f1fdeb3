"""python-hello: a wasi:http handler written in Python and built with componentize-py.

It shows that components from another language's official toolchain run on fnhost unchanged.
It answers with the GREETING environment variable and the path it was called with.

Build: componentize-py -d wit -w wasi:http/proxy@0.2.12 componentize app -o python-hello.wasm
(run in this directory, with -d pointing at the repository's wit/).
"""
import os

from componentize_py_types import Ok
from wit_world import exports
from wit_world.imports.types import (
    Fields,
    IncomingRequest,
    OutgoingBody,
    OutgoingResponse,
    ResponseOutparam,
)


class IncomingHandler(exports.IncomingHandler):
    def handle(self, request: IncomingRequest, response_out: ResponseOutparam) -> None:
        greeting = os.environ.get("GREETING", "Hello")
        path = request.path_with_query() or "/"
        response = OutgoingResponse(Fields.from_list([("content-type", b"text/plain")]))
        body = response.body()
        ResponseOutparam.set(response_out, Ok(response))
        with body.write() as stream:
            stream.blocking_write_and_flush(f"{greeting} from Python at {path}\n".encode())
        OutgoingBody.finish(body, None)
