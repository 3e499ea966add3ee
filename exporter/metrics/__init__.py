"""Metric families and the pre-rendered exposition."""

from exporter.metrics.exposition import Exposition, Rendered, RenderLoop
from exporter.metrics.families import ExporterCollector, HealthCollector
from exporter.metrics.gpu import KernelXidCollector, VerdictCollector, XidCollector

__all__ = [
    "ExporterCollector",
    "Exposition",
    "HealthCollector",
    "KernelXidCollector",
    "RenderLoop",
    "Rendered",
    "VerdictCollector",
    "XidCollector",
]
