"""`make example`: python -m examples.inference_service [--root DIR] [--listen HOST:PORT]."""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path

import uvicorn

from examples.inference_service.app import build
from examples.inference_service.pipeline import WEIGHTS, build_weights


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m examples.inference_service")
    parser.add_argument("--root", type=Path, default=Path(tempfile.gettempdir()) / "medic-example")
    parser.add_argument("--listen", default="127.0.0.1:8000")
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    for folder in ("model-store", "models"):
        if not (args.root / folder / WEIGHTS).exists():
            build_weights(args.root / folder / WEIGHTS)
    service = build(args.root)
    host, port = args.listen.rsplit(":", 1)
    print(f'POST http://{args.listen}/generate  {{"prompt": "hello", "batch_size": 16}}')
    print(f"medic: http://{args.listen}/medic/metrics, /medic/api/v1/events")
    uvicorn.run(service.app, host=host, port=int(port), log_config=None)


if __name__ == "__main__":
    main()
