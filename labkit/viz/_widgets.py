"""The one ipywidgets helper every *explore* view is built on: controls that redraw a figure."""
from __future__ import annotations


def figure_view(draw, **controls):
    """Controls (sliders, dropdowns) above an output area that shows ``draw(**values)``.

    Each control is ``name=("slider", values)`` or ``name=("dropdown", options)``; ``options`` may
    be a list of values or of ``(label, value)`` pairs. Moving a control calls ``draw`` with the
    new values; the old figure is closed, so redraws stay quick and memory stays flat. Returns the
    widget box (display it, or leave it last in a cell).
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

    def redraw(_change=None):
        with out:
            out.clear_output(wait=True)
            fig = draw(**{n: w.value for n, w in made.items()})
            display(fig)
            plt.close(fig)

    for w in made.values():
        w.observe(redraw, names="value")
    redraw()
    return widgets.VBox([widgets.HBox(list(made.values())), out])
