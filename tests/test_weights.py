"""Where a module's weights come from (freezefix.weights): each source the stacks' runners apply,
read off resolved config values as each stack's code applies them."""

from __future__ import annotations

from freezefix.weights import module_weights

NEEDS_STACK = False  # plain values: runs in the lane without torch or OpenMMLab too

R50 = {"type": "ResNet", "depth": 50, "frozen_stages": 4}


def _values(backbone: dict | None = None, **top) -> dict:
    model = top.pop("model", {})
    return {"model": {"type": "RetinaNet", "backbone": dict(backbone or R50), **model}, **top}


def _kinds(values: dict, stack: str = "mmengine", module: str = "backbone") -> list[tuple[str, str | None, str]]:
    return [(s.kind, s.checkpoint, s.into) for s in module_weights(values, stack, module).sources]


def test_nothing_loads_a_bare_backbone():
    weights = module_weights(_values(), "mmengine", "backbone")
    assert weights.from_nowhere and weights.unknown is None


def test_load_from_loads_the_whole_model_on_both_stacks():
    for stack in ("mmengine", "mmcv1"):
        assert _kinds(_values(load_from="ckpts/a.pth"), stack) == [("load_from", "ckpts/a.pth", "")]


def test_resume_is_read_as_each_stack_reads_it():
    # mmengine: resume=True resumes load_from, or the latest checkpoint of work_dir (unknown here)
    assert _kinds(_values(resume=True, load_from="a.pth")) == [("resume", "a.pth", "")]
    assert _kinds(_values(resume=True)) == [("resume", None, "")]
    assert module_weights(_values(resume=True), "mmengine", "backbone").sources[0].remote  # not read
    # mmcv 1.x: resume_from wins over load_from; mmengine does not read resume_from at all
    assert _kinds(_values(resume_from="r.pth", load_from="a.pth"), "mmcv1") == [("resume", "r.pth", "")]
    assert _kinds(_values(resume_from="r.pth"), "mmengine") == []
    assert [k for k, _, _ in _kinds(_values(auto_resume=True, load_from="a.pth"), "mmcv1")] == ["resume", "load_from"]


def test_pretrained_init_cfg_on_the_module_the_detector_or_in_a_list():
    mine = dict(R50, init_cfg=[dict(type="Kaiming"), dict(type="Pretrained", checkpoint="torchvision://resnet50")])
    assert _kinds(_values(mine)) == [("init_cfg", "torchvision://resnet50", "backbone")]
    detector = _values(model={"init_cfg": dict(type="Pretrained", checkpoint="d.pth", prefix="model.")})
    (source,) = module_weights(detector, "mmengine", "backbone").sources
    assert (source.into, source.prefix, source.key) == ("", "model.", ("model", "init_cfg"))
    # a Kaiming init_cfg loads nothing
    assert _kinds(_values(dict(R50, init_cfg=dict(type="Kaiming")))) == []


def test_pretrained_strings_go_where_the_stack_sends_them():
    assert _kinds(_values(dict(R50, pretrained="torchvision://resnet50"))) == \
        [("pretrained", "torchvision://resnet50", "backbone")]
    # mmdet 2.x detectors hand pretrained= to `backbone` and nothing else
    values = _values(model={"pretrained": "r50.pth", "neck": {"type": "FPN"}})
    assert _kinds(values, "mmcv1") == [("pretrained", "r50.pth", "backbone")]
    assert module_weights(values, "mmcv1", "neck").from_nowhere
    # mmdet3d's MVXTwoStageDetector: a dict's img / pts to img_backbone / pts_backbone
    mvx = {"model": {"type": "MVXFasterRCNN", "img_backbone": R50, "pts_backbone": {"type": "SECOND"},
                     "pretrained": {"img": "img.pth"}}}
    assert _kinds(mvx, "mmcv1", "img_backbone") == [("pretrained", "img.pth", "img_backbone")]
    assert module_weights(mvx, "mmcv1", "pts_backbone").from_nowhere


def test_a_detector_pretrained_freezefix_cannot_map_is_unknown_not_nowhere():
    values = {"model": {"type": "BEVDet", "img_backbone": R50, "pretrained": "img.pth"}}  # no `backbone` module
    weights = module_weights(values, "mmcv1", "img_backbone")
    assert not weights.from_nowhere and "does not map" in weights.unknown


def test_a_plugins_own_loader_is_unknown_and_flags_are_not_loaders():
    loader = module_weights(_values(model={"load_img_from": "ckpts/img.pth"}), "mmengine", "backbone")
    assert loader.unknown and "load_img_from" in loader.unknown and not loader.from_nowhere
    own = module_weights(_values(dict(R50, checkpoint="ckpts/x.pth")), "mmengine", "backbone")
    assert own.unknown and "checkpoint=" in own.unknown
    timm = module_weights(_values(dict(R50, pretrained=True)), "mmengine", "backbone")
    assert timm.unknown and "pretrained=True" in timm.unknown
    # activation checkpointing, a module named like a loader, a loss weight: none loads weights
    for harmless in (dict(R50, use_checkpoint=True, with_cp=True), dict(R50, loss_weight=1.0)):
        assert module_weights(_values(harmless), "mmengine", "backbone").from_nowhere
    head = _values(model={"pretrain_head": {"type": "FCNMaskHead"}})
    assert module_weights(head, "mmengine", "backbone").from_nowhere


def test_a_class_that_sets_its_own_pretrained_init_is_a_source():
    weights = module_weights(_values(), "mmengine", "backbone", class_inits=(("stem", "https://x/stem.pth", None),))
    (source,) = weights.sources
    assert (source.kind, source.into, source.remote) == ("class init_cfg", "backbone.stem", True)


def test_urls_and_model_zoo_names_are_remote_paths_are_not():
    def remote(checkpoint: str) -> bool:
        return module_weights(_values(load_from=checkpoint), "mmengine", "backbone").sources[0].remote

    assert all(remote(c) for c in ("https://a/b.pth", "torchvision://resnet50", "open-mmlab://resnet50_caffe",
                                   "s3://bucket/x.pth"))
    assert not any(remote(c) for c in ("ckpts/a.pth", "/abs/a.pth", "../a.pth"))
