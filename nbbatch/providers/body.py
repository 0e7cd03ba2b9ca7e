"""Reading a response body within a size cap that holds for what is decoded, as it is decoded.

httpx would inflate each compressed chunk whole before the caller could count it: 1.8 KB of
`Content-Encoding: gzip, gzip` becomes gigabytes in one call. Here the raw bytes are read and
inflated in bounded steps, and one content coding is accepted at most (gzip or deflate, as
the client asks for): a stack of them is refused unread.
"""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator, Iterator

import httpx

ACCEPT_ENCODING = "gzip, deflate"  # what the client asks for, and all it will decode
_STEP = 1 << 20  # bytes inflated per step: memory per response stays near cap + a step


class BodyTooLarge(Exception):
    """The body (as decoded) is over the cap."""


class BadEncoding(Exception):
    """A content coding that is refused (stacked, unknown) or data that does not decode."""


async def read_capped(response: httpx.Response, max_bytes: int) -> bytes:
    """The whole decoded body of `response`, or BodyTooLarge past `max_bytes`."""
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise BodyTooLarge  # refused unread when the server announces it
    try:
        ready = response.content  # built in memory by an in-process transport: read already
    except httpx.ResponseNotRead:
        pass
    else:
        if len(ready) > max_bytes:
            raise BodyTooLarge
        return ready
    body = bytearray()
    async for piece in decoded(response):
        body += piece
        if len(body) > max_bytes:
            raise BodyTooLarge
    return bytes(body)


async def decoded(response: httpx.Response) -> AsyncIterator[bytes]:
    """The body of a streamed `response`, decoded, in pieces of at most a megabyte (or as
    they arrive): however well a chunk compresses, no piece is larger."""
    inflate = _decoder(response.headers)
    async for chunk in response.aiter_raw():
        if inflate is None:
            yield chunk
            continue
        for piece in inflate.feed(chunk):
            yield piece
    if inflate is not None:
        yield inflate.finish()


def _decoder(headers: httpx.Headers) -> _Inflater | None:
    codings = [c.strip().lower() for c in headers.get_list("content-encoding", split_commas=True)]
    codings = [c for c in codings if c and c != "identity"]
    if not codings:
        return None
    if len(codings) > 1:
        raise BadEncoding(f"the response stacks content codings ({', '.join(codings)}); one "
                          "at most is accepted")
    if codings[0] not in ("gzip", "x-gzip", "deflate"):
        raise BadEncoding(f"the response uses content coding {codings[0]!r}, which was not "
                          f"asked for ({ACCEPT_ENCODING})")
    return _Inflater(codings[0])


class _Inflater:
    """gzip, or deflate with or without its zlib wrapper (servers send both)."""

    def __init__(self, coding: str) -> None:
        self._deflate = coding == "deflate"
        self._z = zlib.decompressobj(zlib.MAX_WBITS if self._deflate else 16 + zlib.MAX_WBITS)
        self._started = False

    def feed(self, data: bytes) -> Iterator[bytes]:
        """The inflated bytes of `data`, a step at a time."""
        if not self._started and self._deflate and not _zlib_header(data):
            self._z = zlib.decompressobj(-zlib.MAX_WBITS)  # raw deflate, no zlib header
        self._started = True
        while data and not self._z.eof:
            try:
                piece = self._z.decompress(data, _STEP)
            except zlib.error as exc:
                raise BadEncoding(f"the compressed response does not decode ({exc})") from None
            yield piece
            data = self._z.unconsumed_tail

    def finish(self) -> bytes:
        try:
            rest = self._z.flush()  # all input was inflated in bounded steps: little is left
        except zlib.error as exc:
            raise BadEncoding(f"the compressed response does not decode ({exc})") from None
        if not self._z.eof:
            raise BadEncoding("the compressed response does not decode (it ends early)")
        return rest


def _zlib_header(data: bytes) -> bool:
    return len(data) >= 2 and data[0] & 0x0F == 8 and ((data[0] << 8) | data[1]) % 31 == 0
