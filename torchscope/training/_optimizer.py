"""What an optimizer holds compared with a model's trainable parameters."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from torchscope._torch import is_lazy, room_for_depth
from torchscope.errors import InputSpecError
from torchscope.init._tree import ModelTree, model_tree
from torchscope.records import Finding, OptimizerGroup, OptimizerReport, Severity
from torchscope.training._common import check_model, owner_path

__all__ = ["check_optimizer"]

_NORMS: tuple[type, ...] = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm,
                            nn.LocalResponseNorm)
_NORMS = _NORMS + ((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ())


def _list(names: list[str], limit: int = 6) -> str:
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit
                                       else "")


def _storage_key(t: torch.Tensor) -> tuple[Any, ...] | None:
    if t.is_meta or is_lazy(t):
        return None
    try:
        ptr = t.untyped_storage().data_ptr()
    except (RuntimeError, NotImplementedError):
        return None
    return (t.device, ptr, t.storage_offset(), tuple(t.shape), tuple(t.stride())) if ptr \
        else None


def _no_decay(tree: ModelTree, aliases: dict[int, list[str]]) -> dict[int, str]:
    """``id`` -> ``bias`` or ``norm weight`` for the tensors weight decay usually skips."""
    out: dict[int, str] = {}
    for pid, names in aliases.items():
        for name in names:
            owner, _, leaf = name.rpartition(".")
            if leaf == "bias":
                out[pid] = "bias"
            elif isinstance(tree.module(owner), _NORMS):
                out[pid] = "norm weight"
    return out


def _check_groups(groups: list[Any]) -> None:
    """One error line for a group that is not a dict of tensors (a hand-made optimizer)."""
    for gi, group in enumerate(groups):
        if isinstance(group, Mapping) and not isinstance(group.get("params"), (list, tuple)):
            raise InputSpecError(
                f"check_optimizer: optimizer.param_groups[{gi}]['params'] = "
                f"{type(group.get('params')).__name__} is not a list of tensors; pass a "
                "torch.optim.Optimizer built from the model's parameters"
            )
        params = group.get("params") if isinstance(group, Mapping) else None
        if not isinstance(params, (list, tuple)):
            raise InputSpecError(
                f"check_optimizer: optimizer.param_groups[{gi}] = {type(group).__name__} is not "
                "a dict with a 'params' list; pass a torch.optim.Optimizer built from the "
                "model's parameters"
            )
        for p in params:
            if not isinstance(p, torch.Tensor):
                raise InputSpecError(
                    f"check_optimizer: optimizer.param_groups[{gi}]['params'] holds a "
                    f"{type(p).__name__}, not a tensor; pass a torch.optim.Optimizer built from "
                    "the model's parameters"
                )


@room_for_depth
def check_optimizer(model: nn.Module, optimizer: torch.optim.Optimizer) -> OptimizerReport:
    """Compare the parameters an optimizer holds with the model's: trainable parameters it
    does not hold (they never change), frozen ones it does, a parameter in two groups, a
    parameter listed twice in a group (tied parameters listed under each name: updated twice),
    distinct tensors over the same memory, tensors of another model, and weight decay on biases
    and normalization weights (info). Reads only: the optimizer's state and the model are not
    touched.

    Parameters are named by an iterative walk of the module tree, so deep models, TorchScript
    (scripted or traced) modules and module graphs with a cycle (a child holding its parent,
    whose ``model.parameters()`` still ends) work; an edge back to an ancestor is not followed.

    Args:
        model: the module being trained.
        optimizer: a ``torch.optim.Optimizer`` (anything with ``param_groups``).

    Returns:
        An :class:`~torchscope.records.OptimizerReport` with the table of groups (lr, weight
        decay, tensors, values, blocks) and the findings.

    Raises:
        InputSpecError: ``optimizer`` has no ``param_groups``, or a group is not a dict whose
            ``params`` is a list of tensors.

    >>> import torch, torchscope
    >>> model = torchscope.examples.MLP()
    >>> opt = torch.optim.AdamW(model.hidden.parameters(), weight_decay=0.01)
    >>> [f.code for f in check_optimizer(model, opt).findings]
    ['optimizer-missing', 'optimizer-decay-no-decay']
    """
    model = check_model(model, "check_optimizer")
    groups_in = getattr(optimizer, "param_groups", None)
    if not isinstance(groups_in, list):
        raise InputSpecError(
            f"check_optimizer: optimizer = {type(optimizer).__name__} has no param_groups list; "
            "pass a torch.optim.Optimizer"
        )
    _check_groups(groups_in)
    tree = model_tree(model)
    aliases = tree.aliases()
    by_id = {id(p): p for p in tree.unique_params()}
    by_storage: dict[Any, int] = {}
    for pid in aliases:
        key = _storage_key(by_id[pid])
        if key is not None:
            by_storage.setdefault(key, pid)
    no_decay = _no_decay(tree, aliases)
    findings: list[Finding] = []
    where: dict[int, list[int]] = {}
    groups: list[OptimizerGroup] = []
    foreign: list[str] = []
    twice: list[str] = []
    decayed: dict[str, list[str]] = {}
    shared: list[tuple[int, int]] = []  # (parameter id, group) of other tensors over its memory
    for gi, group in enumerate(groups_in):
        params = list(group.get("params", []))
        counted: dict[int, int] = {}
        blocks: list[str] = []
        numel = 0
        for p in params:
            pid = id(p)
            counted[pid] = counted.get(pid, 0) + 1
            if counted[pid] == 1:
                where.setdefault(pid, []).append(gi)
                numel += 0 if is_lazy(p) else p.numel()
            found = aliases.get(pid)
            if found is None:
                key = _storage_key(p) if isinstance(p, torch.Tensor) else None
                twin = by_storage.get(key) if key is not None else None
                if twin is not None:
                    shared.append((twin, gi))
                    block = aliases[twin][0].split(".")[0]
                else:
                    foreign.append(f"group {gi}: {tuple(p.shape)} {str(p.dtype).split('.')[-1]}")
                    block = "?"
            else:
                names = found
                block = owner_path(names[0]).split(".")[0] or "(root)"
                wd = group.get("weight_decay")
                if counted[pid] == 1 and pid in no_decay and isinstance(wd, (int, float)) \
                        and wd > 0:
                    decayed.setdefault(no_decay[pid], []).append(names[0])
            if block not in blocks:
                blocks.append(block)
        for pid, n in counted.items():
            if n > 1:
                name = aliases[pid][0] if pid in aliases else "a tensor of another model"
                twice.append(f"{name} ×{n} in group {gi}")
        lr = group.get("lr")
        wd = group.get("weight_decay")
        groups.append(OptimizerGroup(
            index=gi, lr=float(lr) if isinstance(lr, (int, float)) else None,
            weight_decay=float(wd) if isinstance(wd, (int, float)) else None,
            params=len(counted), numel=numel, blocks=tuple(blocks)))
    for twin, gi in shared:
        if twin in where:
            twice.append(f"{aliases[twin][0]} and a tensor over its memory (group {gi})")
        else:
            foreign.append(f"group {gi}: a tensor over the memory of {aliases[twin][0]}, not the "
                           "parameter itself")
    missing = [names[0] for pid, names in aliases.items()
               if by_id[pid].requires_grad and pid not in where]
    frozen = [names[0] for pid, names in aliases.items()
              if not by_id[pid].requires_grad and pid in where]
    several = [f"{aliases[pid][0]} (groups {', '.join(map(str, gs))})"
               for pid, gs in where.items() if len(gs) > 1 and pid in aliases]
    if foreign:
        findings.append(Finding(
            code="optimizer-foreign", severity=Severity.ERROR,
            message=f"{len(foreign)} tensors the optimizer holds are not parameters of "
                    f"{type(model).__name__}: {_list(foreign)}",
            hint="build the optimizer from this model's parameters (after moving or wrapping "
                 "it: .to(), DDP and FSDP can replace parameters)"))
    if several:
        findings.append(Finding(
            code="optimizer-duplicate", severity=Severity.ERROR,
            message=f"{len(several)} parameters are in more than one group: {_list(several)}",
            path=several[0].split(" ")[0],
            hint="put each parameter in exactly one group"))
    if twice:
        findings.append(Finding(
            code="optimizer-twice", severity=Severity.ERROR,
            message=f"the optimizer updates memory twice per step: {_list(twice)}",
            path=twice[0].split(" ")[0],
            hint="build groups from model.parameters() (each tied tensor once), not from "
                 "named_parameters(remove_duplicate=False) or several modules sharing a layer"))
    if missing:
        findings.append(Finding(
            code="optimizer-missing", severity=Severity.WARNING,
            message=f"{len(missing)} trainable parameters are not in the optimizer and never "
                    f"change: {_list(missing)}",
            path=owner_path(missing[0]),
            hint="add them (optimizer.add_param_group) or freeze them (requires_grad_(False))"))
    if frozen:
        findings.append(Finding(
            code="optimizer-frozen", severity=Severity.INFO,
            message=f"{len(frozen)} frozen parameters (requires_grad=False) are in the "
                    f"optimizer: {_list(frozen)}",
            path=owner_path(frozen[0]),
            hint="harmless while they get no gradient; drop them from the groups to save "
                 "optimizer memory, or unfreeze them if they should train"))
    for kind, names in decayed.items():
        findings.append(Finding(
            code="optimizer-decay-no-decay", severity=Severity.INFO,
            message=f"weight decay applies to {len(names)} {kind}"
                    f"{'es' if kind == 'bias' and len(names) != 1 else ''}"
                    f"{'s' if kind != 'bias' and len(names) != 1 else ''}: {_list(names)}",
            path=owner_path(names[0]),
            hint="the usual recipe puts biases and normalization weights in a group with "
                 "weight_decay=0.0"))
    return OptimizerReport(optimizer_type=type(optimizer).__name__,
                           model_type=type(model).__name__, groups=tuple(groups),
                           findings=tuple(findings))
