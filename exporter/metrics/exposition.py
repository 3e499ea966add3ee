"""Pre-rendered /metrics bodies: rendered off the request path, served as bytes.

Rendering ~400 series costs milliseconds; doing it inside the async handler would block the
event loop (and every webhook) for that long. Instead a render thread re-renders after the
state changes, coalescing bursts, and the handler only picks the right pre-built body.
"""

from __future__ import annotations

import gzip
import logging
import struct
import threading
import time
import zlib
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from prometheus_client import CollectorRegistry
from prometheus_client.core import Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.exposition import generate_latest as generate_text
from prometheus_client.openmetrics.exposition import CONTENT_TYPE_LATEST as CONTENT_TYPE_OM
from prometheus_client.openmetrics.exposition import generate_latest as generate_om
from prometheus_client.registry import Collector

from exporter.clock import Clock, SystemClock

log = logging.getLogger(__name__)


class _Snapshot(Collector):
    """Families collected once, offered to both encoders."""

    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return self._families


Part = tuple[Hashable, Hashable | None, Callable[[], Iterable[Metric]]]
"""(key, token, collect): one separately rendered share of a collector's families. While a
part's token equals the one it was last rendered with, its rendering is reused; a None
token re-renders it every time. Tokens compare with `_same`: plain values by value, any
other object by identity (a check result is its own token: a new result, a new token)."""


class PartedCollector(Protocol):
    """A collector that offers its families in parts, each re-rendered only on change."""

    def render_parts(self) -> Iterable[Part]:
        """Its parts, in exposition order."""
        ...


CHUNK = 32
"""Series rendered between two pauses: about half a millisecond of the GIL at most, so the
event loop never waits long for it while a render thread works (see RenderLoop)."""
_PLAIN = (int, float, str, bool, type(None))


def _same(a: object, b: object) -> bool:
    if a is b:
        return True
    if type(a) is not tuple or type(b) is not tuple or len(a) != len(b):
        return False
    return all(x is y or (type(x) in _PLAIN and type(x) is type(y) and x == y)
               for x, y in zip(a, b, strict=True))  # fmt: skip


def _split(body: bytes) -> tuple[bytes, bytes]:
    """A single family's rendering: (its # lines, its sample lines)."""
    at = 0
    while body.startswith(b"#", at):
        at = body.index(b"\n", at) + 1
    return body[:at], body[at:]


@dataclass(slots=True)
class _Chunk:
    """Up to CHUNK samples of a family and their lines in both formats."""

    samples: list[Any]
    text: bytes
    om: bytes


@dataclass(slots=True)
class _Family:
    """One family's rendering in both formats: header, sample lines, and the chunks they
    were joined from (kept to reuse what did not change)."""

    text_head: bytes
    text: bytes
    om_head: bytes
    om: bytes
    chunks: list[_Chunk]
    kind: tuple[str, str, str, str]
    text_z: bytes | None = None
    """head + text as raw deflate ending on a sync flush (see _segment), once asked for."""
    om_z: bytes | None = None

    def deflated(self) -> tuple[bytes, bytes]:
        """Both formats' segments, compressed once per rendering."""
        if self.text_z is None or self.om_z is None:
            self.text_z = _segment(self.text_head + self.text)
            self.om_z = _segment(self.om_head + self.om)
        return self.text_z, self.om_z


