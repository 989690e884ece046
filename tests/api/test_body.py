"""``api.body.keep_body`` relies on Starlette reading the private ``Request._body``: these fail
if a Starlette upgrade stops doing so (no Redis, no server: a bare ASGI request)."""

import asyncio

from starlette.requests import Request

from api.body import keep_body

BOUNDARY = "b0undary"
FORM = (
    f"--{BOUNDARY}\r\n"
    'Content-Disposition: form-data; name="file"; filename="a.png"\r\n'
    "Content-Type: image/png\r\n\r\n"
    "PNGDATA\r\n"
    f"--{BOUNDARY}\r\n"
    'Content-Disposition: form-data; name="version"\r\n\r\n'
    "2\r\n"
    f"--{BOUNDARY}--\r\n"
).encode()


def spent_request(content_type: str) -> Request:
    """A request whose stream has been read already (as ``read_capped`` leaves it)."""

    async def receive() -> dict:
        raise AssertionError("the stream was read already: Starlette must not read it again")

    scope = {"type": "http", "method": "POST", "path": "/", "headers": [(b"content-type", content_type.encode())]}
    return Request(scope, receive)


def test_the_kept_body_is_what_body_and_stream_return():
    request = spent_request("application/json")
    keep_body(request, b'{"input": [1, 2]}')

    async def read() -> tuple[bytes, bytes]:
        streamed = b"".join([chunk async for chunk in request.stream()])
        return await request.body(), streamed

    assert asyncio.run(read()) == (b'{"input": [1, 2]}', b'{"input": [1, 2]}')


def test_the_form_parser_reads_the_kept_body():
    request = spent_request(f"multipart/form-data; boundary={BOUNDARY}")
    keep_body(request, FORM)

    async def parse() -> tuple[str, str, bytes]:
        form = await request.form()
        try:
            upload = form["file"]
            return form["version"], upload.filename, await upload.read()
        finally:
            await request.close()  # the upload's spooled file, as Starlette closes it after a response

    assert asyncio.run(parse()) == ("2", "a.png", b"PNGDATA")
