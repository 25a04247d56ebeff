"""The write gate's answers, kept across runs while nothing they were computed from changed.

A worker's answer for one job (a config loaded by the stack, its real model built and measured)
depends on the text of every file the config reaches, the plugin code it imports, the environment
variables its placeholders read, the device, and the installed stack and freezefix itself.  The
key holds all of those, so a second ``apply --dry-run`` on an unchanged repository proves the same
rewrite without starting a worker (importing torch and the registries is most of a small run).

Only complete answers are kept (a timeout or a dead worker may not recur); a device chosen at run
time (``auto``) is keyed by what can choose it: a CPU-only torch build never picks CUDA.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path

from freezefix.cache import JsonCacheFile, cache_id, package_versions
from freezefix.verify.measured import BuildAnswer

_SCHEMA = 5  # bump when the worker's answers change shape


def device_key(device: str) -> str | None:
    """What decides the device a job runs on, or None when it cannot be told without torch."""
    if device != "auto":
        return device
    torch_version = package_versions().get("torch", "")
    if "+cpu" in torch_version:
        return "auto:cpu-only-torch"
    return None  # a CUDA build: whether a GPU is visible now is torch's to say


class AnswerCache:
    """One JSON file per stack / freezefix version: job key → the worker's answer."""

    def __init__(self, cache_dir: Path | None):
        self.path = cache_dir / f"gate-{cache_id({'gate-schema': _SCHEMA})}.json" if cache_dir else None
        self.file = JsonCacheFile(self.path)

    def get(self, key: str | None) -> BuildAnswer | None:
        if key is None or self.path is None:
            return None
        answer = self.file.entries.get(key)
        if not isinstance(answer, dict):
            return None
        try:
            return replace(BuildAnswer.from_json(answer), built=False)
        except (TypeError, KeyError, AttributeError):  # written by another freezefix: not an answer
            return None

    def put(self, key: str | None, answer: BuildAnswer) -> None:
        if key is None or self.path is None or not answer.ok:
            return
        self.file.entries[key] = answer.to_json()

    def save(self) -> None:
        self.file.save()


def answer_id(job: dict, texts: dict[Path, str | None], plugins: list[Path] | None,
              env: dict[str, str | None]) -> str | None:
    """What one job's answer is kept under (ids, not keys: a key is a dotted path into a config): ``texts`` holds every file the config reaches as the job sees it (None
    for a base looked for and absent), ``plugins`` its local plugin code (None: not pinned down)."""
    device = device_key(job.get("device", "meta"))
    if device is None or plugins is None:
        return None
    h = hashlib.sha256()
    # The origin's own path: plugin directories and `{{fileDirname}}` are read relative to it.
    h.update(json.dumps([device, bool(job.get("optimizer_log")), str(job.get("origin")),
                         sorted(env.items())]).encode())
    for path in sorted(texts):
        text = texts[path]
        h.update(f"\0{path}\0".encode())
        h.update(b"<absent>" if text is None else hashlib.sha256(text.encode()).digest())
    for path in sorted(plugins):
        h.update(f"\0plugin {path}\0".encode())
        try:
            h.update(hashlib.sha256(Path(path).read_bytes()).digest())
        except OSError:
            return None
    return h.hexdigest()

