"""Wording of results for people (text) and for the unified diff; the exit code lives on RunResult."""

from __future__ import annotations

import difflib
import os
from pathlib import Path

from freezefix.engine.result import RunResult
from freezefix.ftypes import REMOVE, FixState
from freezefix.textio import display_path


rel = display_path


def finding_lines(result: RunResult, show_status: bool = False) -> list[str]:
    lines = []
    for r in result.findings:
        marker = {"safe": " [*]", "unsafe": " [unsafe-fix]"}.get(r.fix_kind or "", "")
        text = f"{rel(r.path)}:{r.line}:{r.col}: {r.finding.code}{marker} {r.finding.message}"
        if len(r.configs) > 1 or (r.configs and r.configs[0] != r.path):
            shown = ", ".join(rel(c) for c in r.configs[:3])
            more = f" and {len(r.configs) - 3} more" if len(r.configs) > 3 else ""
            text += f"  [in {shown}{more}]"
        if show_status and r.state is not FixState.OPEN:
            text += f"  → {r.status}"
        lines.append(text)
    return lines


def error_lines(result: RunResult) -> list[str]:
    return [f"{rel(path)}: error: {message}" for path, message in result.errors]


def unjudged_lines(result: RunResult) -> list[str]:
    """One note per thing no rule could judge, with why, however many configs share it."""
    if not result.unjudged:
        return []
    lines = [f"note: {len(result.unjudged)} thing{'s' * (len(result.unjudged) != 1)} freezefix could not judge "
             "(no rule reported on them):"]
    for (what, why), configs in sorted(result.unjudged.items()):
        count = len(set(configs))
        lines.append(f"  {what} ({count} config{'s' * (count != 1)}): {why}")
    return lines


def summary(result: RunResult, applying: bool, elapsed: float | None = None) -> str:
    n = len(result.findings)
    safe = sum(1 for r in result.findings if r.fix_kind == "safe")
    unsafe = sum(1 for r in result.findings if r.fix_kind == "unsafe" and r.state is FixState.OPEN)
    checked = result.configs_checked
    parts = [f"{checked} config{'s' * (checked != 1)} checked", f"{n} finding{'s' * (n != 1)}"]
    if applying:
        fixed = sum(1 for r in result.findings if r.state in (FixState.FIXED, FixState.WOULD_FIX))
        verb = "would fix" if result.dry_run else "fixed"
        parts.append(f"{fixed} {verb}")
        files = len(result.plan.texts) if result.dry_run and result.plan else len(result.written)
        parts.append(f"{files} file{'s' * (files != 1)} {'would change' if result.dry_run else 'changed'}")
    else:
        parts.append(f"{safe} fixable with `freezefix apply`")
    if unsafe:
        parts.append(f"{unsafe} more with --unsafe-fixes")
    if result.skipped:
        parts.append(f"{len(result.skipped)} skipped")
    if result.suppressed:
        parts.append(f"{result.suppressed} suppressed")
    if result.errors:
        parts.append(f"{len(result.errors)} error{'s' * (len(result.errors) != 1)}")
    return ", ".join(parts) + (f" ({elapsed:.1f} s)." if elapsed is not None else ".")


def patch_root(paths: list[Path]) -> Path:
    """Where `git apply` is run from: the repository root of the first path, else the cwd."""
    import subprocess

    start = Path(os.path.abspath(paths[0])) if paths else Path.cwd()
    start = start if start.is_dir() else start.parent
    try:
        top = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=start, capture_output=True,
                             text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return Path.cwd()
    return Path(top.stdout.strip()) if top.returncode == 0 and top.stdout.strip() else Path.cwd()


def unified_diff(result: RunResult, root: Path | None = None) -> str:
    """One patch for the whole run, a/ b/ paths relative to ``root`` (`git apply` from there)."""
    if result.plan is None:
        return ""
    root = root or Path.cwd()
    chunks = []
    for path, (old, new) in sorted(result.plan.texts.items()):
        name = os.path.relpath(path, root).replace(os.sep, "/")
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


# -- machine-readable formats -----------------------------------------------------------------

JSON_VERSION = 1


def _finding_json(r) -> dict:
    fix = r.finding.fix
    return {
        "code": r.finding.code,
        "name": r.finding.name,
        "message": r.finding.message,
        "path": rel(r.path),
        "line": r.line,
        "column": r.col,
        "module": r.finding.module,
        "configs": [rel(c) for c in r.configs],
        "fix": None if fix is None else {
            "applicability": "safe" if fix.safe else "unsafe",
            "why_unsafe": fix.why_unsafe,
            "changes": [{"key": list(c.key), "remove": c.value is REMOVE,
                         "value": None if c.value is REMOVE else c.value} for c in fix.changes],
        },
        "status": r.status,
    }


