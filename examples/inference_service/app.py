"""The inference service: a FastAPI app that embeds medic.

generate() runs through medic's breaker "generate" with a mock fallback; a CUDA OOM or a
weights file that will not load is reported to medic, whose ladders call this app's own
functions: smaller batches, CPU offload, reload, restore from the model store, mock.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, Field

from examples.inference_service.pipeline import WEIGHTS, ModelLoadError, Pipeline, load_weights
from exporter import Medic
from exporter.checks import Observation
from exporter.config import parse_config
from exporter.recovery.actions import ActionContext

log = logging.getLogger(__name__)
CONFIG = Path(__file__).with_name("medic.yml")


class GenerateRequest(BaseModel):
    """What a client asks for."""

    prompt: str = Field(min_length=1, max_length=500)
    batch_size: int = Field(default=4, ge=1, le=64)
    steps: int | None = Field(default=None, ge=1, le=256)


@dataclass
class Service:
    """The pieces a test (or an operator) may want to reach."""

    app: FastAPI
    medic: Medic
    pipeline: Pipeline
    store: Path


def mock_generate(prompt: str, batch_size: int, steps: int | None = None) -> torch.Tensor:
    """The fallback: silence of the right shape, from no model at all."""
    return torch.zeros(min(batch_size, 1), (steps or 16) * 32)


def recovery_actions(
    medic: Medic, pipeline: Pipeline, store: Path, download_wait: float
) -> list[Callable[..., str]]:
    """The app's own functions that medic's ladders call, by their action names."""
    models = pipeline.model_dir

    def reduce_generation_params(ctx: ActionContext) -> str:
        before = pipeline.params.max_batch_size
        pipeline.params.max_batch_size = max(1, before // 2)
        return f"max batch size {before} -> {pipeline.params.max_batch_size}"

    def enable_cpu_offload() -> str:
        pipeline.params.cpu_offload = True
        pipeline.reload()
        return "model moved to CPU"

    def restart_pipeline() -> str:
        pipeline.reload()
        medic.degradation.mark_component_healthy("generate")
        return f"reloaded {pipeline.weights}"

    @medic.retries.retry_with_backoff("model_download", max_attempts=4,
                                      initial_delay=download_wait, max_delay=5)  # fmt: skip
    def download() -> None:
        shutil.copyfile(store / WEIGHTS, models / WEIGHTS)
        load_weights(models / WEIGHTS)  # verify the copy before using it

    def retry_model_download() -> str:
        download()
        pipeline.reload()
        return f"restored {WEIGHTS} from the model store"

    def fallback_to_mock() -> str:
        medic.degradation.mark_component_failed("generate", "serving the mock model")
        return "serving the mock generator"

    return [reduce_generation_params, enable_cpu_offload, restart_pipeline,
            retry_model_download, fallback_to_mock]  # fmt: skip


def build(root: Path, *, vram_budget: int = 64, download_wait: float = 0.5) -> Service:
    """The service with its model directory and model store under root."""
    models, store = root / "models", root / "model-store"
    text = CONFIG.read_text() + f"data_dir: {root / 'medic-data'}\n"
    medic = Medic(parse_config(text, source=str(CONFIG)))
    pipeline = Pipeline(models, vram_budget=vram_budget)

    def generate(prompt: str, batch_size: int, steps: int | None) -> torch.Tensor:
        try:
            return pipeline.generate(prompt, batch_size, steps)
        except torch.cuda.OutOfMemoryError as exc:
            medic.report_failure("vram_exhaustion", str(exc), {"batch_size": str(batch_size)})
            raise
        except ModelLoadError as exc:
            medic.report_failure("model_loading_failure", str(exc))
            raise
        except RuntimeError as exc:
            medic.report_failure("generation_pipeline_error", str(exc))
            raise

    # execute_with_fallback guards the call with the breaker named like the component
    # ("generate", declared in medic.yml): do not wrap generate() in it a second time.
    medic.degradation.register_fallback("generate", mock_generate)

    for action in recovery_actions(medic, pipeline, store, download_wait):
        medic.register_action(action.__name__, action)

    def model_loads() -> Observation:
        try:
            load_weights(pipeline.weights)
        except ModelLoadError as exc:
            return Observation(problems=(str(exc),))
        return Observation()

    medic.register_check("model_loads", model_loads)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        medic.start()
        try:
            yield
        finally:
            medic.stop()

    app = FastAPI(title="inference service (medic example)", lifespan=lifespan)
    app.mount("/medic", medic.asgi_app())

    @app.post("/generate")
    def generate_endpoint(request: GenerateRequest) -> dict[str, Any]:
        healthy = medic.degradation.is_component_healthy("generate")
        audio = medic.degradation.execute_with_fallback(
            "generate", generate, request.prompt, request.batch_size, request.steps
        )
        real = healthy and audio.abs().sum().item() > 0
        return {"model": "real" if real else "mock", "batch": audio.shape[0],
                "samples": audio.shape[1], "params": vars(pipeline.params)}  # fmt: skip

    @app.post("/admin/reload")
    def reload() -> dict[str, str]:
        try:
            pipeline.reload()
        except ModelLoadError as exc:
            medic.report_failure("model_loading_failure", str(exc))
            raise HTTPException(503, str(exc)) from None
        return {"status": "reloaded"}

    return Service(app, medic, pipeline, store)
