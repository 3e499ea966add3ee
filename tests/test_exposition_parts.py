"""/metrics rendered in parts: the same bytes as a full render, re-rendering only what
changed, coalesced, and in chunks that let the event loop in (issue 19)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import generate_latest as generate_text
from prometheus_client.openmetrics.exposition import generate_latest as generate_om

from exporter.app import Medic
from exporter.config import parse_config
from exporter.metrics import exposition as exposition_module
from exporter.metrics.exposition import Exposition, RenderLoop
from tests.helpers import wait_until


def _medic(tmp_path: Path) -> Medic:
    (tmp_path / "model.bin").write_bytes(b"x")
    config = parse_config(f"""
data_dir: {tmp_path / "data"}
checks:
  - {{name: memory, type: host_memory}}
  - {{name: root_a, type: disk, path: /}}
  - {{name: root_b, type: disk, path: /}}
  - {{name: weights, type: path, path: {tmp_path / "model.bin"}}}
  - {{name: missing, type: path, path: {tmp_path / "absent.bin"}}}
""", env={})  # fmt: skip
    return Medic(config)


def _steady(body: bytes) -> list[bytes]:
    """Lines that do not change between two renders a moment apart."""
    return [line for line in body.splitlines() if not line.startswith((b"process_", b"# EOF"))]


def test_parts_join_into_the_bytes_a_full_render_makes(tmp_path: Path) -> None:
    medic = _medic(tmp_path)
    medic.health.run_all()
    rendered = medic.exposition.render()
    assert _steady(rendered.text) == _steady(generate_text(medic.registry))
    assert _steady(rendered.openmetrics) == _steady(generate_om(medic.registry))  # type: ignore[no-untyped-call]
    assert rendered.openmetrics.endswith(b"# EOF\n")
    # Two disk checks of the same filesystem: its series once, as the full render has it.
    avail = b"medic_filesystem_avail_bytes{"
    root = [ln for ln in rendered.text.splitlines() if ln.startswith(avail) and b'"/"' in ln]
    assert len(root) == 1
    if medic.db is not None:
        medic.db.close()


def test_a_new_result_re_renders_its_check_alone(tmp_path: Path) -> None:
    medic = _medic(tmp_path)
    medic.health.run_all()
    exposition = medic.exposition
    exposition.render()
    before = exposition.rendered_parts
    exposition.render()  # nothing changed: only the parts without tokens (the small ones)
    untokened = exposition.rendered_parts - before
    before = exposition.rendered_parts
    medic.health.run("weights")
    text = exposition.render().text
    # That check's facts and the check families; every other check's bytes were reused.
    assert exposition.rendered_parts - before == untokened + 2
    assert b'medic_check_success{check="weights"} 1.0' in text
    (tmp_path / "model.bin").unlink()
    medic.health.run("weights")
    assert b'medic_check_success{check="weights"} 0.0' in exposition.render().text
    if medic.db is not None:
        medic.db.close()


class _Counting(Exposition):
    """Counts renders; the second one (the first after start) waits for `release`, so a
    burst can arrive while a render is in progress."""

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__(registry)
        self.renders = 0
        self.rendering = threading.Event()
        self.release = threading.Event()

    def render(self, pause=None):
        self.renders += 1
        if self.renders == 2:
            self.rendering.set()
            assert self.release.wait(10)
        return super().render(pause)


def test_a_burst_of_changes_while_a_render_runs_is_one_more_render() -> None:
    exposition = _Counting(CollectorRegistry())
    loop = RenderLoop(exposition, min_interval=0.05)
    loop.start()  # renders once, on this thread
    try:
        loop.invalidate()
        assert exposition.rendering.wait(10)  # the loop's first render is in progress
        for _ in range(1000):  # a thousand check results meanwhile
            loop.invalidate()
        exposition.release.set()
        wait_until(lambda: exposition.renders >= 3, what="the render after the burst")
    finally:
        loop.stop()  # joins the thread: no render can start after this
    assert exposition.renders == 3  # start, the one in progress, one for the whole burst


class _Big:
    def collect(self):
        family = GaugeMetricFamily("big", "Many series.", labels=["n"])
        for n in range(1000):
            family.add_metric([str(n)], float(n))
        yield family


def test_a_big_family_is_rendered_in_chunks_with_pauses_between() -> None:
    registry = CollectorRegistry()
    registry.register(_Big())
    pauses: list[int] = []
    rendered = Exposition(registry).render(lambda: pauses.append(1))
    assert len(pauses) >= 1000 // exposition_module.CHUNK
    assert rendered.text == generate_text(registry)


@pytest.mark.parametrize("segmented", [True, False])
def test_gzip_bodies_are_one_member_any_decoder_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, segmented: bool
) -> None:
    import gzip
    import zlib

    if segmented:  # a family at a time, as bodies above 64 KiB are
        monkeypatch.setattr(exposition_module, "SEGMENTED_ABOVE", 0)
    medic = _medic(tmp_path)
    medic.health.run_all()
    first = medic.exposition.render()
    medic.health.run("weights")  # a part re-rendered, the others' segments reused
    rendered = medic.exposition.render()
    for body, gz in ((first.text, first.text_gz), (rendered.text, rendered.text_gz),
                     (rendered.openmetrics, rendered.openmetrics_gz)):  # fmt: skip
        assert gzip.decompress(gz) == body
        # A decoder that reads one member only (zlib's, httpx's) gets all of it too.
        decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
        assert decoder.decompress(gz) == body and decoder.eof and not decoder.unused_data
    if medic.db is not None:
        medic.db.close()
