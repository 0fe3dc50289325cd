"""Reading a STOW-RS request body (`multipart/related`, RFC 2046) part by part, in bounded memory.

A hospital may send a whole CT in one request: every part is spooled to a temp file as it
arrives and handed over when complete, with at most a couple of parts read ahead of the one
being stored, so memory holds one 1 MiB chunk, a boundary's worth of look-behind and a few
small parts, whatever the request size.

Also here: the request body as a stream, for servers that hand us chunked transfer encoding
undecoded (Django's runserver and test server) as well as those that decode it (gunicorn).
"""

import tempfile
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from queue import Full, Queue

from django.conf import settings
from django.core.handlers.wsgi import LimitedStream
from django.utils.http import parse_header_parameters

# gunicorn receives up to 1 MiB ahead and copies what it holds back into its buffer on each
# read: reading in 64 KiB steps made it copy every byte ~16 times (a third of a STOW-RS
# request's time, profiled). Reads as large as its read-ahead take each byte once.
CHUNK = 1024 * 1024
MAX_HEADER_BYTES = 16 * 1024
MAX_PREAMBLE_BYTES = 64 * 1024


class MalformedBody(Exception):
    """The body isn't the multipart message its Content-Type announced."""


@dataclass
class Part:
    headers: dict[str, str]
    file: object | None  # a temp file positioned at 0; None when the part was too large
    size: int

    def close(self) -> None:
        if self.file is not None:
            self.file.close()

    @property
    def content_type(self) -> str:
        media_type, _params = parse_header_parameters(self.headers.get("content-type", ""))
        return media_type


def boundary_of(content_type: str) -> tuple[str, str, str]:
    """(media type, the `type` parameter, boundary) of a Content-Type header."""
    media_type, params = parse_header_parameters(content_type or "")
    return media_type.lower(), params.get("type", "").lower(), params.get("boundary", "")


def iter_parts(stream, boundary: str, *, max_part_bytes: int):
    """Yield each part of `stream` as a Part whose file is closed once the caller moves on."""
    for part in _owned_parts(stream, boundary, max_part_bytes):
        try:
            yield part
        finally:
            part.close()


@contextmanager
def parts_read_ahead(stream, boundary: str, *, max_part_bytes: int, depth: int = 2):
    """The parts of `stream`, read and parsed by a background thread up to `depth` parts ahead
    of the caller, whose file the caller closes (Part.close) when done with it.

    Storing a part (hashing, writing, indexing) and receiving the next one then overlap: the
    socket reads, the hashing and the file writes all release the GIL. A one-request STOW-RS
    of a CT went from 184-187 to 233-286 images/s this way on 2 cores (bench/push.py).

    Memory stays bounded: `depth` parts wait at most, each spooled to disk past the upload
    threshold. A MalformedBody is raised where it happened in the sequence, after the parts
    before it."""
    queue = Queue(maxsize=depth)
    stopping = threading.Event()

    def hand_over(item) -> bool:
        while not stopping.is_set():
            try:
                queue.put(item, timeout=0.1)
                return True
            except Full:
                continue
        return False

    def read_all() -> None:
        try:
            for part in _owned_parts(stream, boundary, max_part_bytes, stopping):
                if not hand_over(part):
                    part.close()
                    return
            hand_over(_END)
        except _Stopped:
            return
        except BaseException as error:  # handed to the caller, who raises it in its thread
            hand_over(_Raised(error))

    def parts():
        while True:
            item = queue.get()
            if item is _END:
                return
            if isinstance(item, _Raised):
                raise item.error
            yield item

    reader = threading.Thread(target=read_all, name="stow-read-ahead", daemon=True)
    reader.start()
    try:
        yield parts()
    finally:
        # The caller stopped early (or finished): stop the reader between two reads, close
        # what it had already spooled, and wait for it, so nothing reads the request after
        # the response has gone.
        stopping.set()
        reader.join()
        while not queue.empty():
            item = queue.get_nowait()
            if isinstance(item, Part):
                item.close()


_END = object()


@dataclass
class _Raised:
    error: BaseException


class _Stopped(Exception):
    """The reader was told to stop (the caller gave up on the rest of the body)."""


def _owned_parts(stream, boundary: str, max_part_bytes: int, stopping=None):
    """Each part, with a file its receiver must close."""
    delimiter = b"--" + boundary.encode("latin-1")
    reader = _Buffered(stream, stopping)
    if not reader.skip_past(delimiter, MAX_PREAMBLE_BYTES):
        raise MalformedBody("the body has no opening boundary")
    while True:
        ending = reader.read_exact(2)
        if ending == b"--":
            return  # the close delimiter: everything after it is an epilogue we ignore
        # Anything after a delimiter up to its line break is transport padding (RFC 2046 5.1.1).
        if ending != b"\r\n" and not reader.skip_past(b"\r\n", MAX_HEADER_BYTES, ending):
            raise MalformedBody("a boundary line doesn't end")
        headers = _parse_headers(reader.read_until(b"\r\n\r\n", MAX_HEADER_BYTES))
        # In memory up to Django's upload threshold (a CT slice is ~0.5 MB), on disk beyond.
        spool = tempfile.SpooledTemporaryFile(  # noqa: SIM115 (its receiver closes it)
            max_size=settings.FILE_UPLOAD_MAX_MEMORY_SIZE,
            prefix="phr-upload-",
            dir=settings.FILE_UPLOAD_TEMP_DIR,
        )
        try:
            size = reader.copy_until(b"\r\n" + delimiter, spool, max_part_bytes)
        except BaseException:
            spool.close()
            raise
        if size > max_part_bytes:
            spool.close()
            yield Part(headers, None, size)
        else:
            spool.seek(0)
            yield Part(headers, spool, size)


