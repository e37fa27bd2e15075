"""`vssl demo` end to end at a toy size: generate, pretrain, evaluate, report; a rerun reuses everything."""

from __future__ import annotations

import pytest

from vssl.demo import MODELS, Budget, run_demo


@pytest.mark.slow
def test_demo_end_to_end_and_resume(tmp_path):
    models = [m for m in MODELS if m.name in ("random init (R(2+1)D)", "tubelet contrast", "VideoMAE")]
    budget = Budget("tiny", pretrain_steps=3, seeds=(1, 2), scale=0.06)
    logs: list[str] = []
    result = run_demo(tmp_path, budget=budget, models=models, log=logs.append)
    (table,) = result["tables"]
    assert {row.model for row in table.rows} == {m.name for m in models}
    assert len(table.columns) == 8
    for row in table.rows:  # every experiment measured over both seeds
        assert all(row.cells[c.key].n == 2 for c in table.columns), row.model
        assert row.mean is not None and row.rank is not None
    for name in ("report.md", "report.html"):
        assert (tmp_path / name).stat().st_size > 500
    assert list((tmp_path / "plots").glob("*.png"))
    html = (tmp_path / "report.html").read_text()
    assert "data:image/png;base64" in html and "tubelet contrast" in html
    # issue 9: the report carries the tubelet sheet, a reconstruction and the sensitivity analysis
    assert "Figures" in html and "tubelet-augmented pairs" in html and "VideoMAE: masked input" in html
    assert (tmp_path / "figures" / "tubelets" / "tubelets.png").stat().st_size > 1000
    assert "Kendall" in html or "τ" in html
    # pretrained backbones were exported and load with no missing keys
    assert (tmp_path / "pretrain" / "tubelet-contrast" / "backbone.pt").is_file()

    logs.clear()
    again = run_demo(tmp_path, budget=budget, models=models, log=logs.append)
    assert any("reuse" in line for line in logs) and not any(line.startswith("run ") for line in logs)
    assert again["tables"][0].rows[0].mean == table.rows[0].mean


@pytest.mark.slow
def test_demo_budget_sizes_and_reference_row(tmp_path):
    """The GPU budget's knobs at toy size: per-dataset sizes, pretraining overrides and the
    trained-with-labels reference row (quick-ft) reported beside the main table."""
    from vssl.data.synth import load_description
    from vssl.demo import ORACLE_NAME

    models = [m for m in MODELS if m.name in ("random init (R(2+1)D)", "supervised (corpus labels)")]
    budget = Budget("tiny", pretrain_steps=2, seeds=(1,), scale=0.05, sizes=(("samples_a", (20, 30)),),
                    pretrain_overrides=("data.batch_size=4",), oracle_steps=2)
    result = run_demo(tmp_path, mode="gpu", budget=budget, models=models, log=lambda *a: None)
    data = next(tmp_path.glob("data-tiny-*"))
    assert load_description(data)["experiments"][2]["name"] == "samples_a"
    assert sum(load_description(data)["experiments"][2]["sizes"].values()) == 50
    main, reference = result["tables"]
    assert {r.model for r in main.rows} == {m.name for m in models}
    assert [r.model for r in reference.rows] == [ORACLE_NAME]
    assert all(c.n == 1 for c in reference.rows[0].cells.values())
    report = (tmp_path / "report.md").read_text()
    assert "Reference: random init trained with each experiment's labels" in report


def test_protocol_key_ignores_speed_only_overrides():
    from vssl.severe.runner import protocol_key

    assert protocol_key("quick", ["num_workers=12"]) == "quick"
    assert protocol_key("quick-ft", ["steps=5", "num_workers=3"]) == "quick-ft(steps=5)"
