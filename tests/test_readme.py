"""The README is a short user's page whose set-up commands are the ones that work (the test command is
the one CI runs), and every relative link in it and in docs/ leads somewhere."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

NEEDS_STACK = False  # reads Markdown and a shell script: runs without torch or OpenMMLab too

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
CI_RUN = ROOT / ".ci" / "run"

SETUP_COMMAND = "bash scripts/setup_venv.sh && .venv/bin/freezefix apply tests/fixtures/seed_cmt/configs --dry-run"
MAX_README_LINES = 230

FENCE = re.compile(r"^(```|~~~)")
LINK = re.compile(r"\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def _section(text: str, heading_prefix: str) -> list[str]:
    """The lines of the ``## `` section whose heading starts with heading_prefix, up to the next one."""
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("## " + heading_prefix)]
    assert len(starts) == 1, f"README.md needs exactly one '## {heading_prefix}' heading, found {len(starts)}"
    body = []
    for line in lines[starts[0] + 1:]:
        if line.startswith("## "):
            break
        body.append(line)
    return body


def _fenced_blocks(lines: list[str], language: str) -> list[str]:
    """The contents of the fenced code blocks tagged ``language``, in order, each stripped."""
    blocks, current, inside = [], None, False
    for line in lines:
        if not inside and FENCE.match(line):
            inside = True
            current = [] if line[3:].strip() == language else None
        elif inside and FENCE.match(line):
            inside = False
            if current is not None:
                blocks.append("\n".join(current).strip())
        elif inside and current is not None:
            current.append(line)
    assert not inside, "an unclosed code fence"
    return blocks


def _setup_commands() -> list[str]:
    return _fenced_blocks(_section(README.read_text(encoding="utf-8"), "Set-up"), "bash")


def _ci_command() -> str:
    """What .ci/run executes: its ``exec`` line, without the ``exec``."""
    execs = []
    for line in CI_RUN.read_text(encoding="utf-8").splitlines():
        words = shlex.split(line, comments=True)
        if words and words[0] == "exec":
            execs.append(" ".join(words[1:]))
    assert len(execs) == 1, f".ci/run should exec exactly one command, found {execs}"
    return execs[0]


def test_the_first_setup_command_sets_up_and_runs_the_main_job():
    commands = _setup_commands()
    assert commands, "no ```bash block under the README's Set-up heading"
    assert commands[0] == SETUP_COMMAND


def test_the_readme_test_command_is_what_ci_runs():
    commands = _setup_commands()
    assert len(commands) == 2, f"the Set-up section should hold two commands, found {commands}"
    assert _ci_command().startswith("bash scripts/"), _ci_command()  # the parse found the exec line
    assert commands[1] == _ci_command()


def test_the_readme_stays_short():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= MAX_README_LINES, f"README.md has {len(lines)} lines; move reference text to docs/"


def _markdown_files() -> list[Path]:
    return [README] + sorted(DOCS.glob("*.md"))


def _prose(text: str) -> str:
    """The text outside fenced code blocks, inline code spans replaced by a placeholder."""
    kept, inside = [], False
    for line in text.splitlines():
        if FENCE.match(line.lstrip()):
            inside = not inside
            continue
        if not inside:
            kept.append(line)
    return re.sub(r"`[^`\n]*`", "code", "\n".join(kept))


def _relative_links(path: Path) -> list[str]:
    links = []
    for target in LINK.findall(_prose(path.read_text(encoding="utf-8"))):
        if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", target):  # http:, https:, mailto: …
            continue
        links.append(target)
    return links


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    anchors, seen, inside = set(), {}, False
    for line in path.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line.lstrip()):
            inside = not inside
            continue
        match = None if inside else re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if match:
            slug = _slug(match.group(1))
            count = seen.get(slug, 0)
            seen[slug] = count + 1
            anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


@pytest.mark.parametrize("path", _markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_points_to_a_file_that_exists(path):
    broken = []
    for target in _relative_links(path):
        file_part = target.split("#", 1)[0]
        if not file_part:  # an anchor in the same page
            continue
        if not (path.parent / file_part).exists():
            broken.append(target)
    assert not broken, f"{path.relative_to(ROOT)} links to missing files: {broken}"


@pytest.mark.parametrize("path", _markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_anchor_in_a_link_to_a_markdown_page_exists(path):
    broken = []
    for target in _relative_links(path):
        if "#" not in target:
            continue
        file_part, anchor = target.split("#", 1)
        page = path if not file_part else path.parent / file_part
        if page.suffix == ".md" and page.is_file() and anchor not in _anchors(page):
            broken.append(target)
    assert not broken, f"{path.relative_to(ROOT)} links to missing headings: {broken}"


def test_the_link_checker_sees_links_and_skips_code(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("[a](a.md) [b](https://example.org) [`c`](c.md#x) `[d](d.md)`\n```\n[e](e.md)\n```\n",
                    encoding="utf-8")
    assert _relative_links(page) == ["a.md", "c.md#x"]
    assert _slug("Checking the install: `freezefix doctor`") == "checking-the-install-freezefix-doctor"
    assert _slug("`freeze_audit.json`") == "freeze_auditjson"
