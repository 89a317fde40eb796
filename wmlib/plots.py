"""Figures shared by the chapters (matplotlib + seaborn)."""
from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.patches import Rectangle
from matplotlib.ticker import FuncFormatter, NullLocator, PercentFormatter
import pandas as pd
import seaborn as sns
import numpy as np
import torch


def _show(ax, img: torch.Tensor) -> None:
    img = img.detach().cpu()
    if img.shape[0] == 1:
        ax.imshow(img[0], cmap="gray", vmin=0, vmax=255)
    else:
        ax.imshow(img.permute(1, 2, 0).to(torch.uint8))
    ax.set_xticks([]), ax.set_yticks([])


def image_grid(rows: dict[str, torch.Tensor], titles: list[str] | None = None, n: int = 6, size: float = 1.4):
    """One row of ``n`` uint8 images per entry of ``rows`` (row names on the left)."""
    fig, axes = plt.subplots(len(rows), n, figsize=(n * size, len(rows) * size), squeeze=False)
    for r, (name, imgs) in enumerate(rows.items()):
        for c in range(n):
            ax = axes[r, c]
            if c < len(imgs):
                _show(ax, imgs[c])
            else:
                ax.axis("off")
            if c == 0:
                ax.set_ylabel(name, rotation=0, ha="right", va="center")
            if titles and r == 0 and c < len(titles):
                ax.set_title(titles[c], fontsize=8)
    fig.tight_layout()
    return fig


def topk_case_study(images: list[torch.Tensor], probs: list[torch.Tensor], names: list[str],
                    classes: tuple[str, ...], k: int = 5):
    """Zhang et al. Fig. 5: each image beside a bar chart of its top-k predicted classes."""
    fig, axes = plt.subplots(len(images), 2, figsize=(7, 2.2 * len(images)), squeeze=False,
                             gridspec_kw={"width_ratios": [1, 2.2]})
    for i, (img, p, name) in enumerate(zip(images, probs, names)):
        _show(axes[i, 0], img)
        axes[i, 0].set_title(name, fontsize=9)
        top = torch.topk(p, k)
        labels = [classes[j] for j in top.indices.tolist()][::-1]
        axes[i, 1].barh(labels, top.values.tolist()[::-1], color=sns.color_palette()[0])
        for y, v in enumerate(top.values.tolist()[::-1]):
            axes[i, 1].text(min(v, 0.8) + 0.02, y, f"{v:.4f}", va="center", fontsize=8)
        axes[i, 1].set_xlim(0, 1.05)
        axes[i, 1].set_xlabel("probability")
    fig.tight_layout()
    return fig


def training_curves(histories: dict[str, dict], monitors=("train_acc", "val")):
    """Zhang et al. Figs. 6-7: train and validation accuracy per epoch, one line per model."""
    rows = []
    for model, h in histories.items():
        for i, e in enumerate(h["epoch"]):
            rows.append({"model": model, "epoch": e, "curve": "train", "accuracy": h["train_acc"][i]})
            rows.append({"model": model, "epoch": e, "curve": "validation", "accuracy": h["monitors"]["val"][i]})
    df = pd.DataFrame(rows)
    g = sns.relplot(df, x="epoch", y="accuracy", hue="model", col="curve", kind="line", marker="o",
                    height=3, aspect=1.3, facet_kws={"sharey": False})
    return g.figure


def attack_grid(frames: dict[str, pd.DataFrame], x: str, key_column: str = "key", acc_column: str = "test_acc",
                xlabel: str | None = None, col_wrap: int | None = None):
    """One panel per watermark: key accuracy and test accuracy against attack strength ``x``."""
    rows = []
    for name, df in frames.items():
        for _, r in df.iterrows():
            rows.append({"watermark": name, x: r[x], "metric": "key accuracy", "accuracy": r[key_column]})
            rows.append({"watermark": name, x: r[x], "metric": "test accuracy", "accuracy": r[acc_column]})
    g = sns.relplot(pd.DataFrame(rows), x=x, y="accuracy", hue="metric", style="metric", col="watermark",
                    kind="line", marker="o", height=2.8, aspect=1.1, col_wrap=col_wrap)
    g.set(ylim=(-0.02, 1.02))
    if xlabel:
        g.set_xlabels(xlabel)
    return g.figure


