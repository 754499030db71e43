"""`mcss-train fit --help` explains every option, from the TrainConfig field that defines it."""

from __future__ import annotations

import argparse
from dataclasses import fields

from trainer.cli import _parser
from trainer.config import TrainConfig


def _fit_parser() -> argparse.ArgumentParser:
    sub = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices["fit"]


def test_every_fit_option_has_help_text():
    actions = [a for a in _fit_parser()._actions if a.option_strings]
    missing = [a.option_strings[0] for a in actions if not (a.help or "").strip()]
    assert missing == []
    flags = {a.option_strings[0] for a in actions}
    assert {"--" + f.name.replace("_", "-") for f in fields(TrainConfig)} <= flags


def test_help_comes_from_the_config_field_and_shows_the_default():
    by_flag = {a.option_strings[0]: a for a in _fit_parser()._actions if a.option_strings}
    for f in fields(TrainConfig):
        text = by_flag["--" + f.name.replace("_", "-")].help
        assert text.startswith(f.metadata["help"])
        assert "(default:" in text
    assert by_flag["--steps"].help.endswith("(default: 5000)")
    assert by_flag["--augment"].help.endswith("(default: true)")
    assert "%" not in _fit_parser().format_help().replace("1%", "")  # %% rendered as one %
