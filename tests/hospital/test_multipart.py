"""The streaming multipart/related reader and the chunked-body decoder, on real bytes."""

import io
import tempfile
import time

import pytest

from phr.hospital import multipart
from phr.hospital.multipart import ChunkedReader, MalformedBody, iter_parts
from tests.hospital.conftest import BOUNDARY, dicom_bytes, multipart_body


class Trickle(io.RawIOBase):
    """A stream that returns at most `step` bytes per read, so boundaries fall across reads."""

    def __init__(self, data: bytes, step: int):
        self.data, self.step, self.pos = data, step, 0

    def read(self, size=-1):
        size = self.step if size is None or size < 0 else min(size, self.step)
        chunk = self.data[self.pos : self.pos + size]
        self.pos += len(chunk)
        return chunk


def read_all(stream, max_part_bytes=10**9):
    return [
        (part.headers, part.file.read() if part.file else None, part.size)
        for part in iter_parts(stream, BOUNDARY, max_part_bytes=max_part_bytes)
    ]


@pytest.mark.parametrize("step", [1, 7, len(BOUNDARY) + 3, 65536])
def test_parts_come_back_byte_identical_whatever_the_read_sizes(step):
    originals = [dicom_bytes("CT_small.dcm"), dicom_bytes("MR_small.dcm"), b""]
    body = multipart_body(originals)
    parts = read_all(Trickle(body, step))
    assert [data for _h, data, _s in parts] == originals
    assert all(h["content-type"] == "application/dicom" for h, _d, _s in parts)


def test_a_part_may_contain_text_that_looks_almost_like_the_boundary():
    # RFC 2046 makes the sender pick a boundary that never follows CRLF-- in the content; near
    # misses must pass through untouched.
    tricky = f"--{BOUNDARY[:-1]}\r\n-{BOUNDARY}\r\n--{BOUNDARY[:5]}".encode()
    body = multipart_body([tricky])
    assert read_all(io.BytesIO(body))[0][1] == tricky


def test_preamble_padding_and_epilogue_are_ignored():
    body = (
        b"This is a preamble.\r\n"
        + multipart_body([b"abc"]).replace(
            f"--{BOUNDARY}\r\n".encode(), f"--{BOUNDARY}  \r\n".encode(), 1
        )
        + b"epilogue"
    )
    assert [data for _h, data, _s in read_all(io.BytesIO(body))] == [b"abc"]


def test_an_oversized_part_is_skipped_and_the_next_one_still_arrives():
    body = multipart_body([b"x" * 5000, b"small"])
    parts = read_all(Trickle(body, 1000), max_part_bytes=1000)
    assert parts[0][1] is None and parts[0][2] == 5000
    assert parts[1][1] == b"small"


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"no boundary here",
        f"--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\nunterminated".encode(),
        f"--{BOUNDARY}\r\nNoColonHere\r\n\r\nx\r\n--{BOUNDARY}--".encode(),
        f"--{BOUNDARY}\r\n".encode() + b"H: " + b"v" * 20000,
    ],
)
def test_malformed_bodies_are_refused(body):
    with pytest.raises(MalformedBody):
        read_all(io.BytesIO(body))


def chunked(data: bytes, size: int) -> bytes:
    out = b""
    for i in range(0, len(data), size):
        piece = data[i : i + size]
        out += f"{len(piece):x};ext=1\r\n".encode() + piece + b"\r\n"
    return out + b"0\r\nTrailer: x\r\n\r\n"


def test_chunked_bodies_decode_to_the_original_bytes():
    data = dicom_bytes("CT_small.dcm")
    reader = ChunkedReader(io.BufferedReader(io.BytesIO(chunked(data, 1000) + b"NEXT REQUEST")))
    decoded = b"".join(iter(lambda: reader.read(4096), b""))
    assert decoded == data


@pytest.mark.parametrize("raw", [b"zz\r\nabc", b"10\r\nshort", b"5"])
def test_broken_chunking_is_refused(raw):
    reader = ChunkedReader(io.BufferedReader(io.BytesIO(raw)))
    with pytest.raises(MalformedBody):
        while reader.read(4096):
            pass


def test_content_type_parsing():
    assert multipart.boundary_of('multipart/related; type="application/dicom"; boundary="a b"') == (
        "multipart/related",
        "application/dicom",
        "a b",
    )
    assert multipart.boundary_of(None) == ("", "", "")


# --- read-ahead: receiving the next part while the caller stores this one ------------------------


def test_read_ahead_gives_the_same_parts_in_order():
    originals = [dicom_bytes("CT_small.dcm"), b"second", dicom_bytes("MR_small.dcm")]
    stream = Trickle(multipart_body(originals), 4096)
    with multipart.parts_read_ahead(stream, BOUNDARY, max_part_bytes=10**9) as parts:
        received = []
        for part in parts:
            received.append(part.file.read())
            part.close()
    assert received == originals


def test_read_ahead_raises_a_broken_body_after_the_parts_before_it():
    body = multipart_body([b"first", b"second"])
    cut = body[: body.rindex(b"second") + 3]  # the body ends in the middle of the second part
    received = []
    with (
        pytest.raises(MalformedBody, match="middle of a part"),
        multipart.parts_read_ahead(io.BytesIO(cut), BOUNDARY, max_part_bytes=100) as parts,
    ):
        for part in parts:
            received.append(part.file.read())
            part.close()
    assert received == [b"first"]


def test_read_ahead_stops_reading_and_closes_its_files_when_the_caller_gives_up(monkeypatch):
    spooled = []

    class RecordedSpool(tempfile.SpooledTemporaryFile):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            spooled.append(self)

    monkeypatch.setattr(multipart.tempfile, "SpooledTemporaryFile", RecordedSpool)
    stream = io.BytesIO(multipart_body([b"a" * 600_000] * 20))  # 12 MB, read 1 MiB at a time
    with multipart.parts_read_ahead(stream, BOUNDARY, max_part_bytes=10**9, depth=2) as parts:
        next(parts).close()
        time.sleep(0.2)  # let the reader fill its queue and wait
    # It read about the parts it may hold ahead, not the whole body, and every file it had
    # spooled is closed.
    assert stream.tell() < len(stream.getvalue()) / 2
    assert 2 <= len(spooled) < 10
    assert all(spool.closed for spool in spooled)