def _parse_headers(raw: bytes) -> dict[str, str]:
    headers = {}
    for line in raw.decode("latin-1").split("\r\n"):
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise MalformedBody("a part's header line has no colon")
        headers[name.strip().lower()] = value.strip()
    return headers


class _Buffered:
    """A byte stream with just enough look-ahead to find delimiters split across reads."""

    def __init__(self, stream, stopping=None):
        self.stream = stream
        self.stopping = stopping
        self.buffer = b""
        self.eof = False

    def _fill(self) -> bool:
        if self.eof:
            return False
        if self.stopping is not None and self.stopping.is_set():
            raise _Stopped
        chunk = self.stream.read(CHUNK)
        if not chunk:
            self.eof = True
            return False
        self.buffer += chunk
        return True

    def read_exact(self, n: int) -> bytes:
        while len(self.buffer) < n:
            if not self._fill():
                raise MalformedBody("the body ends in the middle of a part")
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def skip_past(self, marker: bytes, limit: int, already: bytes = b"") -> bool:
        self.buffer = already + self.buffer
        return self.read_until(marker, limit, required=False) is not None

    def read_until(self, marker: bytes, limit: int, required: bool = True) -> bytes | None:
        """The bytes before `marker` (consumed along with it), at most `limit` of them."""
        while (at := self.buffer.find(marker)) < 0:
            if len(self.buffer) > limit + len(marker) or not self._fill():
                if required:
                    raise MalformedBody("a part's headers are missing or too long")
                return None
        data, self.buffer = self.buffer[:at], self.buffer[at + len(marker) :]
        return data

    def copy_until(self, marker: bytes, out, max_bytes: int) -> int:
        """Copy bytes up to `marker` into `out` (consuming the marker); returns how many. Past
        `max_bytes` they are counted but no longer written, so an oversized part is skipped in
        constant space and the parts after it still arrive."""
        written = 0
        while True:
            at = self.buffer.find(marker)
            if at >= 0:
                written += self._emit(self.buffer[:at], out, written, max_bytes)
                self.buffer = self.buffer[at + len(marker) :]
                return written
            # Keep a marker's length back: it may straddle this read and the next.
            keep = len(marker) - 1
            if len(self.buffer) > keep:
                written += self._emit(self.buffer[:-keep], out, written, max_bytes)
                self.buffer = self.buffer[-keep:]
            if not self._fill():
                raise MalformedBody("the body ends in the middle of a part")

    @staticmethod
    def _emit(data: bytes, out, written: int, max_bytes: int) -> int:
        if written + len(data) <= max_bytes:
            out.write(data)
        return len(data)


# --- the request body as a stream --------------------------------------------------------------


def body_stream(request):
    """A readable stream of the request body, however the client framed it."""
    if request.META.get("CONTENT_LENGTH"):
        return request  # Django's own LimitedStream stops at Content-Length
    if "chunked" in request.META.get("HTTP_TRANSFER_ENCODING", "").lower():
        raw = request.META["wsgi.input"]
        if request.META.get("wsgi.input_terminated"):
            return raw  # gunicorn decodes the chunks and ends the stream for us
        return ChunkedReader(_socket_file(raw))
    return None


def _socket_file(stream):
    """Django's development and test server caps wsgi.input at Content-Length, which is 0 for a
    chunked request; the socket file it wraps is the one to read (and to drain fully, so the
    connection stays usable)."""
    if isinstance(stream, LimitedStream) and stream.limit == 0:
        return getattr(stream._read, "__self__", stream)
    return stream


class ChunkedReader:
    """Decode `Transfer-Encoding: chunked` (RFC 9112 7.1) from a raw socket file."""

    def __init__(self, raw):
        self.raw = raw
        self.left = 0
        self.done = False

    def read(self, size: int = CHUNK) -> bytes:
        if self.done:
            return b""
        if self.left == 0:
            line = self.raw.readline(1024)
            if not line.endswith(b"\n"):
                raise MalformedBody("a chunk size line is malformed")
            try:
                self.left = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise MalformedBody("a chunk size isn't a hexadecimal number") from None
            if self.left == 0:
                self._skip_trailers()
                self.done = True
                return b""
        data = self.raw.read(min(size, self.left))
        if not data:
            raise MalformedBody("the body ends in the middle of a chunk")
        self.left -= len(data)
        if self.left == 0:
            self.raw.readline(16)  # the CRLF that closes each chunk
        return data

    def _skip_trailers(self) -> None:
        for _ in range(100):
            if self.raw.readline(8192) in (b"\r\n", b"\n", b""):
                return
        raise MalformedBody("too many trailer lines")
