"""The README's peer table is the saved run's, and the saved run holds what it claims."""

from __future__ import annotations

import json
import statistics
from typing import Any

import pytest

from benchmarks import peers_table


@pytest.fixture(scope="module")
def run() -> dict[str, Any]:
    saved: dict[str, Any] = json.loads(peers_table.RESULT.read_text(encoding="utf-8"))
    return saved


def test_the_readme_table_is_rendered_from_the_saved_run(run: dict[str, Any]) -> None:
    readme = peers_table.README.read_text(encoding="utf-8")
    assert peers_table.current_block(readme) == peers_table.block(run)


def test_each_store_ratio_is_the_median_of_its_rounds_ratios(run: dict[str, Any]) -> None:
    rounds = run["plan"]["store"]["rounds"]
    for workload, result in run["results"]["store"].items():
        ours, theirs = result["samples"]["eventsource"], result["samples"]["eventsourcing"]
        assert len(ours) == len(theirs) == rounds, workload
        per_round = [a / b for a, b in zip(ours, theirs, strict=True)]
        assert result["ratio"]["median"] == pytest.approx(statistics.median(per_round))
        assert result["ratio"]["min"] == pytest.approx(min(per_round))
        assert result["met"] == (result["ratio"]["median"] >= result["target"])
        assert result["checked"]["stored"] > 0


def test_each_fold_ratio_is_the_median_of_its_rounds_ratios(run: dict[str, Any]) -> None:
    fold = run["results"]["fold"]
    rounds = run["plan"]["fold"]["rounds"]
    quix = fold["samples"]["quix-streams"]
    for name in ("sqlite", "postgresql", "sqlite-tuned", "postgresql-tuned"):
        if name not in fold:
            continue
        own = fold["samples"][name]
        for measure in ("after_startup", "start_to_finish"):
            assert len(own[measure]) == len(quix[measure]) == rounds
            per_round = [a / b for a, b in zip(own[measure], quix[measure], strict=True)]
            assert fold[name][measure]["median"] == pytest.approx(statistics.median(per_round))


def test_replacing_the_block_keeps_the_rest_of_the_readme() -> None:
    text = f"before\n{peers_table.START}\nold\n{peers_table.END}\nafter\n"
    replaced = peers_table.replace_block(text, f"{peers_table.START}\nnew\n{peers_table.END}")
    assert replaced == f"before\n{peers_table.START}\nnew\n{peers_table.END}\nafter\n"
