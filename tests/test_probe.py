"""Class facts come from building the real classes of the installed registries."""

from __future__ import annotations

import pytest

from freezefix.probe import Prober

pytestmark = pytest.mark.slow

RESNET50 = dict(type="mmdet.ResNet", depth=50, num_stages=4, out_indices=(0, 1, 2, 3), norm_eval=True)


@pytest.fixture(scope="module")
def prober():
    return Prober(cache_dir=None)


def test_resnet50_full_freeze_is_4_and_layer4_alone_is_left_by_3(prober):
    # The seed's backbone: BatchNorm affine params frozen by norm_cfg, so only convs count.
    facts = prober.facts({**RESNET50, "frozen_stages": 3, "norm_cfg": dict(type="BN", requires_grad=False)}, scan=True)
    assert facts.class_path == "mmdet.models.backbones.resnet.ResNet"
    assert facts.full_freeze == 4 and facts.residual_trainable == 0
    # The seed's trap: frozen_stages=3 leaves exactly layer4 trainable.
    assert facts.observed.trainable_params == 14_942_208
    assert {n.split(".")[0] for n in facts.observed.trainable_names} == {"layer4"}
    assert facts.total_params == 23_508_032
    assert facts.stages[-1].trainable_params == 23_454_912  # every conv; BN affine frozen by norm_cfg
    assert facts.accepts_frozen_stages and facts.accepts_norm_eval


def test_resnet_with_three_stages_full_freeze_is_3(prober):
    facts = prober.facts({**RESNET50, "num_stages": 3, "out_indices": (2,), "strides": (1, 2, 2),
                          "dilations": (1, 1, 1)}, scan=True)
    assert facts.full_freeze == 3
    assert facts.max_valid == 3


def test_frozen_stages_past_the_range_fails_to_build_and_the_range_is_learnt(prober):
    facts = prober.facts({**RESNET50, "frozen_stages": 5})
    assert facts.error is not None and "layer5" in facts.error
    assert facts.max_valid == 4 and facts.full_freeze == 4


def test_second_rejects_frozen_stages(prober):
    cfg = dict(type="SECOND", in_channels=64, out_channels=[64, 128], layer_nums=[1, 1], layer_strides=[2, 2])
    facts = prober.facts({**cfg, "frozen_stages": 4})
    assert facts.scope == "mmdet3d" and not facts.accepts_frozen_stages
    assert facts.error.startswith("TypeError") and "frozen_stages" in facts.error
    assert prober.facts(cfg).observed.bn_training == 4  # one BatchNorm per conv, two blocks of two


def test_batchnorm_affine_params_count_when_trainable(prober):
    facts = prober.facts({**RESNET50, "frozen_stages": 3})
    assert facts.observed.trainable_params == 14_942_208 + 22_528  # + layer4's BN weight and bias


def test_unscoped_type_is_found_in_a_sibling_scope(prober):
    # mmcv-1.x era configs write type='ResNet'; mmdet3d's registry does not have it, mmdet's does.
    facts = prober.facts({**RESNET50, "type": "ResNet"}, scope_hint="mmdet3d")
    assert facts.scope == "mmdet" and facts.class_path.endswith("resnet.ResNet")


def test_subclass_taking_kwargs_accepts_the_parent_argument(prober):
    facts = prober.facts(dict(type="mmdet.ResNeXt", depth=50, groups=32, base_width=4, frozen_stages=1))
    assert facts.accepts_frozen_stages and not facts.freezes_nothing_ever


def test_unknown_type_is_an_import_error_not_a_crash(prober):
    facts = prober.facts(dict(type="NoSuchBackbone"))
    assert not facts.available and "NoSuchBackbone" in facts.import_error


def test_disk_cache_round_trip(tmp_path):
    first = Prober(cache_dir=tmp_path)
    facts = first.facts({**RESNET50, "frozen_stages": 3}, scan=True)
    first.save()
    second = Prober(cache_dir=tmp_path)
    assert second.kept, "the probe cache file was written"
    cached = second.facts({**RESNET50, "frozen_stages": 3}, scan=True)
    assert cached == facts


def test_builds_without_weight_init_see_the_same_structure_and_restore_the_initialisers():
    """Structure facts skip weight initialisation (most of a CPU build's time); what they read must
    not change: the same parameters, the same requires_grad after train(), the same BN modes."""
    import torch

    from freezefix.building import on_first_device, skipped_init
    from freezefix.classes import find_class, registries
    from freezefix.stacks import current

    def build(cfg: dict):  # through the installed stack, whichever it is
        cls, scope = find_class(cfg["type"], None)
        return current().build_module(registries()[scope], dict(cfg, type=cls), scope)

    originals = (torch.nn.init.kaiming_uniform_, torch.Tensor.uniform_, torch.Tensor.normal_)
    # Swin cannot be built on meta (its constructor calls .item()): the CPU fallback, where the
    # initialisers really run, is the case that matters.
    for cfg in (dict(type="mmdet.ResNet", depth=18, frozen_stages=2),
                dict(type="mmdet.SwinTransformer", embed_dims=32, depths=(1, 1), num_heads=(1, 2), strides=(4, 2),
                     out_indices=(0, 1), frozen_stages=1)):
        seen = []
        for initialise in (True, False):
            model, device = on_first_device(lambda: build(cfg), "meta", initialise=initialise)
            model.train()
            seen.append(([(n, p.shape, p.requires_grad) for n, p in model.named_parameters()],
                         [m.training for m in model.modules()], device))
        assert seen[0] == seen[1]
    assert (torch.nn.init.kaiming_uniform_, torch.Tensor.uniform_, torch.Tensor.normal_) == originals
    with skipped_init():
        weight = torch.zeros(3)
        torch.nn.init.ones_(weight)
        assert weight.sum() == 0  # initialisers do nothing inside
    torch.nn.init.ones_(weight)
    assert weight.sum() == 3


def test_the_optimizer_runs_on_the_module_just_probed_and_sees_what_a_fresh_build_sees():
    cfg = dict(type="ResNet", depth=18, frozen_stages=1, norm_eval=True)
    # The mmcv 1.x form, which both stacks' constructors take.
    optimizer = dict(optimizer=dict(type="SGD", lr=0.02, weight_decay=1e-4,
                                    paramwise_cfg=dict(custom_keys={"backbone.layer2": dict(lr_mult=0.1)})))
    fresh = Prober().optimizer_settings(cfg, "mmdet", "backbone", optimizer)

    warm = Prober()
    facts = warm.facts(cfg, "mmdet", scan=False)
    assert warm.kept_modules.hits == 0
    assert warm.optimizer_settings(cfg, "mmdet", "backbone", optimizer) == fresh
    assert warm.kept_modules.hits == 1, "no second build of the module FF113 asks about"
    trainable = {f"backbone.{n}" for n in facts.observed.trainable_names}
    assert set(fresh) == trainable and fresh["backbone.layer2.0.conv1.weight"][0] == pytest.approx(0.002)


def test_only_modules_built_on_meta_are_kept_for_the_optimizer():
    import torch

    from freezefix.class_probe import KeptModules

    kept = KeptModules()
    kept.keep("cpu", torch.nn.Linear(2, 2))
    with torch.device("meta"):
        kept.keep("meta", torch.nn.Linear(2, 2))
    assert list(kept.modules) == ["meta"]
