"""Every config shipped inside the installed mmdet and mmdet3d wheels, resolved two ways.

The resolver must give exactly mmengine's ``Config.fromfile`` values.  Exclusions are the configs
mmengine itself cannot load (listed with its error) and the files below, which are not configs.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from freezefix.config.resolve import ConfigError, NotAnalysable, Resolver

from .conftest import stack_values

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
            expected = stack_values(path)
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


def test_check_over_every_shipped_config_finishes_and_finds_only_the_real_trap(capsys):
    """`freezefix check` on ~1,070 real configs: no crash, errors only where mmengine fails too.

    Every finding is real:
    - FF101: mm_grounding_dino's swin-t finetune config gives the backbone lr_mult=0.0 while its
      base leaves frozen_stages=-1, so all of Swin-T computes gradients for nothing;
    - FF106: 'reference_points' in Deformable DETR's custom_keys matches nothing once the model is
      two-stage (no reference_points_fc layer: the two-stage variants and DINO), and
      'absolute_pos_embed' matches nothing in a Swin built with use_abs_pos_embed=False (mmdet's
      default), which is how the Swin, Mask2Former, MaskFormer and DyHead configs build it;
    - FF113: MaskFormer's Swin-L config sets norm_decay_mult=0.0 but its 'backbone' key takes the
      backbone's LayerNorm weights out of it (a matched parameter skips every other rule);
    - FF114: mmdet3d's nuImages 20e configs set lr_config / runner and mmdet's guided-anchoring Fast
      R-CNN sets optimizer_config, none of which mmengine's Runner reads.
    ImVoteNet freezes its image branch in its own code (freeze_img_branch=True): not judged, and said so.
    """
    from freezefix.api import RunOptions, Session

    import mmdet
    import mmdet3d

    roots = [Path(m.__file__).parent / ".mim" / "configs" for m in (mmdet, mmdet3d)]
    result = Session(roots, RunOptions()).check()
    codes = sorted({r.finding.code for r in result.findings})
    with capsys.disabled():
        print(f"\n{result.configs_checked} configs checked, {len(result.findings)} findings {codes}, "
              f"{len(result.errors)} errors, {len(result.skipped)} skipped")
    assert result.configs_checked > 900
    assert not [e for e in result.errors if "crashed" in e[1]]
    unloadable = {"missing _base_", "cannot find base"}
    assert all(any(u in message for u in unloadable) for _, message in result.errors), result.errors
    resolver_values = Resolver().values
    ff101 = [(r.path.name, r.line, sorted(c.name for c in r.configs)) for r in result.findings if r.finding.code == "FF101"]
    assert ff101 == [
        ("grounding_dino_swin-t_pretrain_obj365.py", 45, ["grounding_dino_swin-t_finetune_8xb4_20e_cat.py"])
    ]
    ff106 = [r for r in result.findings if r.finding.code == "FF106"]
    assert len(ff106) == 12 and {r.finding.code for r in result.findings} == {"FF101", "FF106", "FF113", "FF114"}
    ff113 = [(r.path.name, r.line, sorted(c.name for c in r.configs)) for r in result.findings if r.finding.code == "FF113"]
    assert ff113 == [("maskformer_r50_ms-16xb1-75e_coco.py", 190, ["maskformer_swin-l-p4-w12_64xb1-ms-300e_coco.py"])]
    ff114 = [r for r in result.findings if r.finding.code == "FF114"]
    assert len(ff114) == 9
    for reported in ff114:
        ignored = reported.finding.key[0]
        assert ignored in {"lr_config", "runner", "optimizer_config"}, reported.finding.message
        for config in reported.configs:
            assert "optim_wrapper" in resolver_values(config) and ignored in resolver_values(config)
    assert [what for what, _ in result.unjudged] == ["ImVoteNet"]
    resolver = Resolver()
    for reported in ff106:
        # Each dead key is dead for a reason visible in the config itself.
        for config in reported.configs:
            model = resolver.values(config)["model"]
            if "'absolute_pos_embed'" in reported.finding.message:
                assert not model["backbone"].get("use_abs_pos_embed", False), config
            else:
                assert "'reference_points'" in reported.finding.message
                assert model.get("as_two_stage") is True, config
