"""Figures of predictions: emotion probabilities over time (``serkit predict --timeline --plot``)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["plot_timeline"]


def plot_timeline(table, out, *, title: str | None = None) -> Path:
    """Draw emotion probabilities over time for one file's timeline rows into a PNG.

    Parameters
    ----------
    table : pandas.DataFrame
        Rows of :meth:`Recognizer.timeline` for one file (``start``, ``end``, ``p_<label>``).
    out : path
        PNG file to write (its folder is created).

    Returns
    -------
    Path
    """
    import matplotlib

    matplotlib.use("Agg")  # no display on servers; must precede pyplot
    import matplotlib.pyplot as plt

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    cols = [c for c in table.columns if c.startswith("p_")]
    rows = table[table["error"] == ""]
    mid = ((rows["start"] + rows["end"]) / 2).to_numpy(dtype=float)
    fig, ax = plt.subplots(figsize=(max(6.0, min(20.0, 0.15 * len(rows) + 4)), 3.2), dpi=100)
    for c in cols:
        ax.plot(mid, rows[c].to_numpy(dtype=float), marker="." if len(rows) < 60 else None, label=c[2:])
    quiet = table[table["error"] == "silence"]
    for s, e in zip(quiet["start"], quiet["end"]):
        ax.axvspan(float(s), float(e), color="0.9", lw=0)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("probability")
    ax.set_ylim(0, 1)
    ax.set_title(title or (str(table["file"].iloc[0]) if len(table) else ""), fontsize=9)
    ax.legend(loc="upper right", fontsize=7, ncol=min(len(cols), 7))
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out
