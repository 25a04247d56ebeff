"""libcst edits: only the edited span changes; new entries follow their siblings' layout."""

from __future__ import annotations

import ast

import pytest

from freezefix.config.locate import build_location_map
from freezefix.rewrite import AppendAssignment, InsertEntry, RemoveEntry, ReplaceValue, RewriteError, apply_edits

NEEDS_STACK = False  # runs in the lane without torch or OpenMMLab too


def _loc(src: str, *key: str):
    return build_location_map(ast.parse(src), src)[key]


@pytest.mark.parametrize(
    ("src", "expected"),
    [
        pytest.param(
            "a = {\n    'x': 1,  # c1\n    'y': 2,  # c2\n}\n",
            "a = {\n    'x': 1,  # c1\n    'y': 2,  # c2\n    'n': 0.0,\n}\n",
            id="dict-literal-trailing-comma-keeps-comment-on-its-line",
        ),
        pytest.param(
            "a = {\n    'x': 1,  # c1\n    'y': 2  # c2\n}\n",
            "a = {\n    'x': 1,  # c1\n    'y': 2,  # c2\n    'n': 0.0\n}\n",
            id="dict-literal-no-trailing-comma",
        ),
        pytest.param(
            "a = dict(\n    x=1,  # c1\n    y=2,  # c2\n)\n",
            "a = dict(\n    x=1,  # c1\n    y=2,  # c2\n    n=0.0,\n)\n",
            id="dict-call-trailing-comma",
        ),
        pytest.param(
            "a = dict(\n    x=1,  # c1\n    y=2  # c2\n)\n",
            "a = dict(\n    x=1,  # c1\n    y=2,  # c2\n    n=0.0\n)\n",
            id="dict-call-no-trailing-comma",
        ),
        pytest.param("a = dict(x=1, y=2)\n", "a = dict(x=1, y=2, n=0.0)\n", id="inline-call"),
        pytest.param("a = {\"x\": 1}\n", "a = {\"x\": 1, \"n\": 0.0}\n", id="inline-literal-keeps-quote-style"),
        pytest.param("a = dict()\n", "a = dict(n=0.0)\n", id="empty-call"),
        pytest.param("a = dict(\n    y=1)\n", "a = dict(\n    y=1,\n    n=0.0)\n", id="hanging-close"),
    ],
)
def test_insert_follows_layout(src, expected):
    assert apply_edits(src, [InsertEntry(_loc(src, "a"), "n", 0.0)]) == expected


def test_insert_nested_custom_keys_is_a_literal():
    src = "optim_wrapper = dict(optimizer=dict(type='SGD', lr=0.01))\n"
    out = apply_edits(
        src, [InsertEntry(_loc(src, "optim_wrapper"), "paramwise_cfg", {"custom_keys": {"backbone": {"lr_mult": 0.0}}})]
    )
    assert out == (
        "optim_wrapper = dict(optimizer=dict(type='SGD', lr=0.01), "
        "paramwise_cfg=dict(custom_keys={'backbone': dict(lr_mult=0.0)}))\n"
    )


def test_replace_keeps_everything_else_byte_for_byte():
    src = "# 模型\r\nmodel = dict(\r\n    b=dict(frozen_stages=3,  # 冻结 stage 0,1,2,3（全部）\r\n           x='é'),\r\n)\r\n"
    out = apply_edits(src, [ReplaceValue(_loc(src, "model", "b", "frozen_stages"), 4)])
    assert out == src.replace("frozen_stages=3", "frozen_stages=4")


def test_replace_through_variable_edits_the_variable():
    src = "bb = dict(type='ResNet', frozen_stages=1)\nmodel = dict(backbone=bb)\n"
    loc = _loc(src, "model", "backbone", "frozen_stages")
    assert loc.via == "bb"
    assert apply_edits(src, [ReplaceValue(loc, 4)]) == src.replace("frozen_stages=1", "frozen_stages=4")


def test_replace_keeps_parentheses():
    src = "a = dict(x=(3))\n"
    assert apply_edits(src, [ReplaceValue(_loc(src, "a", "x"), 4)]) == "a = dict(x=(4))\n"


@pytest.mark.parametrize(
    ("src", "expected"),
    [
        pytest.param("a = dict(x=1, y=2)\n", "a = dict(x=1)\n", id="last-inline"),
        pytest.param("a = dict(y=2, x=1)\n", "a = dict(x=1)\n", id="first-inline"),
        pytest.param("a = dict(\n    x=1,\n    y=2,\n)\n", "a = dict(\n    x=1,\n)\n", id="last-multiline"),
    ],
)
def test_remove(src, expected):
    assert apply_edits(src, [RemoveEntry(_loc(src, "a"), "y")]) == expected


def test_append_assignment_on_a_file_without_final_newline():
    # The new statement goes on its own line; the file still ends without a newline, as it did.
    src = "x = 1"
    assert apply_edits(src, [AppendAssignment("model", {"b": {"frozen_stages": 4}})]) == (
        "x = 1\nmodel = dict(b=dict(frozen_stages=4))"
    )


def test_missing_target_is_an_error_not_a_silent_no_op():
    src = "a = dict(x=1)\n"
    # A location from another text whose span coincides with a node here, but not its value.
    other = "b = dict(y=2)\n"
    with pytest.raises(RewriteError):
        apply_edits(src, [ReplaceValue(build_location_map(ast.parse(other), other)[("b", "y")], 3)])
    elsewhere = "b = dict(yy=22)\n"
    with pytest.raises(RewriteError):
        apply_edits(src, [ReplaceValue(build_location_map(ast.parse(elsewhere), elsewhere)[("b", "yy")], 3)])


def test_insert_existing_key_is_refused():
    src = "a = dict(x=1)\n"
    with pytest.raises(RewriteError):
        apply_edits(src, [InsertEntry(_loc(src, "a"), "x", 2)])
