"""torchscope: model introspection and debugging for PyTorch.

Blocks and parameters, shapes that flow through them, tied and lazy tensors, initialization
policies, devices and host-device synchronizations, checkpoints and block diagrams.

>>> import torchscope
>>> report = torchscope.summarize(torchscope.examples.MLP())
>>> report.total_params
7946

Public names load on first use (``import torchscope`` stays light); each lives in the module
named in ``_EXPORTS``.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    __version__ = version("torchscope")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0+unknown"

# public name -> submodule that defines it
_EXPORTS: dict[str, str] = {
    # records
    "CallRecord": "records",
    "Finding": "records",
    "FlowEdge": "records",
    "LazyRecord": "records",
    "MapSpec": "records",
    "ModuleRecord": "records",
    "ParamKind": "records",
    "ParamRecord": "records",
    "RankRecord": "records",
    "Report": "records",
    "SeqSpec": "records",
    "Severity": "records",
    "TensorSpec": "records",
    "TieKind": "records",
    "TiedGroup": "records",
    "ValueSpec": "records",
    # errors
    "CheckpointError": "errors",
    "ForwardError": "errors",
    "InitPolicyError": "errors",
    "InputSpecError": "errors",
    "SyncError": "errors",
    "TargetError": "errors",
    "TorchscopeError": "errors",
    # static traversal
    "list_parameters": "inspect",
    "summarize": "inspect",
    "walk": "inspect",
    # rendering
    "render": "rendering",
    "render_json": "rendering",
    "show": "rendering",
    "render_markdown": "rendering",
    "render_text": "rendering",
    "print_report": "rendering",
    # forward tracing (issue 3)
    "TraceResult": "trace",
    "build_inputs": "trace",
    "meta_copy": "trace",
    "spec_of": "trace",
    "state_guard": "trace",
    "trace_forward": "trace",
    # tied tensors (issue 4)
    "TieSnapshot": "tying",
    "check_ties": "tying",
    "compare_ties": "tying",
    "find_tied": "tying",
    "snapshot_ties": "tying",
    "watch_ties": "tying",
    # lazy layers (issue 5)
    "check_lazy": "lazy",
    "find_lazy": "lazy",
    "infer_lazy_shapes": "lazy",
    "inferred_numel": "records",
    "materialize": "lazy",
    "trace_lazy": "lazy",
    # initialization policies (issue 6)
    "InitEntry": "records",
    "InitReport": "records",
    "InitRule": "records",
    "InitRuleWarning": "init",
    "InitStatus": "records",
    "apply_init": "init",
    "load_policy": "init",
    # devices and synchronizations (issue 7)
    "SyncKind": "records",
    "SyncReport": "records",
    "SyncSite": "records",
    "check_devices": "devices",
    "detect_syncs": "syncs",
    "device_map": "devices",
    "no_syncs": "syncs",
    # checkpoints (issue 9)
    "CheckpointDiff": "records",
    "CheckpointEntry": "records",
    "CheckpointInfo": "records",
    "DtypeMismatch": "records",
    "OptimizerState": "records",
    "ShapeMismatch": "records",
    "UntiedInFile": "records",
    "diff_checkpoint": "checkpoint",
    "inspect_checkpoint": "checkpoint",
    # distributed models (issue 10)
    "check_fsdp_ties": "distributed",
    "gather_report": "distributed",
    # block diagrams (issue 8)
    "render_graph": "rendering.graph",
    "to_dot": "rendering.graph",
    "to_graphviz": "rendering.graph",
}

_SUBMODULES = ("examples", "records", "errors", "inspect", "rendering", "cli", "distributed",
               "devices", "syncs", "tying", "lazy", "init", "checkpoint", "trace")

__all__ = sorted([*_EXPORTS, "__version__", "examples"])


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        module = importlib.import_module(f"torchscope.{_EXPORTS[name]}")
        value = getattr(module, name)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        return importlib.import_module(f"torchscope.{name}")
    raise AttributeError(f"module 'torchscope' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