def _render_family(family: Metric, before: _Family | None, pause: Callable[[], None]) -> _Family:
    """Both formats, CHUNK series at a time with a pause after each chunk rendered; a
    chunk whose samples equal the last rendering's is reused (a GPU check's thousands of
    per-process series mostly repeat from one round to the next)."""
    samples = family.samples
    kind = (family.name, family.documentation, family.type, family.unit)
    if before is not None and before.kind != kind:
        before = None
    old = before.chunks if before is not None else []
    chunks: list[_Chunk] = []
    reused = 0
    text_head = before.text_head if before is not None else b""
    om_head = before.om_head if before is not None else b""
    for number, at in enumerate(range(0, max(1, len(samples)), CHUNK)):
        part = samples[at : at + CHUNK]
        if number < len(old) and old[number].samples == part:
            chunks.append(old[number])
            reused += 1
            continue
        piece = Metric(family.name, family.documentation, family.type, family.unit)
        piece.samples = part
        snapshot = _Snapshot([piece])
        head, lines = _split(generate_text(snapshot))
        om_head_, om_lines = _split(generate_om(snapshot).removesuffix(b"# EOF\n"))  # type: ignore[no-untyped-call]
        if number == 0:
            text_head, om_head = head, om_head_
        chunks.append(_Chunk(part, lines, om_lines))
        if len(samples) > CHUNK:
            pause()
    if before is not None and reused == len(chunks) == len(old):
        return before  # every chunk as before: its joined bytes and segments too
    if len(chunks) == 1:
        text, om = chunks[0].text, chunks[0].om
    else:
        text = b"".join(c.text for c in chunks)
        om = b"".join(c.om for c in chunks)
    return _Family(text_head, text, om_head, om, chunks, kind)


@dataclass(slots=True)
class _Rendered:
    """A part's last rendering, with the token it was rendered for."""

    token: Hashable | None
    families: list[tuple[str, _Family]]


def _series(line: bytes) -> bytes:
    return line.rsplit(b" ", 1)[0]


def _unique(chunks: list[bytes]) -> bytes:
    """Sample lines of one family from several parts, each series once (the first)."""
    seen: set[bytes] = set()
    kept = []
    for chunk in chunks:
        for line in chunk.splitlines(keepends=True):
            key = _series(line)
            if key not in seen:
                seen.add(key)
                kept.append(line)
    return b"".join(kept)


def _collectors(registry: CollectorRegistry) -> list[Collector] | None:
    """The registry's collectors in registration order, or None where this version of
    prometheus_client keeps them elsewhere (the whole registry is then one part)."""
    names = getattr(registry, "_collector_to_names", None)
    lock = getattr(registry, "_lock", None)
    if not isinstance(names, dict) or lock is None or getattr(registry, "_target_info", None):
        return None
    with lock:
        return list(names)


@dataclass(frozen=True, slots=True)
class Rendered:
    """One rendering in both formats, plain and gzipped."""

    text: bytes
    text_gz: bytes
    openmetrics: bytes
    openmetrics_gz: bytes
    rendered_at: float


def wants_openmetrics(accept: str) -> bool:
    """True when the scraper lists OpenMetrics among the media types it accepts."""
    return any(
        part.split(";", 1)[0].strip() == "application/openmetrics-text"
        for part in accept.split(",")
    )


def accepts_gzip(accept_encoding: str) -> bool:
    """True when gzip is an accepted content coding (and not refused with q=0)."""
    for part in accept_encoding.split(","):
        coding, _, params = part.strip().partition(";")
        if coding.strip().lower() in ("gzip", "*"):
            return params.replace(" ", "") not in ("q=0", "q=0.0", "q=0.00", "q=0.000")
    return False


