"""Wording of results for people (text) and for the unified diff; the exit code lives on RunResult."""

from __future__ import annotations

import difflib
import os
from pathlib import Path

from freezefix.api import RunResult


def rel(path: Path) -> str:
    try:
        return os.path.relpath(path)
    except ValueError:
        return str(path)


def finding_lines(result: RunResult, show_status: bool = False) -> list[str]:
    lines = []
    for r in result.findings:
        marker = {"safe": " [*]", "unsafe": " [unsafe-fix]"}.get(r.fix_kind or "", "")
        text = f"{rel(r.path)}:{r.line}:{r.col}: {r.finding.code}{marker} {r.finding.message}"
        if len(r.configs) > 1 or (r.configs and r.configs[0] != r.path):
            shown = ", ".join(rel(c) for c in r.configs[:3])
            more = f" and {len(r.configs) - 3} more" if len(r.configs) > 3 else ""
            text += f"  [in {shown}{more}]"
        if show_status and r.status != "open":
            text += f"  → {r.status}"
        lines.append(text)
    return lines


def error_lines(result: RunResult) -> list[str]:
    return [f"{rel(path)}: error: {message}" for path, message in result.errors]


def summary(result: RunResult, applying: bool) -> str:
    n = len(result.findings)
    safe = sum(1 for r in result.findings if r.fix_kind == "safe")
    unsafe = sum(1 for r in result.findings if r.fix_kind == "unsafe" and r.status == "open")
    checked = result.configs_checked
    parts = [f"{checked} config{'s' * (checked != 1)} checked", f"{n} finding{'s' * (n != 1)}"]
    if applying:
        fixed = sum(1 for r in result.findings if r.status in ("fixed", "would-fix"))
        verb = "would fix" if result.dry_run else "fixed"
        parts.append(f"{fixed} {verb}")
        if result.plan is not None:
            files = len(result.plan.texts)
            parts.append(f"{files} file{'s' * (files != 1)} {'would change' if result.dry_run else 'changed'}")
    else:
        parts.append(f"{safe} fixable with `freezefix apply`")
    if unsafe:
        parts.append(f"{unsafe} more with --unsafe-fixes")
    if result.skipped:
        parts.append(f"{len(result.skipped)} skipped")
    if result.errors:
        parts.append(f"{len(result.errors)} error{'s' * (len(result.errors) != 1)}")
    return ", ".join(parts) + "."


def unified_diff(result: RunResult) -> str:
    """One patch for the whole run; `git apply` accepts it from the current directory."""
    if result.plan is None:
        return ""
    chunks = []
    for path, (old, new) in sorted(result.plan.texts.items()):
        name = rel(path).replace(os.sep, "/")
        if path in result.plan.boms:  # the patch must match the bytes on disk, BOM included
            old, new = "\ufeff" + old, "\ufeff" + new
        lines = difflib.unified_diff(
            old.splitlines(keepends=True), new.splitlines(keepends=True), f"a/{name}", f"b/{name}"
        )
        for line in lines:
            if line.endswith("\n"):
                chunks.append(line)
            else:  # the file's last line has no newline: say so, as diff(1) and git do
                chunks.append(line + "\n\\ No newline at end of file\n")
    return "".join(chunks)


def verification_lines(result: RunResult) -> list[str]:
    lines = []
    for config, verdict in sorted(result.verdicts.items()):
        where = "verified at module level" if verdict.level == "module" else "verified"
        head = f"{where} on {verdict.device}: {rel(config)}" if verdict.ok else f"verification FAILED: {rel(config)}"
        lines.append(head)
        lines.extend(f"  {line}" for line in verdict.summary)
        lines.extend(f"  problem: {p}" for p in verdict.problems)
        lines.extend(f"  note: {n}" for n in verdict.notes)
    return lines
