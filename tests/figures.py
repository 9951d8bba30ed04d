"""Where the instrument tests save their figures (``build/viz/``), so that a person can look at them.

Importing this module also selects matplotlib's Agg backend (headless) before pyplot is loaded.
"""
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

FIGURES = Path(__file__).resolve().parent.parent / "build" / "viz"


def save(fig, name: str) -> Path:
    """Write ``fig`` to ``build/viz/<name>.png`` and close it."""
    FIGURES.mkdir(parents=True, exist_ok=True)
    path = FIGURES / f"{name}.png"
    fig.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(fig)
    return path