def zoo_null(panels: dict[str, dict], alpha: float, xlabel: str = "key accuracy (hits / queries)"):
    """One panel per key: the clean-model zoo's key accuracies (grey dots, one per model), the
    fitted null for one verification (the distribution of hits / n, shaded), the claim threshold
    (dashed), and the suspects (``marks``: name -> key accuracy; the watermarked model and its
    attacked copies). Each value of ``panels`` holds ``null`` (a :class:`wmlib.verify.Null`),
    ``zoo`` (member -> key accuracy), ``marks`` and ``n`` (queries per verification)."""
    markers = ["*", "D", "s", "^", "v", "P", "X", "o", "<", ">"]
    names = list(dict.fromkeys(m for p in panels.values() for m in p["marks"]))
    legend_rows = (len(names) + 3 + 2) // 3
    height = 1.45 * len(panels) + 0.5 + 0.22 * legend_rows
    fig, axes = plt.subplots(len(panels), 1, figsize=(7.5, height), squeeze=False, sharex=True)
    style = {m: (markers[i % len(markers)], sns.color_palette("tab10")[(i + 3) % 10]) for i, m in enumerate(names)}
    for ax, (key, p) in zip(axes[:, 0], panels.items()):
        null, n = p["null"], p["n"]
        pmf = null.pmf(n)
        ax.fill_between(np.arange(n + 1) / n, pmf / pmf.max(), step="mid", color="C0", alpha=0.25,
                        label=f"fitted null (n = {n} queries)")
        crit = null.critical(n, alpha)
        if crit <= n:
            ax.axvline(crit / n, color="k", ls="--", lw=1, label=f"claim threshold (α = {alpha:g})")
        zoo = np.asarray(list(p["zoo"]))
        ax.scatter(zoo, np.full(len(zoo), -0.18) + np.linspace(-0.06, 0.06, len(zoo)), color="0.35", s=16,
                   label="clean zoo models", zorder=3)
        for i, (m, acc) in enumerate(p["marks"].items()):
            mk, col = style[m]
            ax.scatter([acc], [0.45 + 0.1 * (i % 4)], marker=mk, s=110 if mk == "*" else 45, color=col,
                       edgecolor="k", linewidth=0.4, label=m, zorder=4)
        ax.set_ylim(-0.35, 1.1)
        ax.set_yticks([])
        guard = f", chance guard {null.floor:.2f}" if null.floor > 0 else ""
        ax.set_title(f"{key}: {null.models} clean models, null mean {null.mean:.3f}, spread {null.spread:.3f}{guard}",
                     fontsize=9, loc="left")
    axes[-1, 0].set_xlim(-0.02, 1.02)
    axes[-1, 0].set_xlabel(xlabel)
    handles, labels = {}, {}
    for ax in axes[:, 0]:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(lab, h)
    fig.legend(list(handles.values()), list(handles), loc="lower center", ncol=3, fontsize=8, frameon=False,
               bbox_to_anchor=(0.5, 0.0))
    fig.tight_layout(rect=(0, (0.22 * legend_rows + 0.15) / height, 1, 1))
    return fig


def pruning_panels(probe, keys: dict, rates: list[float], classes: tuple[str, ...], n: int = 8):
    """Key samples with the pruned watermarked model's answers: one row per (key kind, rate);
    green titles are the target label (the watermark answers), red ones are not. ``probe(kind,
    rate, n)`` gives the answers and the key accuracy (:func:`wmlib.attacks.pruning_probe`)."""
    rows = [(k, r) for k in keys for r in rates]
    fig, axes = plt.subplots(len(rows), n, figsize=(n * 1.1, len(rows) * 1.35), squeeze=False)
    for i, (k, rate) in enumerate(rows):
        pred, acc = probe(k, rate, n)
        for j in range(n):
            _show(axes[i, j], keys[k].x[j])
            ok = bool(pred[j] == keys[k].y[j])
            axes[i, j].set_title(classes[int(pred[j])][:9], fontsize=7, color="green" if ok else "red")
        axes[i, 0].set_ylabel(f"{k}\n{rate:.0%} pruned\nkey acc {acc:.0%}", rotation=0, ha="right",
                              va="center", fontsize=8)
    fig.tight_layout()
    return fig


