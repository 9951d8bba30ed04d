"""Recurrent regressors (SimpleRNN, LSTM, GRU) for long-range sequence tasks."""
from __future__ import annotations

import keras


def recurrent_model(cell: str = "SimpleRNN", units: int = 32, length: int = 50, features: int = 2,
                    learning_rate: float = 1e-2, seed: int = 0) -> keras.Model:
    """A one-layer recurrent regressor (``cell`` = "SimpleRNN", "LSTM" or "GRU") + Dense(1), compiled with Adam/MSE."""
    cells = {"simplernn": keras.layers.SimpleRNN, "lstm": keras.layers.LSTM, "gru": keras.layers.GRU}
    if cell.lower() not in cells:
        raise ValueError(f"cell must be SimpleRNN, LSTM or GRU, got {cell!r}")
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((length, features)), cells[cell.lower()](units, name=cell.lower()),
                              keras.layers.Dense(1, name="out")], name=f"{cell.lower()}_regressor")
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="mse")
    return model
