"""Automatic differentiation from scratch, in NumPy: reverse mode, forward mode, and the graph.

Reverse mode (what deep learning uses)
- :class:`Tensor` -- a NumPy array that remembers the operation that made it. Calling
  ``loss.backward()`` walks the computational graph backwards (reverse topological order) and
  accumulates ``∂loss/∂node`` into every node's ``.grad`` by the chain rule. ``Value`` is the same
  class, for scalars.
- :func:`softmax_cross_entropy` -- the classification loss, with its well-known gradient
  ``softmax(z) − onehot(y)``.
- :func:`init_mlp`, :func:`mlp_forward` -- a small multi-layer perceptron built from Tensors.

Forward mode
- :class:`Dual` -- dual numbers ``a + b·ε`` with ``ε² = 0``: evaluating ``f(x + ε)`` gives
  ``f(x) + f'(x)·ε``, one directional derivative per pass.
- :func:`forward_gradient` -- the full gradient by forward mode: one pass per input.

Checking
- :func:`numerical_gradient` -- central finite differences, the independent reference.

Drawing (matplotlib only; no graphviz binary)
- :func:`trace`, :func:`graph_table` -- the graph's nodes and edges, as data.
- :func:`plot_graph` -- the graph drawn left to right, each node with its value and gradient.

Activations
- :data:`ACTIVATIONS` and :func:`plot_activations` -- sigmoid, tanh, ReLU, leaky ReLU and GELU
  with their derivatives.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pandas as pd

__all__ = ["Tensor", "Value", "softmax_cross_entropy", "init_mlp", "mlp_forward", "Dual",
           "forward_gradient", "numerical_gradient", "trace", "graph_table", "plot_graph",
           "ACTIVATIONS", "plot_activations"]


def _unbroadcast(grad: np.ndarray, shape: tuple) -> np.ndarray:
    """Sum ``grad`` down to ``shape``: the adjoint of NumPy broadcasting (a bias added to every row
    receives the sum of the rows' gradients)."""
    while grad.ndim > len(shape):
        grad = grad.sum(axis=0)
    for axis, size in enumerate(shape):
        if size == 1 and grad.shape[axis] != 1:
            grad = grad.sum(axis=axis, keepdims=True)
    return grad.reshape(shape)


class Tensor:
    """An array in a computational graph: ``.data`` (the value), ``.grad`` (∂output/∂this after
    ``backward``), ``.op`` (what made it) and ``.parents`` (its inputs)."""

    def __init__(self, data, parents: tuple = (), op: str = "", name: str = ""):
        self.data = np.asarray(data, dtype="float64")
        self.grad = np.zeros_like(self.data)
        self.parents = tuple(parents)
        self.op = op
        self.name = name
        self._backward: Callable[[], None] = lambda: None

    # -- bookkeeping ---------------------------------------------------------------------------
    @property
    def shape(self) -> tuple:
        return self.data.shape

    def __repr__(self) -> str:
        label = f"{self.name} " if self.name else ""
        body = f"{self.data.item():.4g}" if self.data.size == 1 else f"shape={self.data.shape}"
        return f"Tensor({label}{body}{', op=' + self.op if self.op else ''})"

    @staticmethod
    def _lift(other) -> "Tensor":
        return other if isinstance(other, Tensor) else Tensor(other, op="const")

    def _child(self, data, parents, op) -> "Tensor":
        return Tensor(data, parents, op)

    # -- arithmetic (each op: the forward value, and how to pass the gradient back) --------------
    def __add__(self, other):
        other = self._lift(other)
        out = self._child(self.data + other.data, (self, other), "+")

        def backward():
            self.grad += _unbroadcast(out.grad, self.shape)
            other.grad += _unbroadcast(out.grad, other.shape)
        out._backward = backward
        return out

    def __mul__(self, other):
        other = self._lift(other)
        out = self._child(self.data * other.data, (self, other), "*")

        def backward():
            self.grad += _unbroadcast(out.grad * other.data, self.shape)
            other.grad += _unbroadcast(out.grad * self.data, other.shape)
        out._backward = backward
        return out

    def __pow__(self, exponent: float):
        if isinstance(exponent, Tensor):
            raise TypeError("only constant exponents are supported: x ** 2, not x ** y")
        out = self._child(self.data ** exponent, (self,), f"**{exponent:g}")

        def backward():
            self.grad += out.grad * exponent * self.data ** (exponent - 1)
        out._backward = backward
        return out

    def __matmul__(self, other):
        other = self._lift(other)
        out = self._child(self.data @ other.data, (self, other), "@")

        def backward():  # out = A @ B:  ∂/∂A = G Bᵀ,  ∂/∂B = Aᵀ G
            self.grad += out.grad @ other.data.T
            other.grad += self.data.T @ out.grad
        out._backward = backward
        return out

    def __neg__(self):
        return self * -1.0

    def __sub__(self, other):
        return self + (-self._lift(other))

    def __truediv__(self, other):
        return self * self._lift(other) ** -1.0

    def __radd__(self, other):
        return self + other

    def __rmul__(self, other):
        return self * other

    def __rsub__(self, other):
        return self._lift(other) - self

    def __rtruediv__(self, other):
        return self._lift(other) / self

    # -- element-wise functions ------------------------------------------------------------------
    def _unary(self, value, local_grad, op):
        out = self._child(value, (self,), op)

        def backward():
            self.grad += out.grad * local_grad()
        out._backward = backward
        return out

    def exp(self):
        e = np.exp(self.data)
        return self._unary(e, lambda: e, "exp")

    def log(self):
        return self._unary(np.log(self.data), lambda: 1.0 / self.data, "log")

    def tanh(self):
        t = np.tanh(self.data)
        return self._unary(t, lambda: 1.0 - t ** 2, "tanh")

    def sigmoid(self):
        s = 1.0 / (1.0 + np.exp(-self.data))
        return self._unary(s, lambda: s * (1.0 - s), "sigmoid")

    def relu(self):
        return self._unary(np.maximum(self.data, 0.0), lambda: (self.data > 0).astype("float64"), "relu")

    # -- reductions and shape ------------------------------------------------------------------
    def sum(self, axis=None, keepdims: bool = False):
        out = self._child(self.data.sum(axis=axis, keepdims=keepdims), (self,), "sum")

        def backward():
            g = out.grad
            if axis is not None and not keepdims:
                g = np.expand_dims(g, axis)
            self.grad += np.broadcast_to(g, self.shape)
        out._backward = backward
        return out

    def mean(self, axis=None):
        n = self.data.size if axis is None else self.data.shape[axis]
        return self.sum(axis=axis) * (1.0 / n)

    @property
    def T(self):
        out = self._child(self.data.T, (self,), "T")

        def backward():
            self.grad += out.grad.T
        out._backward = backward
        return out

    # -- the reverse pass ---------------------------------------------------------------------
    def backward(self) -> None:
        """Fill ``.grad`` of every node this one depends on with ∂self/∂node.

        Nodes are visited in reverse topological order, so that a node's gradient is complete
        (every path through it summed) before it is passed on to its parents.
        """
        order = trace(self)[0]
        for node in order:
            node.grad = np.zeros_like(node.data)
        self.grad = np.ones_like(self.data)
        for node in reversed(order):
            node._backward()


#: Scalars are Tensors too; micrograd-style code reads better with this name.
Value = Tensor


def softmax_cross_entropy(logits: Tensor, labels) -> Tensor:
    """Mean cross-entropy ``−log softmax(z)[y]`` of integer ``labels``; one node in the graph.

    Computed stably (``z − max z`` first). Its gradient is ``(softmax(z) − onehot(y)) / n``.
    """
    labels = np.asarray(labels, dtype=int)
    z = logits.data - logits.data.max(axis=1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    n = len(labels)
    out = Tensor(-log_p[np.arange(n), labels].mean(), (logits,), "xent")

    def backward():
        p = np.exp(log_p)
        p[np.arange(n), labels] -= 1.0
        logits.grad += out.grad * p / n
    out._backward = backward
    return out


def init_mlp(sizes: list[int], seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Weights ``(W, b)`` per layer for layer sizes ``[inputs, hidden..., outputs]`` (Glorot-uniform
    ``W``, zero ``b``): plain arrays, so the same numbers can be given to TensorFlow."""
    rng = np.random.default_rng(seed)
    params = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        limit = math.sqrt(6.0 / (fan_in + fan_out))
        params.append((rng.uniform(-limit, limit, (fan_in, fan_out)), np.zeros(fan_out)))
    return params


def mlp_forward(params: list[tuple], x, activation: str = "tanh") -> tuple[Tensor, list[Tensor]]:
    """Logits of an MLP on ``x``: ``h = act(h W + b)`` per hidden layer, no activation on the last.

    Returns ``(logits, tensors)`` where ``tensors`` are the parameters as Tensors
    (``[W0, b0, W1, b1, ...]``), whose ``.grad`` holds the gradients after ``loss.backward()``.
    """
    h = x if isinstance(x, Tensor) else Tensor(x, op="input", name="x")
    tensors = []
    for i, (w, b) in enumerate(params):
        W, B = Tensor(w, op="param", name=f"W{i}"), Tensor(b, op="param", name=f"b{i}")
        tensors += [W, B]
        h = h @ W + B
        if i < len(params) - 1:
            h = getattr(h, activation)()
    return h, tensors


# --- forward mode -------------------------------------------------------------------------------
class Dual:
    """A dual number ``val + dot·ε`` with ``ε² = 0``. Arithmetic on duals carries the derivative
    along with the value: seed ``dot = 1`` on the input you differentiate by."""

    def __init__(self, val: float, dot: float = 0.0):
        self.val, self.dot = float(val), float(dot)

    def __repr__(self) -> str:
        return f"Dual({self.val:.6g} + {self.dot:.6g}ε)"

    @staticmethod
    def _lift(other) -> "Dual":
        return other if isinstance(other, Dual) else Dual(other)

    def __add__(self, other):
        other = self._lift(other)
        return Dual(self.val + other.val, self.dot + other.dot)

    def __mul__(self, other):  # (a + a'ε)(b + b'ε) = ab + (a'b + ab')ε
        other = self._lift(other)
        return Dual(self.val * other.val, self.dot * other.val + self.val * other.dot)

    def __truediv__(self, other):
        other = self._lift(other)
        return Dual(self.val / other.val, (self.dot * other.val - self.val * other.dot) / other.val ** 2)

    def __pow__(self, n: float):
        return Dual(self.val ** n, n * self.val ** (n - 1) * self.dot)

    def __neg__(self):
        return Dual(-self.val, -self.dot)

    def __sub__(self, other):
        return self + (-self._lift(other))

    __radd__ = __add__
    __rmul__ = __mul__

    def __rsub__(self, other):
        return self._lift(other) - self

    def __rtruediv__(self, other):
        return self._lift(other) / self

    def exp(self):
        e = math.exp(self.val)
        return Dual(e, e * self.dot)

    def log(self):
        return Dual(math.log(self.val), self.dot / self.val)

    def sin(self):
        return Dual(math.sin(self.val), math.cos(self.val) * self.dot)

    def tanh(self):
        t = math.tanh(self.val)
        return Dual(t, (1 - t * t) * self.dot)

    def sigmoid(self):
        s = 1.0 / (1.0 + math.exp(-self.val))
        return Dual(s, s * (1 - s) * self.dot)


def forward_gradient(f: Callable, x) -> tuple[np.ndarray, int]:
    """The gradient of a scalar ``f`` (taking a list of numbers) by forward mode.

    Returns ``(gradient, passes)``: forward mode needs one evaluation of ``f`` per input, seeding
    ``dot = 1`` on that input. Reverse mode needs one backward pass whatever the number of inputs:
    that is why deep learning, with millions of inputs (weights) and one output (the loss), uses it.
    """
    x = [float(v) for v in np.ravel(x)]
    grad = np.zeros(len(x))
    for i in range(len(x)):
        duals = [Dual(v, 1.0 if j == i else 0.0) for j, v in enumerate(x)]
        grad[i] = f(duals).dot
    return grad, len(x)


def numerical_gradient(f: Callable[[np.ndarray], float], x, eps: float = 1e-6) -> np.ndarray:
    """Central differences ``(f(x + εeᵢ) − f(x − εeᵢ)) / 2ε`` for every entry of array ``x``:
    slow (two evaluations per entry) but independent of any autodiff."""
    x = np.array(x, dtype="float64")
    grad = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + eps
        up = f(x)
        x[i] = old - eps
        down = f(x)
        x[i] = old
        grad[i] = (up - down) / (2 * eps)
    return grad


# --- the graph as data, and as a picture ----------------------------------------------------------
def trace(root: Tensor) -> tuple[list[Tensor], list[tuple[Tensor, Tensor]]]:
    """Every node ``root`` depends on, in topological order (inputs first), and the edges
    ``(parent, child)``."""
    order, edges, seen = [], [], set()

    def visit(node):
        if id(node) in seen:
            return
        seen.add(id(node))
        for parent in node.parents:
            edges.append((parent, node))
            visit(parent)
        order.append(node)
    visit(root)
    return order, edges


def _label(node: Tensor) -> str:
    if node.name:
        return node.name
    return {"const": "const", "input": "input", "param": "param"}.get(node.op, node.op)


def graph_table(root: Tensor) -> pd.DataFrame:
    """One row per node: its position in topological order, operation, name, shape, value (for
    scalars) and gradient (after ``backward``), and the nodes it was computed from."""
    order, _ = trace(root)
    index = {id(n): i for i, n in enumerate(order)}
    rows = []
    for i, n in enumerate(order):
        rows.append({"node": i, "op": n.op or "leaf", "name": n.name, "shape": n.shape,
                     "value": n.data.item() if n.data.size == 1 else np.nan,
                     "grad": n.grad.item() if n.grad.size == 1 else np.nan,
                     "inputs": [index[id(p)] for p in n.parents]})
    return pd.DataFrame(rows)


def plot_graph(root: Tensor, ax=None, show_grad: bool = True, title: str | None = None):
    """Draw the computational graph of ``root`` left to right (inputs on the left, ``root`` on the
    right). Each box shows the node's operation or name, its value and, after ``backward``, its
    gradient ∂root/∂node. Returns the Figure."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyArrowPatch

    order, edges = trace(root)
    depth = {}
    for n in order:  # longest path from any leaf: inputs at column 0
        depth[id(n)] = 1 + max((depth[id(p)] for p in n.parents), default=-1)
    columns: dict[int, list[Tensor]] = {}
    for n in order:
        columns.setdefault(depth[id(n)], []).append(n)
    pos = {}
    for d, nodes in columns.items():
        for k, n in enumerate(nodes):
            pos[id(n)] = (d, -(k - (len(nodes) - 1) / 2))
    width = max(columns) + 1
    height = max(len(v) for v in columns.values())
    if ax is None:
        fig, ax = plt.subplots(figsize=(max(5.0, 2.3 * width), max(2.5, 1.3 * height)))
    else:
        fig = ax.figure
    for parent, child in edges:
        (x0, y0), (x1, y1) = pos[id(parent)], pos[id(child)]
        ax.add_patch(FancyArrowPatch((x0 + 0.33, y0), (x1 - 0.33, y1), arrowstyle="-|>",
                                     mutation_scale=12, color="0.45", lw=1.0))
    for n in order:
        x, y = pos[id(n)]
        leaf = not n.parents
        lines = [_label(n)]
        if n.data.size == 1:
            lines.append(f"= {n.data.item():.3g}")
            if show_grad:
                lines.append(f"grad {n.grad.item():.3g}")
        else:
            lines.append("×".join(map(str, n.shape)) or "scalar")
            if show_grad:
                lines.append(f"|grad| {np.abs(n.grad).sum():.3g}")
        colour = "#dbe9f6" if leaf else ("#fde2c8" if n is root else "#eeeeee")
        ax.text(x, y, "\n".join(lines), ha="center", va="center", fontsize=8.5, family="monospace",
                bbox=dict(boxstyle="round,pad=0.35", fc=colour, ec="0.3"))
    ax.set_xlim(-0.6, width - 0.4)
    ax.set_ylim(-(height / 2) - 0.2, height / 2 + 0.2)
    ax.set_axis_off()
    ax.set_title(title or "Computational graph: inputs (blue) → output (orange); "
                 "grad = ∂output/∂node", fontsize=10)
    return fig


# --- activation functions -----------------------------------------------------------------------
def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def _gelu(z):
    from scipy.special import erf
    return 0.5 * z * (1.0 + erf(z / math.sqrt(2.0)))


def _gelu_grad(z):
    from scipy.special import erf
    return 0.5 * (1.0 + erf(z / math.sqrt(2.0))) + z * np.exp(-z ** 2 / 2) / math.sqrt(2 * math.pi)


#: name -> (f, f') on NumPy arrays.
ACTIVATIONS: dict[str, tuple[Callable, Callable]] = {
    "sigmoid": (_sigmoid, lambda z: _sigmoid(z) * (1 - _sigmoid(z))),
    "tanh": (np.tanh, lambda z: 1 - np.tanh(z) ** 2),
    "relu": (lambda z: np.maximum(z, 0.0), lambda z: (z > 0).astype("float64")),
    "leaky_relu": (lambda z: np.where(z > 0, z, 0.01 * z), lambda z: np.where(z > 0, 1.0, 0.01)),
    "gelu": (_gelu, _gelu_grad),
}


def plot_activations(names=None, z=None):
    """Each activation (left) and its derivative (right) over ``z``. Returns the Figure."""
    import matplotlib.pyplot as plt

    names = list(names or ACTIVATIONS)
    z = np.linspace(-5, 5, 401) if z is None else np.asarray(z, dtype="float64")
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.6))
    styles = {"relu": dict(lw=3.5, alpha=0.45), "leaky_relu": dict(ls="--")}
    for name in names:
        f, df = ACTIVATIONS[name]
        a1.plot(z, f(z), label=name, **styles.get(name, {}))
        a2.plot(z, df(z), label=name, **styles.get(name, {}))
    a1.set(title="activation g(z)", xlabel="pre-activation z (unitless)", ylabel="g(z)", ylim=(-1.5, 5))
    a2.set(title="derivative g'(z): what backprop multiplies by", xlabel="pre-activation z (unitless)",
           ylabel="g'(z)", ylim=(-0.2, 1.2))
    for a in (a1, a2):
        a.grid(alpha=0.3)
        a.axhline(0, color="0.6", lw=0.8)
    a1.legend(fontsize=8)
    fig.tight_layout()
    return fig