class Exposition:
    """Holds the latest rendering of a registry and picks a body per request.

    Rendering is incremental: each collector (or each part a PartedCollector offers) is
    rendered to bytes per family and kept; the next render re-renders only the parts whose
    token changed and joins the bytes. The cost of a render follows what changed, not how
    many series there are (BENCHMARKS.md: /metrics at 5,000 series).
    """

    def __init__(self, registry: CollectorRegistry, clock: Clock | None = None) -> None:
        self._registry = registry
        self._clock = clock or SystemClock()
        self._render_lock = threading.Lock()
        self._current = Rendered(b"", b"", b"# EOF\n", b"", 0.0)
        self._parts: dict[Hashable, _Rendered] = {}
        self._merged: Merged = {}
        self.rendered_parts = 0
        """Parts rendered since start (the rest were reused): what a render cost."""

    @property
    def current(self) -> Rendered:
        """The latest rendering (an atomic reference read)."""
        return self._current

    def _parts_now(self) -> list[Part]:
        collectors = _collectors(self._registry)
        if collectors is None:
            return [("registry", None, self._registry.collect)]
        parts: list[Part] = []
        for collector in collectors:
            offer = getattr(collector, "render_parts", None)
            if offer is not None:
                parts.extend(((id(collector), key), token, collect)
                             for key, token, collect in offer())  # fmt: skip
            else:
                parts.append((id(collector), None, collector.collect))
        return parts

    def render(self, pause: Callable[[], None] | None = None) -> Rendered:
        """Render now, on the calling thread, and publish the result. `pause` is called
        between chunks of work (a render thread passes one that yields the GIL)."""
        pause = pause or _no_pause
        with self._render_lock:
            kept: dict[Hashable, _Rendered] = {}
            order: dict[str, list[_Family]] = {}
            for key, token, collect in self._parts_now():
                cached = self._parts.get(key)
                if cached is None or token is None or not _same(cached.token, token):
                    before = dict(cached.families) if cached is not None else {}
                    families = [(f.name, _render_family(f, before.get(f.name), pause))
                                for f in collect()]  # fmt: skip
                    cached = _Rendered(token, families)
                    self.rendered_parts += 1
                    pause()
                kept[key] = cached
                for name, family in cached.families:
                    order.setdefault(name, []).append(family)
            self._parts = kept  # parts that left (a check removed) are forgotten
            text, text_gz, openmetrics, openmetrics_gz = _join(order, self._merged)
            rendered = Rendered(text, text_gz, openmetrics, openmetrics_gz, self._clock.time())
            self._current = rendered
            return rendered

    def select(self, accept: str, accept_encoding: str) -> tuple[bytes, str, str | None]:
        """(body, content type, content encoding) for a request's Accept headers."""
        current = self._current
        gz = accepts_gzip(accept_encoding)
        if wants_openmetrics(accept):
            body = current.openmetrics_gz if gz else current.openmetrics
            return body, CONTENT_TYPE_OM, "gzip" if gz else None
        body = current.text_gz if gz else current.text
        return body, CONTENT_TYPE_PLAIN_0_0_4, "gzip" if gz else None


GZIP_LEVEL = 6
SEGMENTED_ABOVE = 64 * 1024
"""Bodies above this are gzipped a family at a time, each family's segment kept with its
rendering (a 400 kB body re-compressed whole on every change was most of a render)."""
_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # deflate, no mtime, unknown OS
_FINAL_BLOCK = b"\x03\x00"  # an empty final block with fixed codes: ends the stream


def _segment(data: bytes) -> bytes:
    """data as raw deflate blocks that end byte-aligned on a sync flush, so segments
    compressed apart concatenate into one valid stream (what pigz does). Each family's
    segment is compressed once per rendering: a changed check re-compresses its own
    families, not the whole body (zlib lets go of the GIL meanwhile)."""
    compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)


def _gzip(body: bytes, segments: list[bytes]) -> bytes:
    """One gzip member around the segments of `body`, in order (RFC 1952)."""
    trailer = struct.pack("<II", zlib.crc32(body), len(body) & 0xFFFFFFFF)
    return b"".join((_GZIP_HEADER, *segments, _FINAL_BLOCK, trailer))


def _no_pause() -> None:
    pass


def _yield_gil() -> None:
    time.sleep(0)  # a syscall without the GIL: a waiting event loop takes it now


Merged = dict[str, tuple[list[_Family], _Family]]
"""Families several parts emit: the renderings each was merged from, and the merge."""


def _merged(name: str, families: list[_Family], merged: Merged) -> _Family:
    """One family from several parts' renderings, each series once (the first); the last
    merge is kept while every rendering it came from is the same object."""
    last = merged.get(name)
    if (
        last is not None
        and len(last[0]) == len(families)
        and all(a is b for a, b in zip(last[0], families, strict=True))
    ):
        return last[1]
    first = families[0]
    family = _Family(first.text_head, _unique([f.text for f in families]), first.om_head,
                     _unique([f.om for f in families]), [], first.kind)  # fmt: skip
    merged[name] = (families, family)
    return family


