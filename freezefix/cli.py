"""The command line: options in, results out.  All logic lives in freezefix.api."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import click

from freezefix import report
from freezefix.api import RunOptions, RunResult, Session


# mmengine imports pkg_resources to find `pkg::` bases; its deprecation notice is not the user's business.
warnings.filterwarnings("ignore", message="pkg_resources is deprecated")


def _codes(value: str | None) -> tuple[str, ...]:
    return tuple(c.strip().upper() for c in (value or "").split(",") if c.strip())


def _modules(value: str | None) -> tuple[str, ...]:
    return tuple(m.strip() for m in (value or "").split(",") if m.strip())


def _cache_dir() -> Path | None:
    import os

    base = os.environ.get("FREEZEFIX_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "freezefix"
    )
    return None if os.environ.get("FREEZEFIX_NO_CACHE") else Path(base)


_common = [
    click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path)),
    click.option("--select", help="Only these rule codes (comma-separated; prefixes like FF1 work)."),
    click.option("--ignore", help="Skip these rule codes (comma-separated)."),
    click.option("--freeze", help="Freeze policy: modules to freeze fully, e.g. img_backbone,pts_backbone."),
]


def common_options(func):
    for decorator in reversed(_common):
        func = decorator(func)
    return func


def _device(choice: str) -> str:
    if choice != "auto":
        return choice
    import torch

    return "cuda" if torch.cuda.is_available() else "meta"


def _options(select, ignore, freeze, unsafe_fixes=False, verify=True, device="auto") -> RunOptions:
    return RunOptions(
        select=_codes(select), ignore=_codes(ignore), freeze=_modules(freeze),
        unsafe_fixes=unsafe_fixes, cache_dir=_cache_dir(), verify=verify, device=_device(device),
    )


_device_option = click.option(
    "--device", type=click.Choice(["auto", "meta", "cpu", "cuda"]), default="auto", show_default=True,
    help="Where real models are built: meta (no memory), cpu, cuda; auto = cuda when available, else meta.",
)


def _print_errors(result: RunResult) -> None:
    for line in report.error_lines(result):
        click.echo(line, err=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="freezefix")
def main() -> None:
    """Find and fix inconsistent freeze settings in OpenMMLab configs."""


@main.command()
@common_options
def check(paths, select, ignore, freeze) -> None:
    """Report inconsistent freeze settings (exit 1 if any, 2 on errors)."""
    result = Session(list(paths), _options(select, ignore, freeze)).check()
    for line in report.finding_lines(result):
        click.echo(line)
    _print_errors(result)
    click.echo(report.summary(result, applying=False), err=True)
    sys.exit(result.exit_code)


@main.command()
@common_options
@click.option("--dry-run", "--diff", "dry_run", is_flag=True, help="Print a unified diff; write nothing.")
@click.option("--unsafe-fixes", is_flag=True, help="Also apply fixes that change training behaviour.")
@click.option("--no-verify", is_flag=True, help="Skip the write gate (building the real models before writing).")
@_device_option
def apply(paths, select, ignore, freeze, dry_run, unsafe_fixes, no_verify, device) -> None:
    """Rewrite configs in place to fix what `check` reports, after proving each rewrite on the real model."""
    if no_verify:
        click.echo("freezefix: --no-verify: rewrites are NOT checked on the real model before writing", err=True)
    result = Session(list(paths), _options(select, ignore, freeze, unsafe_fixes, not no_verify, device)).fix(dry_run)
    for line in report.verification_lines(result):
        click.echo(line, err=True)
    if dry_run:
        sys.stdout.write(report.unified_diff(result))
        for line in report.finding_lines(result, show_status=True):
            click.echo(line, err=True)
    else:
        for line in report.finding_lines(result, show_status=True):
            click.echo(line)
        for path in result.written:
            dependents = result.inherited_by.get(path) or []
            shared = f" (inherited by {len(dependents)} config{'s' * (len(dependents) != 1)}, re-checked)" if dependents else ""
            click.echo(f"rewrote {report.rel(path)}{shared}", err=True)
    _print_errors(result)
    click.echo(report.summary(result, applying=True), err=True)
    sys.exit(result.exit_code)


@main.command()
@click.argument("code", required=False)
def rules(code: str | None) -> None:
    """List the rules, or show one rule's documentation."""
    from freezefix.rules import registry

    if code is None:
        for rule_code, rule in sorted(registry.rules.items()):
            click.echo(f"{rule_code}  {rule.name:32s} {rule.summary}")
        return
    rule = registry.rules.get(code.upper()) or next(
        (r for r in registry.rules.values() if r.name == code), None
    )
    if rule is None:
        raise click.BadParameter(f"no rule {code!r}; `freezefix rules` lists them", param_hint="CODE")
    click.echo(f"{rule.code} {rule.name}\n")
    click.echo((type(rule).__doc__ or "").split("\n", 1)[1].strip("\n"))


@main.command()
@click.argument("config", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_device_option
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--freeze", help="Freeze policy to check against (as for check).")
def explain(config, device, fmt, freeze) -> None:
    """Show what is really frozen in CONFIG, read off the real model: per module and per stage."""
    import json

    from rich.console import Console

    from freezefix.explain import explain as run_explain
    from freezefix.explain import render

    explanation = run_explain(config, _options(None, None, freeze, device=device))
    if fmt == "json":
        click.echo(json.dumps(explanation.to_json(), indent=2))
    else:
        render(explanation, Console(width=max(160, Console().width)))
    sys.exit(2 if explanation.error else 0)
