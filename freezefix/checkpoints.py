"""A checkpoint's keys and shapes, read without holding its tensors, and what one source loads into a
module the way the stack's loader would.

The file is opened with ``torch.load(mmap=True)``: tensors stay on disk, only the pickled index is
read.  ``weights_only=True`` first; a checkpoint it refuses (a training run's ``message_hub`` holds
mmengine objects, a ``meta`` may hold numpy values) is read again with an unpickler that turns every
global outside a small allow-list into an inert placeholder, so no code of the file's choosing runs.

Both stacks load the same way (mmengine's ``_load_checkpoint_to_model`` and mmcv 1.x's
``load_checkpoint``): the ``state_dict`` entry when there is one, else the whole dict; DDP's
``module.`` stripped; a ``PretrainedInit`` with a ``prefix`` keeps only the keys under it, stripped,
and strips nothing else.  Keys the module lacks are skipped, and so are tensors of another shape
(``load_state_dict(strict=False)`` warns and goes on): both leave the module's tensor at its init.
"""

from __future__ import annotations

import os
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from freezefix.weights import WeightSource

# Globals a checkpoint's pickle may name that rebuild tensors; anything else becomes an _Inert.
_REBUILDS = {("collections", "OrderedDict"), ("torch", "Size"), ("torch._utils", "_rebuild_tensor_v2"),
             ("torch._utils", "_rebuild_parameter"), ("torch._utils", "_rebuild_tensor_v3")}
_DDP_PREFIX = re.compile(r"^module\.")
T = TypeVar("T")


@dataclass
class CheckpointKeys:
    """What a loader finds in one checkpoint file: the state dict it reads, as key → shape."""

    path: str  # absolute
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    # The top-level keys when the file has no 'state_dict' entry but nests its weights elsewhere
    # ('model', as DETR-style checkpoints do): the loader does not unwrap them.
    nested_under: str | None = None
    error: str | None = None  # why the keys could not be read: the checkpoint is then not judged
    placeholders: int = 0  # objects outside the allow-list the file holds (read as inert placeholders)


def resolve_checkpoint(checkpoint: str) -> Path:
    """A local checkpoint path as the train scripts open it: ``~`` expanded (mmengine's local loader
    expands it), then relative to the working directory."""
    path = Path(os.path.expanduser(checkpoint))
    return path if path.is_absolute() else Path.cwd() / path


def read_checkpoint(path: Path) -> CheckpointKeys:
    """The keys and shapes of the state dict a loader takes from ``path`` (torch is imported only when
    the file is there: a config naming a checkpoint it has not downloaded costs a check no torch import)."""
    out = CheckpointKeys(str(path))
    data = _open(path, out)
    if data is None:
        return out
    import torch

    state = _state_dict(data)
    out.shapes = {str(k): tuple(v.shape) for k, v in state.items() if isinstance(v, torch.Tensor)}
    if state is data and not out.shapes:
        out.nested_under = next((k for k, v in data.items() if isinstance(v, dict) and v
                                 and all(isinstance(t, torch.Tensor) for t in v.values())), None)
    return out


def state_under(path: Path, prefix: str | None) -> dict[str, Any]:
    """The tensors a loader with ``prefix`` takes from ``path`` (mapped from disk, not read), by the
    key it loads them under; empty when the file cannot be read."""
    data = _open(path, CheckpointKeys(str(path)))
    if data is None:
        return {}
    import torch

    return keyed_as_loaded({str(k): v for k, v in _state_dict(data).items() if isinstance(v, torch.Tensor)}, prefix)


def _state_dict(data: dict) -> dict:
    """What both stacks' loaders load: the ``state_dict`` entry when there is one, else the whole dict."""
    return data["state_dict"] if isinstance(data.get("state_dict"), dict) else data


