"""Reports of a mapped network: a per-layer Markdown table and a plot, side by side.

`write_report(mapped, baseline, out_dir)` writes ``<stem>.md`` (per-layer table: engine, plan,
MACs, predicted cycles of the mapped plan and of the baseline, speedup, utilization; network
totals) and ``<stem>.png`` (per-layer cycles by engine, mapped against the baseline, with the
mapped plan's utilization) and returns their paths. matplotlib draws off-screen (Agg).
"""

from __future__ import annotations

from pathlib import Path

from .mapper import NetworkMapping

__all__ = ["ENGINE_COLORS", "markdown_table", "plot_layers", "write_report"]

ENGINE_COLORS = {"array": "#1f77b4", "vector": "#ff7f0e"}


def _costed(mapping: NetworkMapping):
    return [lm for lm in mapping.layers if lm.cost is not None]


def markdown_table(mapped: NetworkMapping, baseline: NetworkMapping | None = None) -> str:
    """The per-layer table and totals as Markdown (GitHub pipe tables)."""
    base = {lm.name: lm for lm in baseline.layers} if baseline else {}
    head = ["#", "layer", "kind", "engine", "plan", "MACs", "DRAM bytes", "cycles", "util"]
    if baseline:
        head += ["naive engine", "naive cycles", "speedup"]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for i, lm in enumerate(_costed(mapped)):
        cells = [str(i), f"`{lm.name}`", lm.kind, lm.engine, f"`{lm.plan_text}`",
                 f"{lm.macs:,}", f"{lm.dram_bytes:,}", f"{lm.cycles:,}",
                 f"{100 * lm.cost.utilization:.1f}%"]  # fmt: skip
        if baseline:
            b = base[lm.name]
            cells += [b.engine, f"{b.cycles:,}", f"{b.cycles / max(lm.cycles, 1):.2f}x"]
        rows.append("| " + " | ".join(cells) + " |")
    total = ["", "**total**", "", "", "", f"{mapped.macs:,}", f"{mapped.dram_bytes:,}",
             f"**{mapped.cycles:,}**", f"{100 * mapped.utilization:.1f}%"]  # fmt: skip
    if baseline:
        total += ["", f"{baseline.cycles:,}", f"**{baseline.cycles / max(mapped.cycles, 1):.2f}x**"]
    rows.append("| " + " | ".join(total) + " |")
    return "\n".join(rows)


def plot_layers(mapped: NetworkMapping, baseline: NetworkMapping | None, path: Path) -> Path:
    """Per-layer predicted cycles (log scale) by engine, with the baseline's as outlines, and
    the mapped plan's utilization; saved as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    layers = _costed(mapped)
    x = list(range(len(layers)))
    width = max(8.0, 0.22 * len(layers))
    fig, (ax, ax_u) = plt.subplots(
        2, 1, figsize=(width, 7.5), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    colors = [ENGINE_COLORS[lm.engine] for lm in layers]
    ax.bar(x, [lm.cycles for lm in layers], color=colors, width=0.8, label="mapped")
    handles = [Patch(color=c, label=f"mapped, {e}") for e, c in ENGINE_COLORS.items()]
    if baseline is not None:
        base = {lm.name: lm for lm in baseline.layers}
        ax.bar(x, [base[lm.name].cycles for lm in layers], fill=False, edgecolor="black",
               linewidth=0.7, width=0.8)  # fmt: skip
        handles.append(Patch(fill=False, edgecolor="black", label="naive baseline"))
    ax.set_yscale("log")
    ax.set_ylabel("predicted cycles")
    title = f"{mapped.network} on {mapped.config}: {mapped.cycles:,} cycles"
    if baseline is not None:
        title += f" (naive {baseline.cycles:,}, {baseline.cycles / max(mapped.cycles, 1):.2f}x)"
    ax.set_title(title)
    ax.legend(handles=handles, loc="upper right", fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    ax_u.bar(x, [100 * lm.cost.utilization for lm in layers], color=colors, width=0.8)
    ax_u.set_ylabel("utilization %")
    ax_u.set_ylim(0, 100)
    ax_u.grid(axis="y", alpha=0.3)
    ax_u.set_xticks(x)
    ax_u.set_xticklabels([lm.name for lm in layers], rotation=90, fontsize=6)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_report(
    mapped: NetworkMapping, baseline: NetworkMapping | None, out_dir: str | Path
) -> dict[str, Path]:
    """Write ``<network>-<config>.md`` and ``.png`` into ``out_dir``; return their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"{mapped.network}-{mapped.config}"
    png = plot_layers(mapped, baseline, out / f"{stem}.png")
    lines = [
        f"# {mapped.network} on `{mapped.config}`",
        "",
        f"Mapped for **{mapped.objective}**: {mapped.cycles:,} predicted cycles, "
        f"{mapped.macs:,} MACs ({100 * mapped.utilization:.1f}% of the array's peak), "
        f"{mapped.dram_bytes:,} DRAM bytes, {mapped.energy_pj / 1e6:,.3f} uJ."
        + (
            f" The naive baseline (every layer with MACs on the array, single-buffered) takes "
            f"{baseline.cycles:,} cycles: **{baseline.cycles / max(mapped.cycles, 1):.2f}x**."
            if baseline
            else ""
        ),
        "",
        f"![per-layer cycles]({png.name})",
        "",
        markdown_table(mapped, baseline),
        "",
        f"{mapped.evaluations:,} plans evaluated in {mapped.seconds:.2f} s. Cycles are the "
        "analytical model's (docs/cost-model.md); `tandem sim --network` measures them on the RTL.",
        "",
    ]
    md = out / f"{stem}.md"
    md.write_text("\n".join(lines))
    return {"markdown": md, "png": png}
