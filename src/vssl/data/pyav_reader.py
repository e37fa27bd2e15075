"""PyAV decoding: frame-accurate random access by keyframe seeks over a :class:`FrameIndex`.

For each group of nearby requested frames the reader seeks to the last keyframe that serves the
first one (``container.seek(target, backward=True, stream=...)``), decodes forward and stops once it
holds every requested frame of the group; a new group (a new seek) starts where the seek skips
decoding more than ``SEEK_GAP`` frames. Decoded frames are identified through the index (by their
timestamp, or for "decoded" indices by counting from a placed keyframe), never by a timestamp-to-
frame-rate formula, so VFR files, null frames, edit lists and streams that start late all number
frames as a sequential decode does. MPEG-1/2 "decoded" indices with GOP bases identify each packet's
frame from its picture header before decoding it (:mod:`vssl.data.mpeg12`). With a "pts" index or
GOP bases the decoder skips the packets of unwanted frames that nothing references
(``skip_frame=NONREF``).

What the decoder shows is checked against the index as it goes:

- a seek that lands after the frames it was meant to serve (overshoot) retries from the previous
  keyframe, and from the start of the file (the container reopened: a real rewind) at the last;
- a frame the index does not list, frames out of order, or a requested frame skipped are a
  contradiction: the index is rebuilt from one full decode (``index_from_decoding``) and cached;
  contradicted GOP bases are dropped (frames are counted from a placed keyframe instead), and when
  that index is contradicted too, the file is read sequentially from the start.

Frames are converted (and, with ``short_side``, resized) by one swscale context per reader, reused
for every frame, then rotated upright as the display matrix asks.
"""

from __future__ import annotations

import bisect
import dataclasses
import logging

import numpy as np
import torch

from vssl.data.frame_index import (FrameIndex, IndexBuildError, cached_index, display_size, file_key,
                                   first_frame_rotation, index_from_decoding, index_from_packets, scan_packets,
                                   store_index, truncation)
from vssl.data.mpeg12 import B_PICTURE, picture_header

log = logging.getLogger("vssl.data")

FRAME_COUNT_SLACK = 2  # requested frames past the last decodable one that are served clamped to it
MAX_HELD = 300  # frames held after a seek while no label places them (then the keyframe before is tried)
SEEK_GAP = 4  # a new seek pays (a flush, the keyframe) when it skips decoding more frames than this


def _kind(index: FrameIndex) -> str:
    return f"{index.mode} by GOP bases" if index.gops else index.mode


class Contradiction(Exception):
    """Decoding disagrees with the frame index."""


