"""The model and its pipeline: real torch weights in files, generation parameters, and a
VRAM budget that raises torch's own out-of-memory error when a batch would not fit."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

log = logging.getLogger(__name__)

WEIGHTS = "tts.pt"


class TinyTTS(nn.Module):
    """Text in, a waveform-like tensor out: an embedding and a two-layer decoder."""

    def __init__(self, vocab: int = 256, hidden: int = 64, frame: int = 32) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, hidden)
        self.decoder = nn.Sequential(nn.Linear(hidden, hidden), nn.Tanh(), nn.Linear(hidden, frame))

    def forward(self, tokens: torch.Tensor, steps: int) -> torch.Tensor:
        hidden = self.embed(tokens).mean(dim=1)  # (batch, hidden)
        frames = [self.decoder(hidden + 0.01 * step) for step in range(steps)]
        return torch.cat(frames, dim=-1)  # (batch, steps * frame)


def build_weights(path: Path, seed: int = 0) -> None:
    """Create the model's weights file (the "download" the model store holds)."""
    torch.manual_seed(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(TinyTTS().state_dict(), path)


def load_weights(path: Path) -> TinyTTS:
    """Load weights from a file; raises ModelLoadError when missing or corrupted."""
    model = TinyTTS()
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    except Exception as exc:  # torch raises several types for a bad file
        raise ModelLoadError(f"cannot load {path}: {type(exc).__name__}: {exc}") from exc
    return model.eval()


class ModelLoadError(Exception):
    """The weights file is missing or unusable."""


@dataclass
class Params:
    """Generation parameters medic may lower."""

    max_batch_size: int = 8
    steps: int = 16
    cpu_offload: bool = False


class Pipeline:
    """Holds the loaded model; generate() is what the service's endpoint calls."""

    def __init__(self, model_dir: Path, vram_budget: int = 64) -> None:
        self.model_dir = model_dir
        self.params = Params()
        # batch * steps above this raises CUDA's OOM error (4x more room with CPU offload)
        self.vram_budget = vram_budget
        self.fault: Exception | None = None  # a hardware fault that no reload fixes
        self._lock = threading.Lock()
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.model: TinyTTS | None = None
        self.reload()

    @property
    def weights(self) -> Path:
        """The active weights file."""
        return self.model_dir / WEIGHTS

    def reload(self) -> None:
        """(Re)load the weights from the model directory (restart_pipeline)."""
        model = load_weights(self.weights)
        device = torch.device("cpu") if self.params.cpu_offload else self.device
        with self._lock:
            self.model = model.to(device)
        log.info("pipeline loaded %s on %s", self.weights, device)

    def generate(self, prompt: str, batch_size: int, steps: int | None = None) -> torch.Tensor:
        """A batch of waveforms for the prompt."""
        if self.fault is not None:
            raise self.fault
        batch = min(batch_size, self.params.max_batch_size)
        steps = steps or self.params.steps
        budget = self.vram_budget * (4 if self.params.cpu_offload else 1)
        if batch * steps > budget:
            raise torch.cuda.OutOfMemoryError(
                f"CUDA out of memory. Tried to allocate {batch * steps} units "
                f"(batch {batch} x {steps} steps; budget {budget})"
            )
        tokens = torch.tensor([list(prompt.encode()[:64]) or [0]] * batch)
        with self._lock:
            model = self.model
        assert model is not None
        with torch.no_grad():
            device = next(model.parameters()).device
            audio: torch.Tensor = model(tokens.to(device), steps).cpu()
        return audio
