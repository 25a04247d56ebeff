"""The command line: options in, results out.  All logic lives in freezefix.api."""

from __future__ import annotations

import atexit
import json
import os
import sys
import time
import warnings
from typing import Any
from pathlib import Path

import click

from freezefix import report
from freezefix.api import RunOptions, RunResult, check_paths, fix_paths, rare_collections
from freezefix.cache import cache_dir
from freezefix.settings import SettingsError, load_settings
from freezefix.stacks import missing as missing_stack

# mmengine imports pkg_resources to find `pkg::` bases; its deprecation notice is not the user's business.
warnings.filterwarnings("ignore", message="pkg_resources is deprecated")


def _codes(value: str | None) -> tuple[str, ...]:
    return tuple(c.strip().upper() for c in (value or "").split(",") if c.strip())


def _modules(value: str | None) -> tuple[str, ...]:
    return tuple(m.strip() for m in (value or "").split(",") if m.strip())


class NoStack(click.ClickException):
    exit_code = 2  # like any other input freezefix cannot judge


def _options(paths, select=None, ignore=None, freeze=None, unsafe_fixes=False, verify=True, device="auto",
             jobs=None, results_cache=False) -> RunOptions:
    """Command-line options over [tool.freezefix] over the defaults."""
    why = missing_stack()
    if why:  # every rule needs the real classes: without them "no findings" would be a lie
        raise NoStack(why)
    try:
        settings = load_settings(list(paths))
    except SettingsError as exc:
        raise click.UsageError(str(exc)) from None
    return RunOptions(
        select=_codes(select) or settings.select,
        ignore=_codes(ignore) or settings.ignore,
        freeze=_modules(freeze) or settings.freeze,
        unsafe_fixes=unsafe_fixes or settings.unsafe_fixes,
        cache_dir=cache_dir(),
        verify=verify,
        device=device,
        exclude=settings.excluded if settings.exclude else None,
        jobs=jobs,
        results_cache=results_cache,
    )


_device_option = click.option(
    "--device", type=click.Choice(["auto", "meta", "cpu", "cuda"]), default="auto", show_default=True,
    help="Where real models are built: meta (no memory), cpu, cuda; auto = cuda when available, else meta.",
)

_common = [
    click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path)),
    click.option("--select", help="Only these rule codes (comma-separated; prefixes like FF1 work)."),
    click.option("--ignore", help="Skip these rule codes (comma-separated)."),
    click.option("--freeze", help="Freeze policy: modules to freeze fully, e.g. img_backbone,pts_backbone."),
    click.option("--format", "fmt", type=click.Choice(["text", "json", "sarif", "github"]), default="text",
                 show_default=True, help="Output format of the findings."),
    click.option("--output-file", type=click.Path(dir_okay=False, path_type=Path),
                 help="Write the findings there instead of standard output."),
    click.option("--no-progress", is_flag=True, help="No progress bar (it is off anyway when not on a terminal)."),
    click.option("--jobs", "-j", type=click.IntRange(min=1),
                 help="Worker processes for the rules and for the write gate (default: one per core; "
                      "-j 1 runs the rules in this process)."),
]


def common_options(func):
    for decorator in reversed(_common):
        func = decorator(func)
    return func


