"""Stage four: each file's outcome into the results cache, with what it was computed from."""

from __future__ import annotations

from pathlib import Path

from freezefix.cache import Entry, ResultsCache, cache_id, environment_digest, inputs_of
from freezefix.config.resolve import Resolver
from freezefix.plugins import plugin_specs, plugins_named
from freezefix.engine.result import RunOptions
from freezefix.ftypes import Checked, FileOutcome


def open_results_cache(options: RunOptions) -> ResultsCache | None:
    """The results cache of a run, kept apart for each setting that changes findings (rule
    selection, freeze policy, prober device); None when the run keeps none."""
    if not options.results_cache or options.cache_dir is None:
        return None
    settings = {"select": options.select, "ignore": options.ignore, "freeze": options.freeze,
                "prober-device": options.prober_device}
    return ResultsCache(options.cache_dir, cache_id(settings))


def remember(cache: ResultsCache, resolver: Resolver, path: Path, named: bool, outcome: FileOutcome) -> None:
    """Store what ``path`` came to with the digests of what it was computed from, as read this run."""
    entry = entry_for(cache, resolver, path, named, outcome)
    if entry is not None:
        cache.store(path, entry)


def entry_for(cache: ResultsCache, resolver: Resolver, path: Path, named: bool, outcome: FileOutcome) -> Entry | None:
    """The results-cache entry of what ``path`` came to, or None when it must not be kept: an
    outcome a timeout decided (a busy machine is no verdict on the file), a config whose plugin
    code cannot be pinned down, and a rule that crashed.  An outcome that may change with no file
    changing (a class that did not import, one that needs a package this environment lacks) is
    kept with what would change it: the installed packages, ``sys.path`` and where its plugins are."""
    inputs = inputs_of(resolver, path)
    if inputs.transient:
        return None
    plugins: tuple[Path, ...] = ()  # what a config's classes come from: only a judged config's outcome depends on it
    environment = None
    if isinstance(outcome, Checked):
        if outcome.crashes or inputs.plugins is None:
            return None
        plugins = inputs.plugins
        if not outcome.lasting:
            asked = plugins_named(resolver.values(path))
            environment = (environment_digest(), asked, plugin_specs(*asked, path))

    def digests(paths: list[Path]) -> tuple[tuple[str, str | None], ...]:
        # The digest of the bytes that were resolved, not of the file now: an edit since then
        # must invalidate the entry on the next run.
        return tuple((str(p), resolver.sources.digest_read(p) or cache.digest(str(p))) for p in paths)

    return Entry(named, digests(list(inputs.files)), digests(list(plugins)), inputs.env, outcome, environment)
