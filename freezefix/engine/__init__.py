"""The stages a run goes through, one module each, in order:

``load``      resolve one file → skipped, failed, a ``_base_`` fragment, or a config to judge;
``judge``     every selected rule on one resolved config (the only place rules run: ``check``, the
              write gate and ``explain`` all come here), in forked workers when there are many;
``place``     a finding → the file, line and column that write its key, one report per place;
``remember``  each file's outcome into the results cache, with the digests it was computed from;
``fix``       findings' fixes → a plan → the write gate → atomic writes, and each fix's status.

``freezefix.api`` runs them; FF100 (suppressions that silence nothing) is decided by its rule
module once every other rule has run.
"""
