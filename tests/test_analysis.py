"""SEVERE's sensitivity analysis: Kendall / Spearman on constructed tables, its figures, and
`vssl report --analysis` in md / json / html."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from vssl.config import RECIPES
from vssl.severe import analysis as A
from vssl.severe.published import read_published_csv
from vssl.severe.report import render
from vssl.severe.table import build_table
from vssl.severe.results import Result, ResultKey, ResultsStore

PUBLISHED = RECIPES / "severe/published/severe_eccv22.csv"  # carries the 'Existing UCF101' column


def synth_rows() -> list[dict]:
    """Four models; samples_a (the reference) ranks them 1 < 2 < 3 < 4.

    domain_a agrees, domain_b is reversed, counting agrees once read as 1 - MAE (MAE falls as the
    reference rises), actions_1 has one swap (tau 4/6, rho 0.8), multilabel is constant."""
    vals = {
        "samples_a": [10, 20, 30, 40], "domain_a": [1, 2, 3, 4], "domain_b": [9, 7, 5, 3],
        "counting": [0.9, 0.8, 0.7, 0.6], "actions_1": [1, 2, 4, 3], "actions_2": [5, 6, 7, 8],
        "samples_b": [1, 3, 2, 4], "multilabel": [25, 25, 25, 25],
    }
    return [{"model": f"m{i}", "experiment": col, "value": float(v[i]), "protocol": "quick", "seed": 1}
            for col, v in vals.items() for i in range(4)]


def test_rank_correlations_identical_reversed_and_one_swap():
    assert A.rank_correlations([1, 2, 3, 4], [10, 20, 30, 40])[::2] == pytest.approx((1.0, 1.0))
    assert A.rank_correlations([1, 2, 3, 4], [4, 3, 2, 1])[::2] == pytest.approx((-1.0, -1.0))
    tau, _, rho, _ = A.rank_correlations([1, 2, 3, 4], [1, 2, 4, 3])
    assert tau == pytest.approx((5 - 1) / 6) and rho == pytest.approx(1 - 6 * 2 / (4 * 15))
    # tau-b with a tie: pairs (n0 = 6, ties in y = 1): concordant 5, discordant 0 -> 5 / sqrt(6 * 5)
    assert A.rank_correlations([1, 2, 3, 4], [1, 2, 3, 3])[0] == pytest.approx(5 / math.sqrt(30))
    assert all(math.isnan(v) for v in A.rank_correlations([1, 2], [1, 2]))
    assert all(math.isnan(v) for v in A.rank_correlations([1, 2, 3], [5, 5, 5]))


def test_sensitivity_on_a_constructed_synthetic_table():
    res = A.sensitivity(build_table(synth_rows()))
    assert res.kind == "synth" and res.reference == "samples_a" and res.models == ["m0", "m1", "m2", "m3"]
    c = {x.column: x for x in res.coefficients}
    assert "samples_a" not in c and len(c) == 7
    assert c["domain_a"].kendall_tau == pytest.approx(1) and c["domain_a"].spearman_rho == pytest.approx(1)
    assert c["domain_b"].kendall_tau == pytest.approx(-1) and c["domain_b"].spearman_rho == pytest.approx(-1)
    assert c["counting"].kendall_tau == pytest.approx(1)         # lower MAE = better
    assert c["actions_1"].kendall_tau == pytest.approx(4 / 6) and c["actions_1"].spearman_rho == pytest.approx(0.8)
    assert math.isnan(c["multilabel"].kendall_tau) and c["multilabel"].n == 4
    assert c["domain_a"].factor == "domain" and c["counting"].factor == "task"


def test_ucf101_full_is_the_reference_when_given(tmp_path):
    rows = read_published_csv(PUBLISHED)
    table = build_table(rows)
    assert "UCF101" not in render(table, "md").split("\n")[0]   # kept beside the table, not shown
    res = A.sensitivity(table)
    assert res.reference == "ucf101" and res.reference_title == "UCF101" and len(res.coefficients) == 8
    # the 9 self-supervised rows of SEVERE's table: the in-domain ranking predicts the in-domain task (UCF-RC,
    # built on UCF101 videos) best, and no domain-shift or fine-grained column at p < 0.1
    ssl = A.sensitivity(build_table([r for r in rows if r["model"] not in ("None", "Supervised")]))
    c = {x.column: x for x in ssl.coefficients}
    assert max(c, key=lambda k: c[k].kendall_tau) == "ucf_rc" and c["ucf_rc"].kendall_p < 0.05
    assert all(c[k].kendall_p > 0.1 for k in ("ssv2", "gym99", "gym_1k", "fx_s1", "ub_s1"))
    # without the reference column, the table's in-domain column (UCF 10^3) is used
    res = A.sensitivity(build_table([{k: v for k, v in r.items() if k != "ucf101"} for r in rows]))
    assert res.reference == "ucf_1k" and len(res.coefficients) == 7


def test_sensitivity_analysis_writes_pngs_of_the_right_size(tmp_path):
    from PIL import Image

    out = A.sensitivity_analysis(synth_rows(), tmp_path / "fig")
    assert out["reference"] == "samples_a" and out["coefficients"]["domain_b"]["kendall_tau"] == pytest.approx(-1)
    assert out["coefficients"]["multilabel"]["kendall_tau"] is None       # NaN -> null (JSON-safe)
    json.dumps(out)
    assert set(out["figures"]) == {"domain", "samples", "actions", "task", "radar"}
    for name, path in out["figures"].items():
        w, h = A.FIGSIZE["radar" if name == "radar" else "bars"]
        with Image.open(path) as img:
            assert img.size == (round(w * A.DPI), round(h * A.DPI)) and img.format == "PNG"
        assert Path(path).stat().st_size > 5000
    assert sorted(p.name for p in (tmp_path / "fig").iterdir()) == [
        "synth_radar.png", "synth_sensitivity_actions.png", "synth_sensitivity_domain.png",
        "synth_sensitivity_samples.png", "synth_sensitivity_task.png"]
    assert "| domain_b | domain | -1.00 |" in out["markdown"]


def test_report_cli_analysis_md_json_html(tmp_path, capsys):
    from vssl import cli

    with ResultsStore(tmp_path / "run" / "results.sqlite") as s:
        for r in synth_rows():
            s.put(Result(ResultKey(r["model"], "none", r["experiment"], "quick", 1), "top1", r["value"]))
    run = str(tmp_path / "run")
    assert cli.main(["report", run, "--analysis", "--format", "html", "-o", str(tmp_path / "r.html")]) == 0
    html = (tmp_path / "r.html").read_text()
    # 4 factor plots of the table + 4 sensitivity bar charts + 1 radar, all inlined
    assert html.count("<img") == 9 and html.count("src='data:image/png;base64,") == 9
    assert "Sensitivity analysis" in html and "alt='sensitivity radar'" in html and "http" not in html
    assert cli.main(["report", run, "--analysis"]) == 0
    md = capsys.readouterr().out
    assert "**Sensitivity analysis**" in md and "| domain_a | domain | +1.00 |" in md
    assert cli.main(["report", run, "--analysis", "--format", "json", "-o", str(tmp_path / "r.json"),
                     "--plots", str(tmp_path / "plots")]) == 0
    data = json.loads((tmp_path / "r.json").read_text())
    assert data[0]["analysis"]["coefficients"]["domain_b"]["spearman_rho"] == pytest.approx(-1)
    assert len(list((tmp_path / "plots").glob("synth_sensitivity_*.png"))) == 4
    # without --analysis nothing changes
    assert cli.main(["report", run, "--format", "html", "-o", str(tmp_path / "plain.html")]) == 0
    assert (tmp_path / "plain.html").read_text().count("<img") == 4


def test_analysis_without_reference_is_skipped_not_fatal():
    rows = [{"model": m, "experiment": "domain_a", "value": v} for m, v in (("a", 1.0), ("b", 2.0))]
    md = render(build_table(rows), "md", analysis=True)
    assert "no model has the reference column samples_a" in md
