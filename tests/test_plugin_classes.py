"""Classes a plugin registers (VoVNet in CMT / PETR / BEVFormer repos) are probed like any registry
class once the config's plugin imports; when it does not import, `check` says once which class
could not be probed and why, instead of a silent "0 findings".
"""

from __future__ import annotations

import pytest

from freezefix.api import RunOptions, check_paths
from freezefix.stacks import stack_name

pytestmark = [pytest.mark.slow, pytest.mark.skipif(stack_name() != "mmengine", reason="mmdet3d 1.x registry")]

PLUGIN = '''\
import torch.nn as nn
from mmdet3d.registry import MODELS
{broken}

@MODELS.register_module()
class {cls}(nn.Module):
    """Three stages; frozen_stages=k freezes stages 0..k in train(), as VoVNet does."""

    def __init__(self, frozen_stages=-1, init_cfg=None):
        super().__init__()
        self.frozen_stages = frozen_stages
        self.stages = nn.ModuleList(nn.Conv2d(8, 8, 3) for _ in range(3))

    def train(self, mode=True):
        super().train(mode)
        for i, stage in enumerate(self.stages):
            if i <= self.frozen_stages:
                for p in stage.parameters():
                    p.requires_grad = False
        return self
'''
CONFIG = '''\
plugin = True
plugin_dir = '{package}/'
model = dict(type='MVXFasterRCNN', img_backbone=dict(type='{cls}', frozen_stages=1))
optim_wrapper = dict(optimizer=dict(type='AdamW', lr=2e-4),
                     paramwise_cfg=dict(custom_keys={{'img_backbone': dict(lr_mult=0.0)}}))
'''


def _repo(tmp_path, package: str, cls: str, broken: str = ""):
    # each test its own class name: a registry is global to the process, and a class registered by an
    # earlier test would be found without its plugin
    (tmp_path / package).mkdir()
    (tmp_path / package / "__init__.py").write_text(PLUGIN.format(broken=broken, cls=cls))
    configs = tmp_path / "configs"
    configs.mkdir()
    for name in ("a.py", "b.py"):
        (configs / name).write_text(CONFIG.format(package=package, cls=cls))
    (tmp_path / ".git").mkdir()  # the repository root plugin_dir is relative to
    return configs


def test_a_class_the_plugin_registers_is_probed(tmp_path):
    configs = _repo(tmp_path, "ffplug_ok", "FfPluginVoV")
    result = check_paths([configs], RunOptions(select=("FF101",), cache_dir=None))
    assert [r.finding.code for r in result.findings] == ["FF101"] * 2
    message = result.findings[0].finding.message
    assert "frozen_stages=1 leaves 584 params (stages) trainable" in message
    assert "frozen_stages=2 freezes everything (FfPluginVoV)" in message
    assert not result.unjudged


def test_a_plugin_that_does_not_import_is_named_once_with_its_error(tmp_path, cli, monkeypatch):
    configs = _repo(tmp_path, "ffplug_broken", "FfBrokenPluginVoV", broken="import ffplug_compiled_ops_missing")
    result = check_paths([configs], RunOptions(select=("FF101",), cache_dir=None))
    assert not result.findings
    [(what, why)] = list(result.unjudged)
    assert what == "FfBrokenPluginVoV" and len(result.unjudged[(what, why)]) == 2
    assert "plugin_dir 'ffplug_broken/' not importable: ModuleNotFoundError: No module named 'ffplug_compiled_ops_missing'" in why
    monkeypatch.chdir(tmp_path)
    out = cli("check", "--no-cache", "configs")
    text = " ".join(out.stderr.split())
    assert "note: 1 thing freezefix could not judge (no rule reported on them):" in text
    assert text.count("FfBrokenPluginVoV (2 configs)") == 1


def test_a_missing_plugin_dir_is_one_note_for_every_config_that_names_it(tmp_path):
    """Its wording names no config: the configs of a run, split between workers and cached, share it."""
    configs = _repo(tmp_path, "ffplug_absent", "FfAbsentPluginVoV")
    (configs / "deeper").mkdir()
    (configs / "deeper" / "c.py").write_text((configs / "a.py").read_text())
    for package_file in (tmp_path / "ffplug_absent").iterdir():
        package_file.unlink()
    (tmp_path / "ffplug_absent").rmdir()
    result = check_paths([configs], RunOptions(select=("FF101",), cache_dir=None))
    [((what, why), named)] = list(result.unjudged.items())
    assert what == "FfAbsentPluginVoV" and len(named) == 3
    assert "plugin_dir 'ffplug_absent/' not found in the config's directory or any directory above it" in why