class ProgressBar:
    """A rich progress bar on stderr, shown from the first report of a long run on a terminal."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.bar: Any = None
        self.task: Any = None

    def __call__(self, done: int, total: int) -> None:
        if self.bar is None:
            if not self.enabled or total < 50 or not sys.stderr.isatty():
                self.enabled = False
                return
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.bar = Progress(TextColumn("checking"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                                console=Console(stderr=True), transient=True)
            self.bar.start()
            self.task = self.bar.add_task("configs", total=total)
        self.bar.advance(self.task, done)

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()


def _emit(result: RunResult, fmt: str, output_file: Path | None, command: str, elapsed: float,
          text_lines: list[str]) -> None:
    if fmt == "json":
        body = json.dumps(report.to_json(result, command, elapsed), indent=2) + "\n"
    elif fmt == "sarif":
        body = json.dumps(report.to_sarif(result), indent=2) + "\n"
    elif fmt == "github":
        body = "".join(line + "\n" for line in report.github_lines(result))
    else:
        body = "".join(line + "\n" for line in text_lines)
    if output_file is not None:
        output_file.write_text(body, encoding="utf-8")
    else:
        sys.stdout.write(body)


def entry_point() -> None:
    """The ``freezefix`` command: run it, then leave without tearing down what it built.

    A check keeps every file's syntax tree and values alive to the end; freeing them one by one
    at interpreter exit took a third as long as the check itself.  Exit handlers still run.  For
    the same reason the cycle collector stays rare for the whole command (see
    ``freezefix.api.rare_collections``): set back to its default after a check, it would walk
    everything the check built once more before the report is printed.
    """
    rare_collections().__enter__()  # never left: the process ends with os._exit
    try:
        main()
        code = 0
    except SystemExit as exit:
        code = exit.code if isinstance(exit.code, int) else 0 if exit.code is None else 1
        if isinstance(exit.code, str):
            print(exit.code, file=sys.stderr)
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="freezefix")
def main() -> None:
    """Find and fix inconsistent freeze settings in OpenMMLab configs."""


@main.command()
@common_options
@click.option("--no-cache", is_flag=True,
              help="Recompute every result instead of reusing those of unchanged files (class probes stay "
                   "cached per package versions; FREEZEFIX_NO_CACHE=1 turns off both).")
def check(paths, select, ignore, freeze, fmt, output_file, no_progress, jobs, no_cache) -> None:
    """Report inconsistent freeze settings (exit 1 if any, 2 on errors)."""
    start = time.perf_counter()
    with ProgressBar(not no_progress) as bar:
        result = check_paths(list(paths), _options(paths, select, ignore, freeze, jobs=jobs,
                                                   results_cache=not no_cache), bar)
    elapsed = time.perf_counter() - start
    _emit(result, fmt, output_file, "check", elapsed, report.finding_lines(result))
    if fmt == "text":
        for line in report.error_lines(result) + report.unjudged_lines(result):
            click.echo(line, err=True)
    click.echo(report.summary(result, applying=False, elapsed=elapsed), err=True)
    sys.exit(result.exit_code)


@main.command()
@common_options
@click.option("--dry-run", "--diff", "dry_run", is_flag=True,
              help="Print one unified diff for the whole run (git apply accepts it); write nothing.")
@click.option("--unsafe-fixes", is_flag=True, help="Also apply fixes that change training behaviour.")
@click.option("--no-verify", is_flag=True, help="Skip the write gate (building the real models before writing).")
@_device_option
def apply(paths, select, ignore, freeze, fmt, output_file, no_progress, jobs, dry_run, unsafe_fixes, no_verify,
          device) -> None:
    """Rewrite configs in place to fix what `check` reports, after proving each rewrite on the real model."""
    if no_verify:
        click.echo("freezefix: --no-verify: rewrites are NOT checked on the real model before writing", err=True)
    options = _options(paths, select, ignore, freeze, unsafe_fixes, not no_verify, device, jobs)

    def written(path: Path, dependents: int) -> None:
        shared = f" (inherited by {dependents} config{'s' * (dependents != 1)}, re-checked)" if dependents else ""
        click.echo(f"rewrote {report.rel(path)}{shared}", err=True)

    start = time.perf_counter()
    with ProgressBar(not no_progress) as bar:
        result = fix_paths(list(paths), options, dry_run, bar, written)
    elapsed = time.perf_counter() - start
    for line in report.verification_lines(result):
        click.echo(line, err=True)
    if dry_run and fmt == "text":
        # The patch is the output; findings go to stderr so that `> fix.patch` captures a clean patch.
        _emit(result, fmt, output_file, "apply", elapsed, [])
        target = output_file.open("a", encoding="utf-8") if output_file else sys.stdout
        target.write(report.unified_diff(result, report.patch_root(list(paths))))
        if output_file:
            target.close()
        for line in report.finding_lines(result, show_status=True):
            click.echo(line, err=True)
    else:
        _emit(result, fmt, output_file, "apply", elapsed, report.finding_lines(result, show_status=True))
    if fmt == "text":
        for line in report.error_lines(result) + report.unjudged_lines(result):
            click.echo(line, err=True)
    if result.written and fmt == "text":
        from freezefix.explain import AUDIT_HOOK_HINT

        click.echo(f"note: the rewrites were proven on a model freezefix built; {AUDIT_HOOK_HINT}", err=True)
    click.echo(report.summary(result, applying=True, elapsed=elapsed), err=True)
    sys.exit(result.exit_code)


@main.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def doctor(paths, fmt) -> None:
    """Check that freezefix can work in this Python: torch, CUDA, the OpenMMLab stack, caches, and the
    plugins the configs under PATHS import (exit 0 if usable, 2 if not)."""
    from freezefix.doctor import diagnose, text_lines

    diagnosis = diagnose(list(paths))
    if fmt == "json":
        click.echo(json.dumps(diagnosis.to_json(), indent=2))
    else:
        click.echo("\n".join(text_lines(diagnosis)))
    sys.exit(diagnosis.exit_code)


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
    click.echo(type(rule).documentation())


@main.command()
@click.argument("config", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_device_option
@click.option("--format", "fmt", type=click.Choice(["text", "json", "mmengine-log"]), default="text",
              show_default=True,
              help="mmengine-log: the per-parameter lines mmengine's optimizer constructor logs for CONFIG "
                   "(`paramwise_options -- name:lr=...`), as the training log file has them without timestamps.")
@click.option("--freeze", help="Freeze policy to check against (as for check).")
def explain(config, device, fmt, freeze) -> None:
    """Show what is really frozen in CONFIG, read off the real model: per module and per stage."""
    from rich.console import Console

    from freezefix.explain import explain as run_explain
    from freezefix.explain import render

    explanation = run_explain(config, _options([config], freeze=freeze, device=device),
                              optimizer_log=fmt == "mmengine-log")
    if fmt == "mmengine-log":
        if explanation.error:
            click.echo(f"freezefix: {explanation.config}: {explanation.error}", err=True)
        else:
            click.echo("".join(line + "\n" for line in explanation.optimizer_log or []), nl=False)
    elif fmt == "json":
        click.echo(json.dumps(explanation.to_json(), indent=2))
    else:
        render(explanation, Console(width=max(160, Console().width)))
    sys.exit(2 if explanation.error else 0)


@main.command()
@click.argument("config", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--steps", type=click.IntRange(min=1), default=3, show_default=True, help="Timed steps after one warm-up.")
@click.option("--input-shape", help="Synthetic image batch, e.g. 6,3,256,704 (default: 6 views on cuda, 1 on cpu).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False, path_type=Path), help="Write a bar chart PNG.")
@click.option("--freeze", help="Freeze policy whose fixes are measured (as for apply).")
@click.option("--unsafe-fixes", is_flag=True, help="Measure the unsafe fixes too.")
def bench(config, device, steps, input_shape, fmt, plot_path, freeze, unsafe_fixes) -> None:
    """Measure what freezefix's fixes save on CONFIG's real model: grads, optimizer state, step time, memory."""
    from rich.console import Console

    from freezefix.bench import plot, render, run_bench

    shape = tuple(int(v) for v in input_shape.split(",")) if input_shape else None
    options = _options([config], freeze=freeze, unsafe_fixes=unsafe_fixes, verify=False)
    result = run_bench(config, options, steps=steps, input_shape=shape, device=device)
    if fmt == "json":
        click.echo(json.dumps(result.to_json(), indent=2))
    else:
        render(result, Console(width=max(120, Console().width)))
    if plot_path is not None and not result.error:
        plot(result, plot_path)
    sys.exit(2 if result.error else 0)
