"""Moving batch files: uploads streamed from a file, results downloaded line by line.

The same rules as every other exchange in wire.py - capped answers, deadlines, no redirects,
transport failures as TransientError, messages redacted - for bodies too large to hold:
a requests file of thousands of lines, a responses file of 1.5 GB.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from typing import IO

import httpx

from nbbatch.errors import FatalError, TransientError
from nbbatch.providers.body import BadEncoding, BodyTooLarge, decoded, read_capped
from nbbatch.providers.wire import RawResponse, Redact, _describe, _exchange

_ERROR_BODY_BYTES = 1 << 20  # an error answer to a download is a short JSON document


async def send_bytes(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    content: bytes | AsyncIterator[bytes],
    headers: Mapping[str, str],
    timeout: float,
    max_bytes: int,
    provider: str,
    redact: Redact,
) -> RawResponse:
    """Send `content` as the body (bytes, or chunks streamed from a file: an upload), with
    the same deadline, cap on the answer and error mapping as post_json."""
    return await _exchange(
        client, method, url, {"content": content}, headers=headers, timeout=timeout,
        max_bytes=max_bytes, provider=provider, redact=redact,
    )


async def file_chunks(file: IO[bytes], chunk: int = 1 << 20) -> AsyncIterator[bytes]:
    """A file's bytes from the start, a chunk at a time: an upload never holds it whole."""
    file.seek(0)
    while data := file.read(chunk):
        yield data


async def get_lines(
    client: httpx.AsyncClient,
    url: str,
    *,
    headers: Mapping[str, str],
    timeout: float,
    max_line_bytes: int,
    provider: str,
    redact: Redact,
    on_error: Callable[[RawResponse], Exception],
) -> AsyncGenerator[bytes, None]:
    """GET `url` and yield its body line by line (without the newline), in bounded memory:
    a results file may be gigabytes. `timeout` bounds each wait for more bytes, not the
    whole download. A non-2xx answer is read (capped) and `on_error(raw)` is raised; a line
    over `max_line_bytes` and transport failures are TransientError."""
    start = time.monotonic()
    try:
        async with client.stream("GET", url, headers={**headers},
                                 timeout=httpx.Timeout(timeout)) as response:
            if not 200 <= response.status_code < 300:
                body = await read_capped(response, _ERROR_BODY_BYTES)
                raise on_error(RawResponse(response.status_code, response.headers, body,
                                           time.monotonic() - start))
            # A line's pieces are joined once, when its end arrives: each byte is copied
            # once on its way to the caller (lines of 1.5 MB come in 64 KB reads).
            parts: list[bytes] = []
            size = 0
            async for chunk in decoded(response):  # pieces of bounded size, however packed
                begin = 0
                while (end := chunk.find(b"\n", begin)) >= 0:
                    piece = chunk[begin:end]
                    line = b"".join((*parts, piece)) if parts else piece
                    parts, size, begin = [], 0, end + 1
                    if line.strip():  # no copy: bytes.strip returns a line without blanks
                        yield line
                rest = chunk[begin:] if begin else chunk
                parts.append(rest)
                size += len(rest)
                if size > max_line_bytes:
                    raise TransientError(f"a line of {url.rsplit('/', 1)[-1]} is larger than "
                                         f"{max_line_bytes} bytes", provider=provider)
            if (last := b"".join(parts)).strip():
                yield last
    except BodyTooLarge:
        raise TransientError(f"error response larger than {_ERROR_BODY_BYTES} bytes",
                             provider=provider) from None
    except BadEncoding as exc:
        raise TransientError(f"download failed: {exc}", provider=provider) from None
    except httpx.TimeoutException as exc:
        raise TransientError(redact(f"download stalled: {_describe(exc)}"),
                             provider=provider) from None
    except httpx.UnsupportedProtocol as exc:
        raise FatalError(redact(f"cannot send to {url}: {exc} (check base_url)"),
                         provider=provider) from None
    except httpx.HTTPError as exc:
        raise TransientError(redact(f"download failed: {_describe(exc)}"),
                             provider=provider) from None
