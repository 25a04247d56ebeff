"""A rule's documentation as Markdown: the README's rule table and the page of one rule (its
sections, the configs it accepts and reports, what ``apply`` makes of them).  Written to the
repository by ``scripts/document_rules.py``; SARIF output carries the page as each rule's help."""

from __future__ import annotations

from freezefix.rules.base import ALL_STACKS, Checkpoint, Invalid, Rule, Valid


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def rule_table(rules: list[Rule]) -> str:
    rows = ["| code | name | fires when | fix |", "|---|---|---|---|"]
    for rule in rules:
        link = f"[{rule.code}](docs/rules/{rule.code}.md)"
        rows.append(f"| {link} | {rule.name} | {_cell(rule.summary)} | {_cell(rule.fix_summary)} |")
    return "\n".join(rows)


def _config_block(source: str) -> str:
    return f"```python\n{source.rstrip()}\n```"


def _beside(example: Valid | Invalid) -> list[str]:
    parts = []
    for relative, text in example.beside:
        parts += ["", f"with `{relative}` beside it:", "", _config_block(text)]
    for checkpoint in example.checkpoints:
        parts += ["", f"with `{checkpoint.path}` beside it: {checkpoint_story(checkpoint)}"]
    return parts


def checkpoint_story(checkpoint: Checkpoint) -> str:
    """How an example's checkpoint was saved, in words."""
    args = ", ".join(f"{k}={v!r}" for k, v in checkpoint.module.items() if k != "type")
    text = f"the weights of a `{checkpoint.module['type']}({args})`"
    text += f", every key under `{checkpoint.prefix}`" if checkpoint.prefix else ""
    text += f", nested under `{checkpoint.nest!r}`" if checkpoint.nest else ", as a bare state dict"
    if checkpoint.drop:
        text += ", without " + ", ".join(f"`{d}*`" for d in checkpoint.drop)
    if checkpoint.reshape:
        text += ", with " + ", ".join(f"`{r}`" for r in checkpoint.reshape) + " one row larger"
    return text + "."


def _on_stacks(example: Valid | Invalid) -> list[str]:
    if example.stacks == ALL_STACKS:
        return []
    return ["", f"(on the {' and '.join(example.stacks)} stack{'s' * (len(example.stacks) > 1)} only)"]


def rule_page(rule: Rule) -> str:
    parts = [f"# {rule.code} {rule.name}", "", f"{rule.summary}.", ""]
    for heading, body in type(rule).sections().items():
        parts += [f"## {heading}", "", body, ""]
    parts += ["## Configs it accepts", ""]
    for example in rule.VALID:
        parts += [_config_block(example.source), *_beside(example), *_on_stacks(example), ""]
    parts += ["## Configs it reports", ""]
    for example in rule.INVALID:
        parts += [_config_block(example.source), *_beside(example), *_on_stacks(example)]
        parts += ["", f"Reported at line {example.line}, column {example.col}: \"… {example.message} …\""]
        policy = [f"`--freeze {','.join(example.freeze)}`" if example.freeze else "",
                  "`--unsafe-fixes`" if example.unsafe_fixes else ""]
        policy_text = " with " + " and ".join(p for p in policy if p) if any(policy) else ""
        if example.fixed is not None:
            parts += ["", f"`freezefix apply`{policy_text} makes it:", "", _config_block(example.fixed)]
        elif policy_text:
            parts += ["", f"(reported{policy_text})"]
        parts.append("")
    parts.append(f"<sub>Generated from `freezefix/rules/{type(rule).__module__.rsplit('.', 1)[-1]}.py` by "
                 "`scripts/document_rules.py`.</sub>")
    return "\n".join(parts) + "\n"
