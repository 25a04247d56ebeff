"""Every config shipped inside the installed mmdet and mmdet3d wheels, resolved two ways.

The resolver must give exactly mmengine's ``Config.fromfile`` values.  Exclusions are the configs
mmengine itself cannot load (listed with its error) and the files below, which are not configs.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
from mmengine.config import Config

from freezefix.config.resolve import ConfigError, NotAnalysable, Resolver, to_plain

pytestmark = pytest.mark.slow

# Not configs: command-line scripts that live among the configs (argparse, `if __name__`).
NOT_CONFIGS = {
    "glip/odinw/override_category.py": "a script (argparse), not a config",
    "grounding_dino/odinw/override_category.py": "a script (argparse), not a config",
    "mm_grounding_dino/odinw/override_category.py": "a script (argparse), not a config",
}


def shipped_configs() -> list[Path]:
    import mmdet
    import mmdet3d

    roots = [Path(m.__file__).parent / ".mim" / "configs" for m in (mmdet, mmdet3d)]
    return sorted(p for root in roots for p in root.rglob("*.py"))


def test_every_shipped_config_resolves_exactly_like_mmengine(capsys):
    files = shipped_configs()
    assert len(files) > 1000, "the mmdet / mmdet3d wheels ship about 1,070 configs"
    resolver = Resolver()
    excluded: dict[str, str] = {}
    mismatched: list[str] = []
    compared = 0
    for path in files:
        rel = "/".join(path.parts[path.parts.index("configs") + 1 :])
        if rel in NOT_CONFIGS:
            with pytest.raises(NotAnalysable):
                resolver.unit(path)
            excluded[rel] = NOT_CONFIGS[rel]
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                expected = to_plain(Config.fromfile(str(path), import_custom_modules=False)._cfg_dict)
        except Exception as exc:  # noqa: BLE001 - mmengine cannot load it: excluded, with why
            excluded[rel] = f"mmengine cannot load it: {type(exc).__name__}: {str(exc)[:120]}"
            # freezefix must say so cleanly too, as a per-file error.
            with pytest.raises(ConfigError):
                resolver.unit(path)
            continue
        try:
            actual = resolver.values(path)
        except (ConfigError, NotAnalysable) as exc:
            mismatched.append(f"{rel}: freezefix failed where mmengine loads it: {exc}")
            continue
        compared += 1
        if actual != expected:
            keys = sorted(k for k in expected.keys() | actual.keys() if expected.get(k) != actual.get(k))
            mismatched.append(f"{rel}: values differ at {keys[:5]}")
    with capsys.disabled():
        print(f"\n{compared} shipped configs resolved identically; {len(excluded)} excluded:")
        for rel, why in sorted(excluded.items()):
            print(f"  {rel}: {why}")
    assert not mismatched, "\n".join(mismatched[:20])
    assert compared > 1000
