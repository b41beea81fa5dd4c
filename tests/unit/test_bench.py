"""The benchmarks stay runnable: each imports, and its argument parser answers --help with how to run it."""

from __future__ import annotations

import importlib

import pytest

BENCHES = {"ingest": ("--sales", 100_000), "recalc": ("--sales", 100_000), "latency": ("--rounds", 50),
           "relay": ("--events", 100_000), "funds_follow": ("--events", 100_000),
           "webhooks": ("--deliveries", 5000)}


@pytest.mark.parametrize("name", sorted(BENCHES))
def test_bench_answers_help_with_how_to_run_it(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    bench = importlib.import_module(f"bench.{name}")
    with pytest.raises(SystemExit) as exit_:
        bench.parser().parse_args(["--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    assert f".venv/bin/python bench/{name}.py" in text
    assert "--database-url" in text


@pytest.mark.parametrize("name", sorted(BENCHES))
def test_bench_defaults_are_the_sizes_it_reports_on(name: str) -> None:
    option, default = BENCHES[name]
    arguments = importlib.import_module(f"bench.{name}").parser().parse_args([])
    assert getattr(arguments, option.lstrip("-")) == default


def test_percentiles_are_nearest_rank() -> None:
    from bench.support import percentile

    values = [float(v) for v in range(1, 101)]
    assert (percentile(values, 0.5), percentile(values, 0.9), percentile(values, 0.99)) == (50.0, 90.0, 99.0)
    assert percentile([3.0, 1.0, 2.0], 0.99) == 3.0
