"""TFLite runtime adapter: `ai-edge-litert` when installed, else `tflite-runtime`."""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np


class ModelError(RuntimeError):
    """A model file that exists but cannot be loaded (truncated, damaged, not a model)."""


# What the TFLite runtime prints to stderr, from C++, each time it sets up its CPU delegate: noise on
# every command's output, and no setting or environment variable turns it off.
_BANNER = b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU."


@contextmanager
def _without_delegate_banner() -> Iterator[None]:
    """Run the block with the process's stderr (file descriptor 2) going to a scratch file, then
    pass on everything written there except the delegate banner."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as scratch:
        os.dup2(scratch.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            scratch.seek(0)
            kept = [line for line in scratch.read().splitlines(keepends=True) if line.rstrip() != _BANNER]
            if kept:
                os.write(2, b"".join(kept))


def _interpreter_class() -> Any:
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        try:
            from tflite_runtime.interpreter import Interpreter
        except ImportError as exc:
            raise RuntimeError(
                "no TFLite runtime found: pip install ai-edge-litert (or tflite-runtime on older boards)"
            ) from exc
    return Interpreter


class TFLiteModel:
    """One loaded model with a single input; quantizes the input and dequantizes outputs as needed."""

    def __init__(self, path: str | Path, num_threads: int = 1) -> None:
        path = Path(path)
        if path.exists() and not path.is_file():
            # /dev/null or a folder: "not found" would send the user to `make setup` for nothing.
            raise ModelError(f"model path {path} is not a file: give the path of a .tflite model")
        if not path.is_file():
            raise FileNotFoundError(f"model file not found: {path} (run `make setup` to fetch the models)")
        self.path = path
        interpreter = _interpreter_class()
        # Reads and verifies the file. Allocation (memory plan, delegates) waits for the first
        # input, so a damaged model among a pipeline's is reported before any other is set up.
        with self._failures():
            self.interpreter = interpreter(model_path=str(path), num_threads=num_threads)
        self._allocated = False
        (self._input,) = self.interpreter.get_input_details()
        self._outputs = self.interpreter.get_output_details()
        self.input_shape: tuple[int, ...] = tuple(int(d) for d in self._input["shape"])

    @contextmanager
    def _failures(self) -> Iterator[None]:
        try:
            yield
        except (ValueError, RuntimeError) as exc:
            # A truncated download or a damaged SD card, not a bug: one line naming the file.
            reason = (str(exc).strip().splitlines() or ["unreadable"])[0]
            raise ModelError(
                f"model file {self.path} is not a usable TFLite model ({reason}): run `make setup` to fetch it again"
            ) from None

    @property
    def input_dtype(self) -> np.dtype:
        return np.dtype(self._input["dtype"])

    @property
    def output_shapes(self) -> list[tuple[int, ...]]:
        return [tuple(int(d) for d in o["shape"]) for o in self._outputs]

    def quantize_input(self, x: np.ndarray) -> np.ndarray:
        """Float values (in the model's float input units) to the input tensor's dtype."""
        dtype = self.input_dtype
        if dtype == np.float32:
            return x.astype(np.float32, copy=False)
        scale, zero_point = self._input["quantization"]
        info = np.iinfo(dtype)
        return np.clip(np.round(x / scale + zero_point), info.min, info.max).astype(dtype)

    def __call__(self, x: np.ndarray) -> list[np.ndarray]:
        """Run on one input tensor (already in the input dtype); outputs dequantized to float32."""
        if not self._allocated:
            with self._failures(), _without_delegate_banner():
                self.interpreter.allocate_tensors()
            self._allocated = True
        self.interpreter.set_tensor(self._input["index"], x)
        self.interpreter.invoke()
        results = []
        for detail in self._outputs:
            y = self.interpreter.get_tensor(detail["index"])
            if y.dtype != np.float32:
                scale, zero_point = detail["quantization"]
                y = (y.astype(np.float32) - zero_point) * scale
            results.append(y)
        return results