def pruning_explorer(probe, keys: dict, classes: tuple[str, ...]):
    """An ipywidgets panel: choose a key kind and a pruning rate, see the pruned model's answers."""
    import ipywidgets as widgets
    from IPython.display import display

    kind = widgets.Dropdown(options=list(keys), description="key")
    rate = widgets.FloatSlider(value=0.5, min=0.0, max=0.95, step=0.05, continuous_update=False,
                               description="pruned", readout_format=".0%")
    out = widgets.Output()

    def redraw(_=None):
        with out:
            out.clear_output(wait=True)
            pruning_panels(probe, {kind.value: keys[kind.value]}, [rate.value], classes)
            plt.show()

    kind.observe(redraw, "value")
    rate.observe(redraw, "value")
    redraw()
    panel = widgets.VBox([widgets.HBox([kind, rate]), out])
    display(panel)
    return panel


def before_after(top_images: dict[str, torch.Tensor], bottom_images: dict[str, torch.Tensor],
                 top: str = "before", bottom: str = "after", size: float = 1.3):
    """Namba & Sakuma Fig. 1: each image (top row) above its transformed version (bottom row)."""
    names = list(top_images)
    fig, axes = plt.subplots(2, len(names), figsize=(len(names) * size, 2.4 * size), squeeze=False)
    for j, name in enumerate(names):
        for i, img in enumerate((top_images[name], bottom_images[name])):
            img = img.detach().cpu()
            _show(axes[i, j], (img * 255).round().to(torch.uint8) if img.is_floating_point() else img)
        axes[0, j].set_title(name, fontsize=8)
    axes[0, 0].set_ylabel(top, fontsize=8)
    axes[1, 0].set_ylabel(bottom, fontsize=8)
    fig.tight_layout()
    return fig


def auc_heatmap(auc: pd.DataFrame):
    """Namba & Sakuma Fig. 2 as heatmaps: AUC per key type (rows) and |K'| (columns), one panel per
    invalidation."""
    panels = list(dict.fromkeys(auc["invalidation"]))
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 0.45 * auc["key"].nunique() + 1.2),
                             squeeze=False)
    for ax, name in zip(axes[0], panels):
        grid = auc[auc["invalidation"] == name].pivot(index="key", columns="|K'|", values="AUC")
        grid = grid.loc[list(dict.fromkeys(auc["key"])), sorted(grid.columns, reverse=True)]
        sns.heatmap(grid, annot=True, fmt=".2f", vmin=0.5, vmax=1.0, cmap="viridis", cbar=ax is axes[0][-1], ax=ax)
        ax.set_title(name, fontsize=9)
    fig.tight_layout()
    return fig


