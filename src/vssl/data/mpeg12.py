"""MPEG-1/2 video: which frame each packet holds, from its picture header, without decoding it.

A picture header (start code ``00 00 01 00``) holds the picture's display position in its group of
pictures (10 bits ``temporal_reference``) and its type (3 bits ``picture_coding_type``: 1 I, 2 P,
3 B); a GOP header (``00 00 01 B8``), sent before a GOP's first picture, holds a time code. When one
full decode shows that every frame is its GOP's base plus its temporal reference and that the time
codes tell GOPs apart (:func:`gop_bases`), a packet met after any seek is placed exactly: the base
of the last GOP header read plus its temporal reference. B-pictures are never references, so the
reader skips those of frames nobody asked for.
"""

from __future__ import annotations

MPEG12 = {"mpeg1video", "mpeg2video"}
B_PICTURE = 3


def picture_header(data: bytes) -> tuple[int | None, int, int] | None:
    """``(GOP time code, temporal_reference, picture_coding_type)`` of the first picture in an
    MPEG-1/2 video packet; the time code is None when no GOP header precedes the picture, and
    the whole is None when the packet holds no picture header."""
    picture = data.find(b"\0\0\1\0")
    if picture < 0 or picture + 6 > len(data):
        return None
    gop = data.find(b"\0\0\1\xb8", 0, picture)
    time_code = int.from_bytes(data[gop + 4:gop + 8], "big") >> 7 if gop >= 0 else None
    return time_code, data[picture + 4] << 2 | data[picture + 5] >> 6, data[picture + 5] >> 3 & 7


def numbered_decode(container, stream, headers: list, stamps: list):
    """Decode, giving each packet its number as timestamp: a frame's pts says which packet it came
    from (``stamps``: the packets' own timestamps, ``headers``: their picture headers)."""
    for packet in container.demux(stream):
        if packet.size:
            headers.append(picture_header(bytes(packet)))
            stamps.append(packet.pts)
            packet.pts = len(stamps) - 1
        yield from packet.decode()


def gop_bases(headers: list, sources: list) -> dict[int, int]:
    """GOP time code -> frame index of the GOP's temporal reference 0, given the picture header of
    each packet (decode order; None without one) and the packet each displayed frame came from;
    empty unless every frame is its GOP's base plus its temporal reference, the time codes tell
    GOPs apart and no two pictures are placed at one frame."""
    if not sources or None in sources or any(headers[packet] is None for packet in sources):
        return {}
    gop_of, seen, code = [], set(), None
    for header in headers:
        if header is not None and header[0] is not None:
            if header[0] in seen:
                return {}
            code = header[0]
            seen.add(code)
        gop_of.append(code)
    bases: dict[int, int] = {}
    for shown, packet in enumerate(sources):
        base = shown - headers[packet][1]
        if gop_of[packet] is None or bases.setdefault(gop_of[packet], base) != base:
            return {}
    placed = [bases[g] + h[1] for g, h in zip(gop_of, headers) if g in bases and h is not None]
    return bases if len(set(placed)) == len(placed) else {}
