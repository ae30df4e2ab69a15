"""One iterative walk over a model's module tree, for every analysis that names parameters.

Torch's ``named_modules(remove_duplicate=False)``, ``named_parameters(remove_duplicate=False)``
and ``get_parameter``/``get_submodule`` recurse once per level, never end on a module graph
with a cycle (a child holding its parent) and are refused by TorchScript modules. The walk
here gives the same names in the same order, keeps an explicit stack (any depth), does not
follow an edge back to an ancestor (it records it instead) and reads only ``_modules``,
``_parameters`` and ``_buffers``, which scripted and traced modules have too.

Also here: reading any tensor's values as float64 for statistics (float8 and other exotic
floats are upcast; packed formats that cannot be read give ``None``).

>>> import torch
>>> tree = model_tree(torch.nn.Sequential(torch.nn.Linear(1, 1)))
>>> [name for name, _ in tree.params], tree.cycles
(['0.weight', '0.bias'], ())
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

__all__ = ["ModelTree", "as_float64", "cycle_note", "model_tree"]

#: a module on the path from the root, with its path and the link above it
_Link = tuple[nn.Module, str, "_Link | None"]


@dataclass(frozen=True)
class ModelTree:
    """Every module path, parameter name and buffer name of a model, in the order of torch's
    ``named_*(remove_duplicate=False)`` (a module registered twice is listed under both
    paths), without the edges that lead back to an ancestor.

    Attributes:
        modules: ``(path, module)`` pairs, pre-order; the root is ``""``.
        params: ``(qualified name, parameter)`` pairs.
        buffers: ``(qualified name, buffer)`` pairs.
        cycles: ``(edge, ancestor)`` paths of every edge back to an ancestor, not followed.
    """

    modules: tuple[tuple[str, nn.Module], ...]
    params: tuple[tuple[str, nn.Parameter], ...]
    buffers: tuple[tuple[str, torch.Tensor], ...]
    cycles: tuple[tuple[str, str], ...]
    _by_path: dict[str, nn.Module] = field(default_factory=dict, repr=False, compare=False)
    _by_name: dict[str, nn.Parameter] = field(default_factory=dict, repr=False, compare=False)

    def module(self, path: str) -> nn.Module | None:
        """The module at ``path`` (``""``: the root), or ``None``."""
        if not self._by_path:
            self._by_path.update(reversed(self.modules))  # the first path wins
        return self._by_path.get(path)

    def param(self, name: str) -> nn.Parameter | None:
        """The parameter with qualified ``name``, or ``None``."""
        if not self._by_name:
            self._by_name.update(self.params)
        return self._by_name.get(name)

    def aliases(self) -> dict[int, list[str]]:
        """``id(parameter)`` -> every qualified name it has, in order."""
        names: dict[int, list[str]] = {}
        for name, p in self.params:
            names.setdefault(id(p), []).append(name)
        return names

    def unique_params(self) -> list[nn.Parameter]:
        """Each parameter object once, in ``model.parameters()`` order."""
        return list({id(p): p for _, p in self.params}.values())


def model_tree(model: nn.Module) -> ModelTree:
    """Walk ``model`` once (see :class:`ModelTree`).

    >>> import torch
    >>> m = torch.nn.Sequential(torch.nn.Linear(2, 2))
    >>> m[0]._modules["back"] = m  # a child holding its parent
    >>> model_tree(m).cycles
    (('0.back', ''),)
    """
    modules: list[tuple[str, nn.Module]] = []
    params: list[tuple[str, nn.Parameter]] = []
    buffers: list[tuple[str, torch.Tensor]] = []
    cycles: list[tuple[str, str]] = []
    seen: set[int] = set()
    stack: list[tuple[str, nn.Module, _Link | None]] = [("", model, None)]
    while stack:
        path, module, up = stack.pop()
        seen.add(id(module))
        modules.append((path, module))
        prefix = path + "." if path else ""
        for k, p in _items(module, "_parameters"):
            params.append((prefix + k, p))
        for k, b in _items(module, "_buffers"):
            buffers.append((prefix + k, b))
        link: _Link = (module, path, up)
        for name, child in reversed(list(_items(module, "_modules"))):
            if id(child) in seen:  # visited already: an ancestor (a cycle) or a second path
                ancestor = _ancestor(child, link)
                if ancestor is not None:
                    cycles.append((prefix + name, ancestor))
                    continue
            stack.append((prefix + name, child, link))
    return ModelTree(tuple(modules), tuple(params), tuple(buffers), tuple(cycles))


def _items(module: nn.Module, attr: str) -> Iterator[tuple[str, Any]]:
    """The non-``None`` entries of one of ``module``'s registries (empty when it has none)."""
    registry = module.__dict__.get(attr)
    if registry is None:  # a traced module forwards its registries to the scripted one
        try:
            registry = getattr(module, attr, None)
        except Exception:  # a __getattr__ that raises something else
            registry = None
    if registry is None or not callable(getattr(registry, "items", None)):
        return iter(())
    return ((k, v) for k, v in registry.items() if v is not None)


def _ancestor(module: nn.Module, link: _Link | None) -> str | None:
    """The path of ``module`` when it is on the chain ``link`` (itself or an ancestor)."""
    while link is not None:
        if link[0] is module:
            return link[1]
        link = link[2]
    return None


def cycle_note(tree: ModelTree) -> tuple[str, ...]:
    """A note naming the first edge back to an ancestor, when the module graph has a cycle.

    >>> import torch
    >>> m = torch.nn.Sequential(torch.nn.Linear(2, 2))
    >>> m[0]._modules["back"] = m
    >>> cycle_note(model_tree(m))[0].startswith("the module graph has a cycle: 0.back is")
    True
    """
    if not tree.cycles:
        return ()
    edge, ancestor = tree.cycles[0]
    more = f" (and {len(tree.cycles) - 1} more such edges)" if len(tree.cycles) > 1 else ""
    return (f"the module graph has a cycle: {edge} is the module at {ancestor or '(root)'}, its "
            f"own ancestor{more}; that edge was not followed, each parameter is named by its "
            "paths without it",)


def as_float64(t: torch.Tensor) -> torch.Tensor | None:
    """``t``'s values as a float64 tensor (complex: their magnitudes), read below autograd;
    ``None`` for tensors whose values cannot be read as numbers (meta, packed float4,
    quantized tensors that cannot be dequantized).

    >>> as_float64(torch.ones(2).to(torch.float8_e4m3fn)).dtype
    torch.float64
    """
    if t.is_meta:
        return None
    try:
        v = t.detach()
        if v.is_quantized:
            v = v.dequantize()
        if v.is_complex():
            v = v.to(torch.complex128).abs()
        return v.to(torch.float64)
    except (RuntimeError, NotImplementedError, TypeError, ValueError):
        return None