def _join(order: dict[str, list[_Family]], merged: Merged) -> tuple[bytes, bytes, bytes, bytes]:
    """Both bodies, and both gzipped, from every family's renderings in order; a family
    several parts emit (two checks reporting the same filesystem) keeps each series once.
    `merged` keeps those merges from one render to the next (families gone are dropped)."""
    text: list[bytes] = []
    om: list[bytes] = []
    text_z: list[bytes] = []
    om_z: list[bytes] = []
    families_joined: list[_Family] = []
    for name, families in order.items():
        family = families[0] if len(families) == 1 else _merged(name, families, merged)
        text += (family.text_head, family.text)
        om += (family.om_head, family.om)
        families_joined.append(family)
    for name in merged.keys() - order.keys():
        del merged[name]
    om.append(b"# EOF\n")
    text_body, om_body = b"".join(text), b"".join(om)
    if len(text_body) <= SEGMENTED_ABOVE:  # small: one stream compresses better, and fast
        return (text_body, gzip.compress(text_body, GZIP_LEVEL, mtime=0),
                om_body, gzip.compress(om_body, GZIP_LEVEL, mtime=0))  # fmt: skip
    for family in families_joined:
        z_text, z_om = family.deflated()
        text_z.append(z_text)
        om_z.append(z_om)
    om_z.append(_segment(b"# EOF\n"))
    return text_body, _gzip(text_body, text_z), om_body, _gzip(om_body, om_z)


class RenderLoop:
    """A thread that re-renders after invalidate(), at most once per min_interval.

    Counters that change on every guarded call (breaker calls, retries) do not invalidate:
    that would cost a wake-up per call. Their owners expose a version number instead, and
    the loop polls those every `poll_interval`, so such counters are at most that stale.
    """

    def __init__(
        self,
        exposition: Exposition,
        min_interval: float = 0.05,
        poll_interval: float = 1.0,
        duty: float = 0.2,
    ) -> None:
        """duty: the share of one core renders may take at most; after a render that took
        d seconds the next waits max(min_interval, d / duty - d), so a burst of check
        results is one render and a big exposition cannot keep the GIL busy."""
        self._exposition = exposition
        self._min_interval = min_interval
        self._duty = duty
        self._poll_interval = poll_interval
        self._versions: list[Callable[[], int]] = []
        self._seen_version = -1
        self._dirty = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Render once now, then follow invalidations on a daemon thread."""
        self._exposition.render()
        self._thread = threading.Thread(target=self._loop, name="medic-render", daemon=True)
        self._thread.start()

    def watch(self, version: Callable[[], int]) -> None:
        """Re-render (within poll_interval) whenever version() changes."""
        self._versions.append(version)

    def _polled_version(self) -> int:
        return sum(version() for version in self._versions)

    def invalidate(self, *_: object) -> None:
        """Ask for a re-render soon; cheap and safe from any thread."""
        self._dirty.set()

    def stop(self) -> None:
        """Stop the thread (it exits within one wait)."""
        self._stopping.set()
        self._dirty.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None

    def _loop(self) -> None:
        while not self._stopping.is_set():
            woken = self._dirty.wait(self._poll_interval if self._versions else None)
            if self._stopping.is_set():
                return
            version = self._polled_version() if self._versions else 0
            if not woken and version == self._seen_version:
                continue
            self._seen_version = version
            self._dirty.clear()
            began = time.perf_counter()
            try:
                self._exposition.render(_yield_gil)
            except Exception:
                log.exception("rendering /metrics failed; serving the previous rendering")
            took = time.perf_counter() - began
            self._stopping.wait(max(self._min_interval, took / self._duty - took))
