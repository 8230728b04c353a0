"""Sampler and pruner names are declared once and read by the factories, the suite and the CLI."""
from __future__ import annotations

import optuna
import pytest

from harness.cli import build_parser
from harness.errors import ConfigError
from harness.samplers import PRUNERS, SAMPLERS, make_pruner, make_sampler
from harness.suite import from_mapping


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_every_sampler_name_builds_an_optuna_sampler(name):
    try:
        sampler = make_sampler(name, 0)
    except ConfigError as exc:  # an optional dependency that is not installed, named in one line
        assert "pip install" in str(exc)
        return
    assert isinstance(sampler, optuna.samplers.BaseSampler)


@pytest.mark.parametrize("name", list(PRUNERS))
def test_every_pruner_name_builds_an_optuna_pruner(name):
    assert isinstance(make_pruner(name, 10), optuna.pruners.BasePruner)


def test_unknown_names_are_refused_with_the_known_ones():
    with pytest.raises(ConfigError, match="known: " + ", ".join(SAMPLERS)):
        from_mapping({"datasets": ["digits"], "methods": ["erm"], "sampler": "annealing"})
    with pytest.raises(ConfigError, match="known: " + ", ".join(PRUNERS)):
        make_pruner("asha", 10)


def test_the_command_line_help_lists_the_declared_names():
    help_text = build_parser()._subparsers._group_actions[0].choices["run"].format_help()
    assert " | ".join(SAMPLERS) in " ".join(help_text.split())
    assert " | ".join(PRUNERS) in " ".join(help_text.split())
