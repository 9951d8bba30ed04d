"""The one ipywidgets helper every *explore* view is built on: controls that redraw a figure."""
from __future__ import annotations

import base64
import functools
import io


def _png(fig) -> str:
    """``fig`` as a base64 PNG (what a notebook stores for an image output)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def figure_view(draw, **controls):
    """Controls (sliders, dropdowns) above an output area that shows ``draw(**values)``.

    Each control is ``name=("slider", values)`` or ``name=("dropdown", options)``; ``options`` may
    be a list of values or of ``(label, value)`` pairs. Moving a control calls ``draw`` with the
    new values; the old figure is closed, so redraws stay quick and memory stays flat. Returns the
    widget box (display it, or leave it last in a cell).

    The box also carries a static PNG of its first figure: JupyterLab shows the live widget, while
    places that can't run widgets (the HTML pages of executed notebooks, GitHub) show the picture.
    """
    import ipywidgets as widgets
    import matplotlib.pyplot as plt
    from IPython.display import display

    made = {}
    for name, (kind, values) in controls.items():
        values = list(values)
        if not values:
            raise ValueError(f"control {name!r} has no values to choose from")
        if kind == "slider":
            made[name] = widgets.SelectionSlider(options=values, value=values[-1] if name == "step" else values[0],
                                                 description=name, continuous_update=False)
        elif kind == "dropdown":
            made[name] = widgets.Dropdown(options=values, description=name)
        else:
            raise ValueError(f"control {name!r}: kind must be 'slider' or 'dropdown', got {kind!r}")
    out = widgets.Output()
    first: list[str] = []

    def redraw(_change=None):
        with out:
            out.clear_output(wait=True)
            fig = draw(**{n: w.value for n, w in made.items()})
            if not first:
                first.append(_png(fig))
            display(fig)
            plt.close(fig)

    for w in made.values():
        w.observe(redraw, names="value")
    redraw()
    return _explorer_box_class()([widgets.HBox(list(made.values())), out], static_png=first[0])


@functools.cache
def _explorer_box_class():
    """The widget class, made on first use (so importing labkit.viz doesn't import ipywidgets)."""
    import ipywidgets as widgets

    class ExplorerBox(widgets.VBox):
        """A VBox whose display also offers a static PNG, for renderers without widgets."""

        def __init__(self, children, static_png: str):
            super().__init__(children)
            self._static_png = static_png

        def _repr_mimebundle_(self, **kwargs):
            data = super()._repr_mimebundle_(**kwargs)
            if data is not None:
                data["image/png"] = self._static_png
            return data

    return ExplorerBox