def keyed_as_loaded(state: dict[str, T], prefix: str | None) -> dict[str, T]:
    """A checkpoint's state dict keyed as the loader reads it: DDP's ``module.`` stripped, or, for a
    PretrainedInit with a ``prefix``, only the keys under it, stripped (and nothing else stripped)."""
    if prefix is None:
        return {_DDP_PREFIX.sub("", k): v for k, v in state.items()}
    prefix = prefix if prefix.endswith(".") else prefix + "."
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def _open(path: Path, out: CheckpointKeys) -> dict | None:
    """The unpickled checkpoint, tensors left on disk; None, with ``out.error`` saying why, when it
    cannot be read."""
    if not path.is_file():
        out.error = "there is no such file"
        return None
    import torch

    try:
        try:
            data = _load(torch, path, weights_only=True)
        except pickle.UnpicklingError:  # an object weights_only refuses: read it as a placeholder
            unpickler = _InertPickle()
            data = _load(torch, path, weights_only=False, pickle_module=unpickler)
            out.placeholders = unpickler.placeholders
    except Exception as exc:  # noqa: BLE001 - a truncated file, not a checkpoint at all: said, not judged
        out.error = f"torch.load could not read it ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})"
        return None
    if not isinstance(data, dict):
        out.error = f"it holds a {type(data).__name__}, not a dict of tensors"
        return None
    return data


def _load(torch: Any, path: Path, **kwargs: Any) -> Any:
    try:
        return torch.load(path, map_location="cpu", mmap=True, **kwargs)
    except RuntimeError as exc:
        if "mmap" not in str(exc):
            raise
        return torch.load(path, map_location="cpu", **kwargs)  # the legacy (non-zip) format cannot be mapped


def loaded_by(source: WeightSource, keys: CheckpointKeys, module: str, wanted: dict[str, tuple[int, ...]]
              ) -> tuple[set[str], set[str]]:
    """Which of ``wanted`` (the module's tensors, named relative to it, → shape) ``source`` loads from
    ``keys``, and which it finds at another shape (skipped by the loader)."""
    state = keyed_as_loaded(keys.shapes, source.prefix)
    loaded, mismatched = set(), set()
    for name, shape in wanted.items():
        key = _key_in_checkpoint(source.into, module, name)
        if key is None or key not in state:
            continue
        (loaded if tuple(state[key]) == tuple(shape) else mismatched).add(name)
    return loaded, mismatched


def _key_in_checkpoint(into: str, module: str, name: str) -> str | None:
    """The checkpoint key a loader into ``into`` ('' the detector, a module, a part of one) reads for
    the module's tensor ``name``; None when the source does not reach it."""
    full = f"{module}.{name}"
    if not into:
        return full
    if full.startswith(into + "."):
        return full[len(into) + 1:]
    return None


def prefix_holding(keys: CheckpointKeys, wanted: dict[str, tuple[int, ...]]) -> str | None:
    """A prefix under which the checkpoint holds every tensor of ``wanted`` at its shape
    ('backbone.' for a module named img_backbone, a detector's checkpoint used for a backbone)."""
    if not wanted:
        return None
    name, shape = next(iter(wanted.items()))
    candidates = [k[: -len(name)] for k, v in keys.shapes.items()
                  if k.endswith(name) and tuple(v) == tuple(shape) and (k == name or k[: -len(name)].endswith("."))]
    for prefix in sorted(set(candidates), key=len):
        if all(tuple(keys.shapes.get(prefix + n, ())) == tuple(s) for n, s in wanted.items()):
            return prefix
    return None


class _Inert:
    """What a global outside the allow-list unpickles to: it takes any arguments and state, and does nothing."""

    def __new__(cls, *args: Any, **kwargs: Any) -> _Inert:
        return object.__new__(cls)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __call__(self, *args: Any, **kwargs: Any) -> _Inert:
        return _Inert()

    def __setstate__(self, state: Any) -> None:
        pass

    def __setitem__(self, key: Any, value: Any) -> None:
        pass

    def append(self, value: Any) -> None:
        pass

    def extend(self, values: Any) -> None:
        pass


class _InertPickle:
    """A ``pickle_module`` for ``torch.load`` whose Unpickler rebuilds tensors and nothing else."""

    def __init__(self) -> None:
        self.placeholders = 0
        outer = self

        class Unpickler(pickle.Unpickler):
            def find_class(self, module: str, name: str) -> Any:
                if (module, name) in _REBUILDS:
                    return super().find_class(module, name)
                if module == "torch" and _is_dtype(name):
                    return super().find_class(module, name)
                outer.placeholders += 1
                return _Inert

        self.Unpickler = Unpickler
        self.load = pickle.load
        self.__name__ = "pickle"


def _is_dtype(name: str) -> bool:
    import torch

    return isinstance(getattr(torch, name, None), torch.dtype)