def to_json(result: RunResult, command: str, elapsed: float) -> dict:
    """The documented JSON report (docs/ci.md, "JSON"); ``version`` changes on incompatible edits."""
    return {
        "version": JSON_VERSION,
        "tool": "freezefix",
        "command": command,
        "summary": {
            "configs_checked": result.configs_checked,
            "files": result.files,
            "findings": len(result.findings),
            "fixable_safe": sum(1 for r in result.findings if r.fix_kind == "safe"),
            "fixable_unsafe": sum(1 for r in result.findings if r.fix_kind == "unsafe"),
            "fixed": sum(1 for r in result.findings if r.state is FixState.FIXED),
            "suppressed": result.suppressed,
            "skipped": len(result.skipped),
            "errors": len(result.errors),
            "changed_files": [rel(p) for p in (
                (result.plan.texts if result.plan else {}) if result.dry_run else result.written)],
            "seconds": round(elapsed, 3),
            "exit_code": result.exit_code,
        },
        "findings": [_finding_json(r) for r in result.findings],
        "errors": [{"path": rel(p), "message": m} for p, m in result.errors],
        "skipped": [{"path": rel(p), "reason": m} for p, m in result.skipped],
        "unjudged": [{"what": t, "reason": why, "configs": sorted({rel(c) for c in configs})}
                     for (t, why), configs in sorted(result.unjudged.items())],
        "verification_stats": result.verify_stats,
        "verification": [
            {"config": rel(c), "ok": v.ok, "level": v.level, "device": v.device, "summary": v.summary,
             "problems": v.problems, "notes": v.notes}
            for c, v in sorted(result.verdicts.items())
        ],
    }


def to_sarif(result: RunResult) -> dict:
    """SARIF 2.1.0: one run, the rules as reportingDescriptors, findings as results."""
    from importlib.metadata import PackageNotFoundError, version

    from freezefix.rules import registry
    from freezefix.rules.docs import rule_page

    try:
        tool_version = version("freezefix")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        tool_version = "0"
    rules = []
    index = {}
    for i, (code, rule) in enumerate(sorted(registry.rules.items())):
        index[code] = i
        doc = type(rule).documentation()
        rules.append({
            "id": code,
            "name": rule.name,
            "shortDescription": {"text": rule.summary},
            "fullDescription": {"text": doc.split("\n\n")[0] if doc else rule.summary},
            # The rule's page (sections, the configs it accepts and reports), as code scanning shows it.
            "help": {"text": doc, "markdown": rule_page(rule)},
            "helpUri": "https://pypi.org/project/freezefix/",
            "defaultConfiguration": {"level": "warning"},
        })
    results = []
    for r in result.findings:
        entry = {
            "ruleId": r.finding.code,
            "ruleIndex": index.get(r.finding.code, -1),
            "level": "warning",
            "message": {"text": r.finding.message},
            "locations": [{"physicalLocation": {
                "artifactLocation": {"uri": rel(r.path).replace(os.sep, "/"), "uriBaseId": "%SRCROOT%"},
                "region": {"startLine": r.line, "startColumn": r.col},
            }}],
        }
        if r.finding.fix is not None:
            entry["properties"] = {"fix": "safe" if r.finding.fix.safe else "unsafe"}
        results.append(entry)
    notifications = [
        {"level": "error", "message": {"text": m},
         "locations": [{"physicalLocation": {"artifactLocation": {"uri": rel(p).replace(os.sep, "/")}}}]}
        for p, m in result.errors
    ]
    return {
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {"name": "freezefix", "version": tool_version,
                                "informationUri": "https://pypi.org/project/freezefix/", "rules": rules}},
            "results": results,
            "invocations": [{"executionSuccessful": not result.errors,
                             "toolExecutionNotifications": notifications}],
        }],
    }


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def github_lines(result: RunResult) -> list[str]:
    """GitHub Actions workflow commands: one ::error annotation per finding and per error."""
    lines = []
    for r in result.findings:
        lines.append(
            f"::error file={_escape_property(rel(r.path))},line={r.line},col={r.col},"
            f"title={_escape_property(r.finding.code + ' ' + r.finding.name)}::{_escape_data(r.finding.message)}"
        )
    for path, message in result.errors:
        lines.append(f"::error file={_escape_property(rel(path))},title=freezefix error::{_escape_data(message)}")
    return lines