def roc_curves(curves: dict[str, dict[str, tuple]], title: str = "detector"):
    """Li et al. Figs. 6-7: one panel per detector, one ROC curve per key-sample method, AUC in the
    legend. ``curves[panel][method] = (fpr, tpr, auc)``."""
    fig, axes = plt.subplots(1, len(curves), figsize=(4.2 * len(curves), 3.8), squeeze=False)
    for ax, (panel, methods) in zip(axes[0], curves.items()):
        for i, (method, (fpr, tpr, auc)) in enumerate(methods.items()):
            ax.plot(fpr, tpr, color=f"C{i}", lw=1.6, label=f"{method} (AUC {auc:.2f})")
        ax.plot([0, 1], [0, 1], "k:", lw=1)
        ax.set(xlabel="false positive rate", ylabel="true positive rate", title=f"{title}: {panel}",
               xlim=(0, 1), ylim=(0, 1.01))
        ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def matrix_heatmap(matrix: pd.DataFrame, title: str, fmt: str = ".0%", vmin: float = 0.0, vmax: float = 1.0):
    """An annotated heatmap of a small matrix (e.g. Li et al. Fig. 9: encoders x hosts)."""
    fig, ax = plt.subplots(figsize=(1.1 * matrix.shape[1] + 2.2, 0.8 * matrix.shape[0] + 1.4))
    sns.heatmap(matrix, annot=True, fmt=fmt, vmin=vmin, vmax=vmax, cmap="viridis", ax=ax, cbar_kws={"shrink": 0.8})
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def key_accuracy_bars(watermarked: dict[str, float], clean: dict[str, list[float]], threshold: float | None = None):
    """Li et al. Fig. 5: per host, the watermarked model's key accuracy beside that of clean models
    (a bar at their mean, one dot per clean model); ``threshold`` draws T_acc."""
    hosts = list(watermarked)
    fig, ax = plt.subplots(figsize=(1.6 * len(hosts) + 2.5, 3.2))
    x = np.arange(len(hosts))
    ax.bar(x - 0.2, [watermarked[h] for h in hosts], 0.4, color="C3", label="watermarked")
    ax.bar(x + 0.2, [float(np.mean(clean[h])) for h in hosts], 0.4, color="0.75", label="clean models (mean)")
    for i, h in enumerate(hosts):
        ax.scatter(np.full(len(clean[h]), i + 0.2) + np.linspace(-0.12, 0.12, len(clean[h])), clean[h], s=10,
                   color="0.25", zorder=3, label="one clean model" if i == 0 else None)
    if threshold is not None:
        ax.axhline(threshold, color="k", ls="--", lw=1, label=f"T_acc = {threshold:g}")
    ax.set_xticks(x, hosts)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("key accuracy")
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    return fig


def lines(df: pd.DataFrame, x: str, y: str, hue: str | None = None, col: str | None = None,
          threshold: float | dict | None = None, threshold_label: str = "claim threshold", logx: bool = False,
          ylim: tuple[float, float] | None = (-0.02, 1.02), xlabel: str | None = None, ylabel: str | None = None,
          errorbar=("sd", 1), height: float = 3.0, aspect: float = 1.3):
    """``y`` against ``x`` (one line per ``hue``, one panel per ``col``; repeated rows give the mean
    and ± 1 sd), with an optional dashed ``threshold`` (one value, or one per panel)."""
    g = sns.relplot(df, x=x, y=y, hue=hue, style=hue, col=col, kind="line", marker="o", errorbar=errorbar,
                    height=height, aspect=aspect, facet_kws={"sharey": True, "sharex": False})
    for name, ax in g.axes_dict.items() if col else [(None, g.ax)]:
        t = threshold.get(name) if isinstance(threshold, dict) else threshold
        if t is not None:
            ax.axhline(t, color="g", ls="--", lw=1)
            ax.annotate(threshold_label, xy=(0.02, t), xycoords=("axes fraction", "data"), fontsize=8, color="g",
                        va="bottom")
        if logx:  # ticks at the values measured, written plainly (no 3x10^1 minor labels)
            ax.set_xscale("log")
            ax.set_xticks(sorted(df[x].dropna().unique()))
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            ax.xaxis.set_minor_locator(NullLocator())
    if ylim:
        g.set(ylim=ylim)
    g.set_axis_labels(xlabel or x, ylabel or y)
    return g.figure


