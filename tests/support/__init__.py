"""Test support for genreflow's suite: importable helpers, one definition each.

Why a package and not conftests loaded by path: pytest imports every ``conftest.py`` under the
module name ``conftest``, so one conftest cannot import another by name, and loading one from
its file under a second name ran its module code (and its per-module caches) twice. Here each
helper lives once and every conftest or test imports it (``pyproject.toml`` puts ``tests/`` on
``sys.path`` through pytest's ``pythonpath``).

- :mod:`support.tiny`: the tiny in-process profile (data, params, fresh MLflow stores);
- :mod:`support.trained`: the session's one trained-and-evaluated tiny repository;
- :mod:`support.repo`: committed copies of this repository and the ``dvc`` runner;
- :mod:`support.processes`: child environments, commands, stopping process groups;
- :mod:`support.servers`: real servers (``mlflow server``, ``moto_server``, a TCP proxy).
"""