class PyAVReader:
    """See the module docstring; the public contract is :class:`vssl.data.video.VideoReader`'s."""

    def __init__(self, path: str, threads: int, short_side: int, error):
        import av

        self.path, self.threads, self.short_side, self._error = path, threads, short_side, error
        self.container = None
        self._open()
        try:
            self.key = file_key(path)
            index = cached_index(self.key)
            if index is None:
                index = self._build_index()
                store_index(self.key, index)
            self._use(index)
        except (av.error.FFmpegError, ValueError, ZeroDivisionError) as e:
            self.close()
            raise error(path, f"bad stream metadata: {e}") from e
        except Exception:
            self.close()
            raise
        self.last_decoded = 0  # frames decoded by the last get_frames call (for tests and benchmarks)
        self.last_missing: list[int] = []  # requested frames past the decodable end (served clamped)

    # -- opening -----------------------------------------------------------------------------------

    def _open(self) -> None:
        import av

        path, error = self.path, self._error
        try:
            self.container = av.open(path)
        except (av.error.FFmpegError, OSError, UnicodeDecodeError) as e:  # UnicodeDecodeError: garbage headers
            raise error(path, f"cannot open: {e}") from e
        try:
            if not self.container.streams.video:
                raise error(path, "no video stream")
            demuxer = self.container.format.name
            if demuxer == "image2" or demuxer.endswith("_pipe"):  # png_pipe, jpeg_pipe, ...: FFmpeg probes
                # the content, not the name, so a picture renamed .mp4 would "play" as one still frame
                raise error(path, f"a still image ({demuxer}), not a video")
            self.stream = stream = self.container.streams.video[0]
            if stream.codec_context is None:  # PyAV leaves it out when FFmpeg has no decoder for the codec
                raise error(path, "unknown video codec (FFmpeg has no decoder for it)")
            if self.threads != 0:
                stream.thread_type = "AUTO"
                stream.thread_count = max(self.threads, 0)  # -1 -> 0 = let FFmpeg choose
            if stream.codec_context.height <= 0 or stream.codec_context.width <= 0:
                raise error(path, "stream has no frame size")
        except Exception:
            self.close()
            raise

    def _rewind(self) -> None:
        """Reopen the container: seeking to 0 is not a rewind in every demuxer (MPEG-TS/PS seek by a
        timestamp search that can land after the first frames)."""
        self.container.close()
        self._open()

    def _build_index(self) -> FrameIndex:
        import av

        try:
            packets = scan_packets(self.container, self.stream)
            reason = truncation(self.path, self.container, self.stream, packets)
            if reason:
                raise IndexBuildError(reason)
            index = index_from_packets(packets, self.container, self.stream)
            self._rewind()
            if index is None:  # timestamps cannot give the display order: decode once
                index = index_from_decoding(self.container, self.stream)
            else:
                index.rotation = first_frame_rotation(self.container, self.stream)
            return index.describe(self.container, self.stream)
        except IndexBuildError as e:
            raise self._error(self.path, str(e)) from None
        except av.error.FFmpegError as e:
            raise self._error(self.path, f"cannot read its packets: {e}") from e

    def _use(self, index: FrameIndex) -> None:
        from av.video.reformatter import VideoReformatter

        self.index = index
        self.num_frames = index.num_frames
        self.fps = index.fps
        if self.num_frames <= 0 or self.fps <= 0:
            raise self._error(self.path, "no frames, or no frame rate")
        self.duration = self.num_frames / self.fps
        self.height, self.width = display_size(index.height, index.width, index.sar, index.rotation,
                                               self.short_side)
        self._turns = index.rotation // 90
        # swscale's output size in the stored orientation
        self._size = (self.height, self.width) if self._turns % 2 == 0 else (self.width, self.height)
        self._reformatter = VideoReformatter()

    # -- decoding ----------------------------------------------------------------------------------

    def _to_array(self, frame) -> np.ndarray:
        """RGB (H, W, 3) at the output size. When resizing, swscale writes planar RGB ("gbrp"): its
        packed-RGB resizing path takes about twice as long (BENCHMARKS.md) and rounds differently."""
        h, w = self._size
        resize = (frame.height, frame.width) != (h, w)
        return self._reformatter.reformat(frame, format="gbrp" if resize else "rgb24", width=w, height=h).to_ndarray()

    def _by_timestamp(self, point: int, need: set[int]):
        """"pts" indices: ``(frame index, frame)`` from seek point ``point`` on (-1: the reopened file),
        identified by timestamp. Raises Contradiction for a frame the index does not list, frames out
        of order, or a frame of ``need`` skipped."""
        index = self.index
        if point < 0:
            self._rewind()
            start = 0
        else:
            start = int(index.key_frames[point])
            self.container.seek(int(index.key_targets[point]), backward=True, any_frame=False, stream=self.stream)
        previous = -1
        for frame in self._frames({int(index.labels[i]) for i in need}):
            self.last_decoded += 1
            i = index.frame_of(frame.pts)
            if i is None:
                raise Contradiction(f"decoded a frame (timestamp {frame.pts}) the index does not list")
            if i < start:  # decoded before the keyframe (a seek that landed early), or an open GOP's
                continue  # leading frames, which this seek cannot decode: the previous keyframe serves them
            if previous >= 0 and (i <= previous or need.intersection(range(previous + 1, i))):
                raise Contradiction(f"frame {i} decoded after frame {previous}")
            previous = i
            yield i, frame

    def _frames(self, keep: set[int]):
        """Decoded frames from the current position. The decoder skips the packets of frames not in
        ``keep`` (timestamps) that no frame refers to (B-frames that are not references, FFmpeg's
        ``skip_frame=NONREF``): they would be decoded only to be thrown away, about a third of an
        H.264 stream with B-frames."""
        cc = self.stream.codec_context
        skipping = None
        for packet in self.container.demux(self.stream):
            skip = packet.pts not in keep
            if skip != skipping:
                cc.skip_frame, skipping = ("NONREF" if skip else "DEFAULT"), skip
            yield from cc.decode(packet)

    def _by_picture(self, point: int, need: set[int]):
        """MPEG-1/2 "decoded" indices with GOP bases: ``(frame index, frame)`` from seek point
        ``point`` on (0: the reopened file). Each packet's frame (its GOP's base plus its temporal
        reference) travels through the decoder as the packet's timestamp. Frames count only from the
        first keyframe decoded on: after a seek into the middle of a GOP, the pictures before it
        (and the leading B-pictures of the GOP after it) are decoded from missing references
        (FFmpeg hides them, unless asked to show all).
        Raises Contradiction for frames out of order or a frame of ``need`` skipped."""
        if point <= 0:
            self._rewind()
        else:
            self.container.seek(int(self.index.key_targets[point]), backward=True, any_frame=False,
                                stream=self.stream)
        previous, keyed = -1, False
        for frame in self._pictures(need):
            self.last_decoded += 1
            keyed = keyed or frame.key_frame
            i = frame.pts
            if not keyed or i is None:
                continue
            if previous >= 0 and (i <= previous or need.intersection(range(previous + 1, i))):
                raise Contradiction(f"frame {i} decoded after frame {previous}")
            previous = i
            yield i, frame

    def _pictures(self, need: set[int]):
        """Decoded frames from the current position, each with its frame index as pts (None where no
        GOP header read since the seek places it). B-pictures of frames not in ``need`` are skipped."""
        cc, gops = self.stream.codec_context, self.index.gops
        skipping = base = None
        for packet in self.container.demux(self.stream):
            if packet.size:
                header = picture_header(bytes(packet))
                shown = None
                if header is not None:
                    if header[0] is not None:
                        base = gops.get(header[0])
                    if base is not None:
                        shown = base + header[1]
                packet.pts = shown
                skip = header is not None and header[2] == B_PICTURE and shown not in need
                if skip != skipping:
                    cc.skip_frame, skipping = ("NONREF" if skip else "DEFAULT"), skip
            yield from cc.decode(packet)

    def _counted(self, point: int):
        """Decoded and sequential indices: ``(frame index, frame)`` from seek point ``point`` on.

        Point 0 reopens the file and counts from its first frame. Otherwise, after the seek, frames
        are held from the first keyframe decoded until a later frame's label is unique in the index:
        that places them all (a keyframe's own label is not trusted: after a seek into MPEG-PS the
        parser guesses it). Labels that are unique in the index are checked as counting goes on."""
        index = self.index
        checked = index.mode == "decoded"
        if point <= 0:
            self._rewind()
            held, i = None, -1
        else:
            self.container.seek(int(index.key_targets[point]), backward=True, any_frame=False, stream=self.stream)
            held, i = [], None
        for frame in self.container.decode(self.stream):
            self.last_decoded += 1
            known = index.frame_of(frame.pts) if checked else None
            if i is not None:
                i += 1
                if checked and known != i and (known is not None or index.frame_of(int(index.labels[i])) is not None):
                    raise Contradiction(f"frame {i} decoded with the timestamp of frame {known}")
                yield i, frame
            elif frame.key_frame:
                held = [frame]
            elif held:
                held.append(frame)
                if known is not None:
                    i = known
                    yield from zip(range(known - len(held) + 1, known + 1), held)
                elif len(held) > MAX_HELD:
                    return

    def _collect(self, point: int, group: list[int], out: dict) -> bool:
        """Decode from seek point ``point`` until ``out`` holds every frame of ``group``. False when
        the seek landed after ``group[0]`` (overshoot: the caller tries the keyframe before)."""
        need = set(group) - set(out)
        by_timestamp = self.index.mode == "pts"
        if by_timestamp:
            frames = self._by_timestamp(point, need)
        else:
            frames = self._by_picture(point, need) if self.index.gops else self._counted(point)
        last = None
        for i, frame in frames:
            if last is None and i > group[0]:
                return False
            last = (i, frame)
            if i in need:
                out[i] = self._to_array(frame)
                need.discard(i)
                if not need:
                    return True
        if last is None:  # nothing placed: the seek landed past the keyframe, unless the file was reopened
            return point < (0 if by_timestamp else 1)
        if last[0] not in out:  # the stream ended early: its last frame stands in for frames past it
            out[last[0]] = self._to_array(last[1])
        return True

    def _decode_group(self, group: list[int], out: dict) -> None:
        point = self.index.seek_point(group[0])
        while not self._collect(point, group, out):
            point -= 1  # overshoot: the keyframe before, and at last a reopened container

    def _groups(self, wanted: list[int]) -> list[list[int]]:
        """Split sorted frames where a seek would skip decoding more than ``SEEK_GAP`` frames."""
        groups = [[wanted[0]]]
        keys = self.index.key_frames
        for previous, frame in zip(wanted, wanted[1:]):
            if keys[self.index.seek_point(frame)] - previous > SEEK_GAP:
                groups.append([frame])
            else:
                groups[-1].append(frame)
        return groups

    def _decode(self, wanted: list[int]) -> dict:
        out: dict[int, np.ndarray] = {}
        for group in self._groups(wanted):
            self._decode_group(group, out)
        return out

    def _demote(self, reason: str) -> None:
        """Replace a contradicted index: one from decoding, or sequential reading."""
        if self.index.mode == "pts":
            self._rewind()
            index = index_from_decoding(self.container, self.stream).describe(self.container, self.stream)
        elif self.index.gops:
            index = dataclasses.replace(self.index, gops={})
        else:
            index = dataclasses.replace(self.index, mode="sequential", labels=np.zeros(0, np.int64),
                                        key_frames=np.zeros(1, np.int64), key_targets=np.zeros(1, np.int64))
        log.info("%s: %s; frame index rebuilt (%s -> %s)", self.path, reason, _kind(self.index), _kind(index))
        store_index(self.key, index)
        self._use(index)

    def get_frames(self, indices: list[int]) -> torch.Tensor:
        import av

        self.last_decoded = 0
        try:
            while True:  # at most pts -> decoded -> sequential; sequential reading has nothing to contradict
                clamped = [min(i, self.num_frames - 1) for i in indices]
                wanted = sorted(set(clamped))
                try:
                    out = self._decode(wanted)
                    break
                except Contradiction as e:
                    self._demote(str(e))
        except (av.error.FFmpegError, ValueError, IndexBuildError) as e:
            raise self._error(self.path, f"decoding failed: {e}") from e
        if not out:
            raise self._error(self.path, "no frame could be decoded")
        reached = max(out)
        self.last_missing = [i for i in wanted if i not in out]
        lost = [i for i in self.last_missing if i < reached or i > reached + FRAME_COUNT_SLACK]
        if lost:
            raise self._error(self.path, f"truncated or damaged: frame {lost[0]} of {self.num_frames} "
                                         f"cannot be decoded (last decodable: {reached})")
        have = sorted(out)
        frames = np.stack([out[i] if i in out else out[have[max(bisect.bisect_right(have, i) - 1, 0)]]
                           for i in clamped])
        result = torch.from_numpy(frames)
        if self._turns:
            result = torch.rot90(result, self._turns, dims=(1, 2)).contiguous()
        return result

    def close(self) -> None:
        if self.container is not None:
            self.container.close()
            self.container = None