def claim_heatmap(matrix: pd.DataFrame, entries: list[str], attacks: list[str]):
    """The comparison's scheme x attack matrix (:func:`wmlib.compare.matrix`): each cell's claim
    rate over the seeds the attack acted on, annotated with claims / verifications (and the seeds it
    left alone, "+k idle"); an attack that does not apply is a grey 'n/a' cell, one that found nothing
    to act on in any seed a grey 'no action' cell (the reasons are in the table beside it). A
    worst-case search (``oracle``) is hatched and named so: an upper bound, not a thief."""
    rate = pd.DataFrame(np.nan, index=entries, columns=attacks)
    text = pd.DataFrame("n/a", index=entries, columns=attacks)
    worst = set()
    for (entry, attack), row in matrix.iterrows():
        if entry not in rate.index or attack not in rate.columns:
            continue
        flag = row.get("oracle", False)
        if pd.notna(flag) and bool(flag):
            worst.add(attack)
        idle = row.get("no action", 0)
        idle = 0 if pd.isna(idle) else int(idle)
        if row["status"] == "ok":
            rate.loc[entry, attack] = row["claim rate"]
            text.loc[entry, attack] = f"{row['claimed']}/{row['seeds']}" + (f" +{idle} idle" if idle else "")
        elif row["status"] == "no action":
            text.loc[entry, attack] = "no action"
    named = {a: f"{a} (worst case: reads the key)" for a in worst}
    rate, text = rate.rename(columns=named), text.rename(columns=named)
    transposed = len(attacks) > len(entries)
    if transposed:  # the longer list down the page, so that a wide suite stays legible
        rate, text = rate.T, text.T
    fig, ax = plt.subplots(figsize=(0.85 * rate.shape[1] + 2.6, 0.42 * rate.shape[0] + 1.8))
    ax.set_facecolor("0.88")  # the n/a cells (NaN) are left unpainted
    sns.heatmap(rate, annot=text.values, fmt="", vmin=0.0, vmax=1.0, cmap="RdYlGn", linewidths=0.5, linecolor="white",
                cbar_kws={"label": "claim rate (over seeds)", "shrink": 0.8}, annot_kws={"fontsize": 7}, ax=ax)
    for i, row in enumerate(rate.index):  # seaborn leaves NaN cells unannotated
        for j, column in enumerate(rate.columns):
            if np.isnan(rate.loc[row, column]):
                ax.text(j + 0.5, i + 0.5, text.loc[row, column], ha="center", va="center", fontsize=7, color="0.45")
    for name in named.values():  # the worst case's row or column, hatched
        k = list(rate.index if transposed else rate.columns).index(name)
        xy, w, h = ((0, k), rate.shape[1], 1) if transposed else ((k, 0), 1, rate.shape[0])
        ax.add_patch(Rectangle(xy, w, h, fill=False, hatch="///", edgecolor="0.35", lw=0.0))
    ax.set_xticklabels(ax.get_xticklabels(), rotation=40, ha="right")
    ax.set_yticklabels(ax.get_yticklabels(), rotation=0)
    ax.set(xlabel="attack" if not transposed else "watermark", ylabel="")
    fig.tight_layout()
    return fig


def robustness_vs_cost(points: pd.DataFrame, x: str, y: str, label: str = "entry", xlabel: str | None = None,
                       ylabel: str | None = None):
    """One labelled point per scheme: what embedding it costs (``x``) against how often it is still
    claimed after the attack suite (``y``)."""
    fig, ax = plt.subplots(figsize=(6.8, 4.4))
    sns.scatterplot(points, x=x, y=y, hue=label, style=label, s=80, ax=ax, legend=False)
    ax.margins(x=0.15)  # room for the names of the outermost points
    ax.set(xlabel=xlabel or x, ylabel=ylabel or y, ylim=(-0.03, 1.05))
    ax.xaxis.set_major_formatter(PercentFormatter(1.0, decimals=1))
    ax.axvline(0.0, color="0.6", lw=0.8, ls=":")
    fig.tight_layout()
    _label_points(fig, ax, points, x, y, label)
    return fig


def _label_points(fig, ax, points: pd.DataFrame, x: str, y: str, label: str) -> None:
    """Name each point, trying a few places around it until the name overlaps no other name."""
    renderer = fig.canvas.get_renderer()
    placed = []
    for _, r in points.sort_values(y, ascending=False).iterrows():
        for dx, dy, ha in ((6, 4, "left"), (6, -11, "left"), (-6, 4, "right"), (-6, -11, "right"), (6, 14, "left"),
                           (6, -21, "left")):
            t = ax.annotate(r[label], (r[x], r[y]), xytext=(dx, dy), textcoords="offset points", fontsize=8, ha=ha)
            box = t.get_window_extent(renderer).expanded(1.05, 1.15)
            if not any(box.overlaps(b) for b in placed):
                break
            t.remove()
        else:  # no free place: the first one
            t = ax.annotate(r[label], (r[x], r[y]), xytext=(6, 4), textcoords="offset points", fontsize=8)
            box = t.get_window_extent(renderer)
        placed.append(box)


