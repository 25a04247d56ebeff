"""freezefix: find and fix inconsistent freeze settings in OpenMMLab (mmdet / mmdet3d) configs."""

from freezefix.api import RunOptions, RunResult, check_paths, fix_paths

__all__ = ["RunOptions", "RunResult", "check_paths", "fix_paths"]
