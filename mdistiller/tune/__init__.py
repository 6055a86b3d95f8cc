"""Equal-budget hyper-parameter tuning of every method of a suite on a validation split (Optuna).

* :mod:`.space`: the search spaces methods declare (``SEARCH_SPACE`` / ``search_space(cfg)`` on the distiller
  classes) and the suite's overrides, checked before anything runs;
* :mod:`.study`: the studies (one per config, JournalStorage in the sweep folder), their rounds of trials through the
  benchmark's launchers, the retraining of the chosen configurations and the table (:func:`~.study.tune`);
* :mod:`.trial`: one trial, ``python -m mdistiller.tune.trial``: a training run that reports to its study;
* :mod:`.report`: the tuning section of ``results.md`` and one figure per study;
* :mod:`.cli`: ``mdistiller-tune`` / ``python -m mdistiller.tune``.

Optuna is an optional dependency (``pip install 'mdistiller[tune]'``), imported only when a study runs.
"""
