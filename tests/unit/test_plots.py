import matplotlib

matplotlib.use("Agg")
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from tests.conftest import blobs  # noqa: E402
from wmlib import attacks, models, plots  # noqa: E402
from wmlib.keys import Key  # noqa: E402


def test_image_grid_and_case_study_layouts():
    imgs = blobs(4).x
    fig = plots.image_grid({"a": imgs, "b": blobs(4, 3, 32).x}, n=5)
    assert len(fig.axes) == 10
    fig = plots.topk_case_study([imgs[0], imgs[1]], [torch.softmax(torch.randn(10), 0)] * 2, ["x", "y"],
                                tuple(str(i) for i in range(10)))
    assert len(fig.axes) == 4


def test_curves_attack_grid_and_zoo_null():
    h = {"epoch": [1, 2], "train_acc": [0.5, 0.6], "monitors": {"val": [0.4, 0.5]}}
    assert len(plots.training_curves({"none": h, "content": h}).axes) == 2
    df = pd.DataFrame({"rate": [0.0, 0.5], "key": [1.0, 0.5], "test_acc": [0.9, 0.8]})
    assert len(plots.attack_grid({"content": df, "noise": df}, x="rate").axes) == 2
    from wmlib.verify import Null
    null = Null.fit([5, 30, 12], [100, 100, 100])
    panels = {k: {"null": null, "zoo": [0.05, 0.3, 0.12], "n": n, "marks": {"watermarked": 0.99, "fine-tuned": 0.7}}
              for k, n in (("content", 100), ("afs", 30))}
    fig = plots.zoo_null(panels, alpha=0.01)
    assert len(fig.axes) == 2 and fig.axes[0].get_xlim()[1] > 1.0
    assert "3 clean models" in fig.axes[0].get_title(loc="left")


def test_pruning_panels_mark_each_row():
    m = models.build("lenet1", 1, 10)
    key = Key(blobs(8).x, torch.zeros(8, dtype=torch.int64))
    fig = plots.pruning_panels(attacks.pruning_probe({"content": m}, {"content": key}), {"content": key}, [0.0, 0.5],
                               tuple(str(i) for i in range(10)), n=4)
    assert len(fig.axes) == 8 and "50% pruned" in fig.axes[4].get_ylabel()


def test_key_accuracy_bars_and_roc_and_heatmap():
    import numpy as np
    fig = plots.key_accuracy_bars({"lenet1": 0.9, "lenet5": 0.99}, {"lenet1": [0.1, 0.08], "lenet5": [0.07, 0.12, 0.1]}, 0.9)
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["lenet1", "lenet5"]
    fig = plots.roc_curves({"pixels": {"ours": (np.array([0, 1]), np.array([0, 1]), 0.5)}})
    assert "AUC 0.50" in fig.axes[0].get_legend().get_texts()[0].get_text()
    fig = plots.matrix_heatmap(pd.DataFrame([[0.9, 0.1], [0.2, 0.95]]), "leak")
    assert fig.axes[0].get_title() == "leak"


def test_lines_draws_panels_thresholds_and_log_axes():
    df = pd.DataFrame({"h": [1e-4, 1e-3, 1e-4, 1e-3] * 2, "bits": [0.5, 0.9, 0.6, 1.0] * 2,
                       "how": ["a", "a", "b", "b"] * 2, "panel": ["x"] * 4 + ["y"] * 4})
    import matplotlib.pyplot as plt
    fig = plots.lines(df, x="h", y="bits", hue="how", col="panel", threshold={"x": 0.78}, logx=True)
    axes = fig.axes
    assert len(axes) == 2 and all(ax.get_xscale() == "log" for ax in axes)
    dashed = [ln for ln in axes[0].lines if ln.get_color() == "g"]
    assert len(dashed) == 1 and dashed[0].get_ydata()[0] == 0.78 and dashed[0].get_linestyle() == "--"
    assert not [ln for ln in axes[1].lines if ln.get_color() == "g"]
    plt.close(fig)


def test_a_wide_attack_suite_runs_down_the_page_and_each_removal_panel_spans_its_own_losses():
    import pandas as pd

    from wmlib import plots

    entries, names = ["a", "b"], [f"attack-{i}" for i in range(5)]
    mat = pd.DataFrame([{"entry": e, "attack": n, "status": "ok", "claim rate": 1.0, "claimed": 1, "seeds": 1}
                        for e in entries for n in names]).set_index(["entry", "attack"])
    ax = plots.claim_heatmap(mat, entries, names).axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == names and ax.get_xlabel() == "watermark"
    ax = plots.claim_heatmap(mat, entries + ["c", "d", "e", "f"], names[:2]).axes[0]
    assert ax.get_xlabel() == "attack"
    att = pd.DataFrame({"attack": ["small", "small", "large"], "entry": ["a", "b", "a"],
                        "accuracy loss": [0.01, 0.02, 0.5], "margin": [0.3, -0.2, -0.5]})
    fig = plots.removal_panels(att, ["small", "large", "absent"])
    small, large = fig.axes[:2]
    assert small.get_xlim()[1] == pytest.approx(0.10) and large.get_xlim()[1] == pytest.approx(0.51)
    chain = "weight-shifting+fine-pruning+input-smoothing-gaussian"  # a long chain's title, one part a line
    fig = plots.removal_panels(att.assign(attack=["small", "small", chain]), ["small", chain])
    assert [ax.get_title() for ax in fig.axes[:2]] == ["small", chain.replace("+", "+\n")]