def removal_panels(attacked: pd.DataFrame, attacks: list[str], max_loss: float = 0.05, col_wrap: int = 4):
    """The SoK's robustness figure, one panel per attack: the owner's key statistic over the null's
    threshold (``margin``; below the dashed line the claim fails) against the test accuracy the thief
    lost (``accuracy loss``; right of the dotted line it lost more than ``max_loss``), one point per
    scheme and seed (:func:`wmlib.compare.attacked_cells`). Bottom left: removed by Lukas et al.'s rule.
    Each panel spans its own losses (at least up to twice ``max_loss``), so that transfer learning's or a
    knockoff's large losses do not squeeze the others. Thieves' cells only: a worst-case search
    (``oracle``) and a cell whose attack found nothing to act on are left out (neither is a thief's
    result)."""
    thief = attacked[~attacked.get("oracle", pd.Series(False, index=attacked.index)).fillna(False).astype(bool)
                     & (attacked.get("status", pd.Series("ok", index=attacked.index)) == "ok")]
    shown = [a for a in attacks if a in set(thief["attack"])]
    data = thief[thief["attack"].isin(shown)]
    g = sns.relplot(data, x="accuracy loss", y="margin", hue="entry", style="entry", col="attack", col_order=shown,
                    col_wrap=min(col_wrap, len(shown)), height=2.5, aspect=1.05, s=45,
                    facet_kws={"sharex": False, "sharey": True})
    for attack, ax in g.axes_dict.items():
        loss = data.loc[data["attack"] == attack, "accuracy loss"]
        ax.axhline(0.0, color="0.3", lw=0.9, ls="--")
        ax.axvline(max_loss, color="0.5", lw=0.9, ls=":")
        ax.set_xlim(min(-0.01, float(loss.min()) - 0.01), max(2 * max_loss, float(loss.max()) + 0.01))
        ax.xaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
        ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
        ax.tick_params(labelbottom=True)
    g.set_titles("{col_name}")
    for attack, ax in g.axes_dict.items():  # a chain's long name breaks at its '+' (one part a line)
        if len(attack) > 24:
            ax.set_title(attack.replace("+", "+\n"), fontsize="small")
    g.set_axis_labels("test accuracy the thief lost", "statistic − threshold")
    g.tight_layout()  # the grid's own layout keeps the legend outside the panels
    return g.figure


def transfer_strip(rates: pd.DataFrame, x: str = "models", y: str = "key accuracy", hue: str = "key",
                   chance: float | None = None, title: str | None = None):
    """One dot per model and key: how often each group of models (e.g. the accuser's surrogates,
    the public zoo, the judge's private zoo, the suspects) answers a false key with its labels,
    one colour per kind of key; ``chance`` draws 1 / classes."""
    groups = list(dict.fromkeys(rates[x]))
    fig, ax = plt.subplots(figsize=(1.5 * len(groups) + 3.0, 3.4))
    sns.stripplot(rates, x=x, y=y, hue=hue, dodge=True, jitter=0.25, size=4, alpha=0.75, ax=ax, order=groups)
    sns.pointplot(rates, x=x, y=y, hue=hue, dodge=0.4, errorbar=None, markers="_", markersize=18, linestyle="none",
                  palette="dark:k", ax=ax, order=groups, legend=False)
    if chance is not None:
        ax.axhline(chance, color="0.4", ls=":", lw=1)
        ax.annotate("chance", xy=(1.0, chance), xycoords=("axes fraction", "data"), fontsize=8, color="0.4",
                    ha="right", va="bottom")
    ax.set_ylim(-0.02, 1.02)
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_xlabel("")
    if title:
        ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5), title=hue)
    fig.tight_layout()
    return fig
