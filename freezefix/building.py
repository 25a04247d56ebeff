"""How freezefix builds a class to learn its structure: on the meta device where possible, offline,
quiet, and without initialising weights nobody will read."""

from __future__ import annotations

import contextlib
import functools
import os
import warnings
from typing import Any, Callable, Iterator, TypeVar

# Arguments that load weights (from a file or a hub) and never change a module's structure: left out
# of every build freezefix makes.
WEIGHT_ARGS = ("init_cfg", "pretrained")


def without_weight_args(cfg: Any) -> Any:
    """``cfg`` without WEIGHT_ARGS at any depth: a module's init_weights() (run where a plugin freezes
    there) must never fetch or read a checkpoint."""
    if isinstance(cfg, dict):
        return {k: without_weight_args(v) for k, v in cfg.items() if k not in WEIGHT_ARGS}
    if isinstance(cfg, (list, tuple)):
        return type(cfg)(without_weight_args(v) for v in cfg)
    return cfg

T = TypeVar("T")

# In-place random / fill methods that weight initialisers end in (torch.nn.init and the OpenMMLab
# init helpers alike).  Structure facts (which parameters exist, which train after ``train()``)
# never read a weight's value, and filling them is most of a CPU build's time: a Swin-L cannot be
# built on meta (its constructor calls ``.item()``), and initialising it on the CPU takes seconds.
_TENSOR_FILLS = ("uniform_", "normal_", "zero_", "fill_", "bernoulli_", "random_", "exponential_",
                 "cauchy_", "log_normal_", "geometric_", "erfinv_")


def is_batchnorm(module: Any) -> bool:
    """A BatchNorm layer: torch's BatchNorm*d and SyncBatchNorm, and mmcv's own SyncBatchNorm (not a
    subclass of torch's).  The one definition the probe, the verification worker, ``bench`` and the
    training hook share, so that they count the same layers."""
    return isinstance(module, _torch_batchnorm()) or (
        "BatchNorm" in type(module).__name__ and getattr(module, "running_mean", None) is not None)


@functools.lru_cache(maxsize=1)
def _torch_batchnorm() -> type:
    from torch.nn.modules.batchnorm import _BatchNorm

    return _BatchNorm


def describe_error(exc: BaseException) -> str:
    """An exception in one line: its type and the first line of its message."""
    text = str(exc).strip().splitlines()
    # Messages wrapped in the source keep their indentation ("…usage,            please install …").
    return f"{type(exc).__name__}: {' '.join(text[0].split())}" if text else type(exc).__name__


def on_device(device: str) -> Any:
    """A context in which new modules' tensors are created on ``device``.

    torch < 2.0 (still found in old BEV environments) has no device context; there only the CPU is
    possible, and the RuntimeError below sends callers down their CPU fallback (meta is a speed-up,
    never a requirement).
    """
    import torch

    if hasattr(torch.device, "__enter__"):
        return torch.device(device)
    if device == "cpu":
        return contextlib.nullcontext()
    raise RuntimeError(f"building on the {device} device needs torch >= 2.0; falling back to the CPU (not meta)")


@contextlib.contextmanager
def skipped_init() -> Iterator[None]:
    """Weight initialisers do nothing while open: tensors keep whatever their allocation holds.

    Only for builds whose weights are never used (counting parameters, reading ``requires_grad`` and
    BatchNorm modes, building an optimizer's groups); never for a model that runs forward.
    """
    import torch

    def unchanged(tensor: Any, *args: Any, **kwargs: Any) -> Any:
        return tensor

    saved: list[tuple[Any, str, Any]] = []
    for name in dir(torch.nn.init):
        if name.endswith("_") and not name.startswith("__") and callable(getattr(torch.nn.init, name)):
            saved.append((torch.nn.init, name, getattr(torch.nn.init, name)))
    saved += [(torch.Tensor, name, getattr(torch.Tensor, name)) for name in _TENSOR_FILLS if hasattr(torch.Tensor, name)]
    for owner, name, _ in saved:
        setattr(owner, name, unchanged)
    try:
        yield
    finally:
        for owner, name, original in saved:
            setattr(owner, name, original)


@contextlib.contextmanager
def offline() -> Iterator[None]:
    """Building a class must never download weights (a language model's from_pretrained, say)."""
    names = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE")
    saved = {n: os.environ.get(n) for n in names}
    os.environ.update({n: "1" for n in names})
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def on_first_device(build_it: Callable[[], T], device: str, initialise: bool = False) -> tuple[T, str]:
    """``build_it()`` on ``device``; on the CPU when some op cannot be created on meta.

    Never downloads weights, and silences constructors' warnings about deprecated arguments of the
    user's config (not ours to show).  Weights are left uninitialised unless ``initialise``.
    """

    def attempt(where: str) -> T:
        with warnings.catch_warnings(), offline(), on_device(where), \
                (contextlib.nullcontext() if initialise else skipped_init()):
            warnings.simplefilter("ignore")
            return build_it()

    try:
        return attempt(device), device
    except (NotImplementedError, RuntimeError) as exc:
        if device != "meta" or "meta" not in str(exc).lower():
            raise
    return attempt("cpu"), "cpu"
