"""torchscope: model introspection and debugging for PyTorch.

Blocks and parameters, shapes that flow through them, tied and lazy tensors, initialization
policies, devices and host-device synchronizations, checkpoints and block diagrams.

>>> import torchscope
>>> report = torchscope.summarize(torchscope.examples.MLP())
>>> report.total_params
7946

Public names load on first use, so ``import torchscope`` stays light: each lives in the module
named in ``_EXPORTS``. Type checkers read the explicit imports of the ``TYPE_CHECKING`` block,
which mirrors that table name for name (a test keeps the two equal), so every public name has
its real signature.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

try:
    __version__ = version("torchscope")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0+unknown"

if TYPE_CHECKING:
    from torchscope import examples as examples
    from torchscope.arch_diff import diff as diff
    from torchscope.checkpoint import (
        diff_checkpoint as diff_checkpoint,
        inspect_checkpoint as inspect_checkpoint,
    )
    from torchscope.checks import check as check
    from torchscope.compat import summary as summary
    from torchscope.cost import estimate_cost as estimate_cost
    from torchscope.devices import (
        check_devices as check_devices,
        device_map as device_map,
    )
    from torchscope.distributed import (
        check_fsdp_ties as check_fsdp_ties,
        gather_report as gather_report,
    )
    from torchscope.errors import (
        ArgumentError as ArgumentError,
        CheckpointError as CheckpointError,
        ForwardError as ForwardError,
        InitPolicyError as InitPolicyError,
        InputSpecError as InputSpecError,
        SyncError as SyncError,
        TargetError as TargetError,
        TorchscopeError as TorchscopeError,
    )
    from torchscope.init import (
        InitRuleWarning as InitRuleWarning,
        apply_init as apply_init,
        init_stats as init_stats,
        load_policy as load_policy,
    )
    from torchscope.inspect import (
        list_parameters as list_parameters,
        summarize as summarize,
        walk as walk,
    )
    from torchscope.lazy import (
        check_lazy as check_lazy,
        find_lazy as find_lazy,
        infer_lazy_shapes as infer_lazy_shapes,
        materialize as materialize,
        trace_lazy as trace_lazy,
    )
    from torchscope.records import (
        ArchitectureDiff as ArchitectureDiff,
        BlockGradient as BlockGradient,
        CallCost as CallCost,
        CallRecord as CallRecord,
        CheckpointDiff as CheckpointDiff,
        CheckpointEntry as CheckpointEntry,
        CheckpointInfo as CheckpointInfo,
        CheckResult as CheckResult,
        CostReport as CostReport,
        DtypeMismatch as DtypeMismatch,
        Finding as Finding,
        FlowEdge as FlowEdge,
        GradientReport as GradientReport,
        InitEntry as InitEntry,
        InitReport as InitReport,
        InitRule as InitRule,
        InitStatus as InitStatus,
        LazyRecord as LazyRecord,
        MapSpec as MapSpec,
        ModuleRecord as ModuleRecord,
        NonfiniteReport as NonfiniteReport,
        OptimizerGroup as OptimizerGroup,
        OptimizerReport as OptimizerReport,
        OptimizerState as OptimizerState,
        ParamGradient as ParamGradient,
        ParamKind as ParamKind,
        ParamRecord as ParamRecord,
        RankRecord as RankRecord,
        Report as Report,
        SeqSpec as SeqSpec,
        Severity as Severity,
        ShapeMismatch as ShapeMismatch,
        SyncKind as SyncKind,
        SyncReport as SyncReport,
        SyncSite as SyncSite,
        TensorSpec as TensorSpec,
        TensorStats as TensorStats,
        TiedGroup as TiedGroup,
        TieKind as TieKind,
        UnobservedThread as UnobservedThread,
        UntiedInFile as UntiedInFile,
        UnusedParam as UnusedParam,
        UnusedReason as UnusedReason,
        UnusedReport as UnusedReport,
        ValueSpec as ValueSpec,
        inferred_numel as inferred_numel,
    )
    from torchscope.rendering import (
        print_report as print_report,
        render as render,
        render_json as render_json,
        render_markdown as render_markdown,
        render_text as render_text,
        show as show,
    )
    from torchscope.rendering.graph import (
        render_graph as render_graph,
        to_dot as to_dot,
        to_graphviz as to_graphviz,
    )
    from torchscope.syncs import (
        detect_syncs as detect_syncs,
        no_syncs as no_syncs,
    )
    from torchscope.trace import (
        TraceResult as TraceResult,
        build_inputs as build_inputs,
        meta_copy as meta_copy,
        spec_of as spec_of,
        state_guard as state_guard,
        trace_forward as trace_forward,
    )
    from torchscope.training import (
        check_optimizer as check_optimizer,
        find_nonfinite as find_nonfinite,
        find_unused_parameters as find_unused_parameters,
        gradient_flow as gradient_flow,
        watch_gradients as watch_gradients,
    )
    from torchscope.tying import (
        TieSnapshot as TieSnapshot,
        check_ties as check_ties,
        compare_ties as compare_ties,
        find_tied as find_tied,
        snapshot_ties as snapshot_ties,
        watch_ties as watch_ties,
    )

# public name -> submodule that defines it (loaded on first use)
_EXPORTS: dict[str, str] = {
    # records: plain values, no tensors or modules
    "ArchitectureDiff": "records",
    "BlockGradient": "records",
    "CallRecord": "records",
    "CheckResult": "records",
    "CheckpointDiff": "records",
    "CheckpointEntry": "records",
    "CheckpointInfo": "records",
    "CallCost": "records",
    "CostReport": "records",
    "DtypeMismatch": "records",
    "Finding": "records",
    "FlowEdge": "records",
    "GradientReport": "records",
    "InitEntry": "records",
    "InitReport": "records",
    "InitRule": "records",
    "InitStatus": "records",
    "LazyRecord": "records",
    "MapSpec": "records",
    "ModuleRecord": "records",
    "NonfiniteReport": "records",
    "OptimizerGroup": "records",
    "OptimizerReport": "records",
    "OptimizerState": "records",
    "ParamGradient": "records",
    "ParamKind": "records",
    "ParamRecord": "records",
    "RankRecord": "records",
    "Report": "records",
    "SeqSpec": "records",
    "Severity": "records",
    "ShapeMismatch": "records",
    "SyncKind": "records",
    "SyncReport": "records",
    "SyncSite": "records",
    "UnobservedThread": "records",
    "TensorSpec": "records",
    "TensorStats": "records",
    "TieKind": "records",
    "TiedGroup": "records",
    "UntiedInFile": "records",
    "UnusedParam": "records",
    "UnusedReason": "records",
    "UnusedReport": "records",
    "ValueSpec": "records",
    "inferred_numel": "records",
    # errors
    "ArgumentError": "errors",
    "CheckpointError": "errors",
    "ForwardError": "errors",
    "InitPolicyError": "errors",
    "InputSpecError": "errors",
    "SyncError": "errors",
    "TargetError": "errors",
    "TorchscopeError": "errors",
    # static traversal and summaries
    "list_parameters": "inspect",
    "summarize": "inspect",
    "summary": "compat",
    "walk": "inspect",
    # forward tracing
    "TraceResult": "trace",
    "build_inputs": "trace",
    "meta_copy": "trace",
    "spec_of": "trace",
    "state_guard": "trace",
    "trace_forward": "trace",
    # tied tensors
    "TieSnapshot": "tying",
    "check_ties": "tying",
    "compare_ties": "tying",
    "find_tied": "tying",
    "snapshot_ties": "tying",
    "watch_ties": "tying",
    # lazy layers
    "check_lazy": "lazy",
    "find_lazy": "lazy",
    "infer_lazy_shapes": "lazy",
    "materialize": "lazy",
    "trace_lazy": "lazy",
    # initialization policies
    "InitRuleWarning": "init",
    "apply_init": "init",
    "init_stats": "init",
    "load_policy": "init",
    # cost: FLOPs and memory
    "estimate_cost": "cost",
    # checks and training-step debugging
    "check": "checks",
    "check_optimizer": "training",
    "find_nonfinite": "training",
    "find_unused_parameters": "training",
    "gradient_flow": "training",
    "watch_gradients": "training",
    # devices
    "check_devices": "devices",
    "device_map": "devices",
    # host-device synchronizations
    "detect_syncs": "syncs",
    "no_syncs": "syncs",
    # checkpoints
    "diff_checkpoint": "checkpoint",
    "inspect_checkpoint": "checkpoint",
    # architecture diff
    "diff": "arch_diff",
    # distributed models
    "check_fsdp_ties": "distributed",
    "gather_report": "distributed",
    # rendering
    "print_report": "rendering",
    "render": "rendering",
    "render_json": "rendering",
    "render_markdown": "rendering",
    "render_text": "rendering",
    "show": "rendering",
    # block diagrams
    "render_graph": "rendering.graph",
    "to_dot": "rendering.graph",
    "to_graphviz": "rendering.graph",
}

_SUBMODULES = ("examples", "records", "errors", "inspect", "rendering", "cli", "distributed",
               "devices", "syncs", "tying", "lazy", "init", "checkpoint", "trace", "checks",
               "training", "cost", "testing")

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
