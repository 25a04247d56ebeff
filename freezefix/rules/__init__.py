"""The rules, one module each; importing this package registers all of them."""

from freezefix.rules import (  # noqa: F401 - imported for registration
    ff100_unused_suppression,
    ff101_partial_freeze_zero_lr,
    ff102_dead_lr_mult,
    ff103_frozen_stages_out_of_range,
    ff104_unsupported_freeze_arg,
    ff105_bn_stats_drift,
    ff106_dead_custom_key,
    ff107_overbroad_custom_key,
    ff108_zero_lr_revived_by_scheduler,
    ff109_ddp_unused_params,
    ff110_incomplete_freeze,
)
from freezefix.rules.base import REMOVE, Change, Example, Finding, Fix, Options, Rule, registry

__all__ = ["REMOVE", "Change", "Example", "Finding", "Fix", "Options", "Rule", "registry"]
