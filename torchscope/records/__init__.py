"""The data model: frozen records holding plain values only (no tensors, no modules).

A :class:`Report` can be compared, serialized to JSON and kept without keeping the model (or its
memory) alive. Every record is a frozen, slotted dataclass of ``str``/``int``/``float``/``bool``/
``tuple``/enum values and other records; :func:`record_dict` is the one JSON codec, and every
JSON document carries ``schema_version``. Records display themselves through
:func:`torchscope.rendering.render` (``str(record)`` is its text; rich and Jupyter show it too).

>>> from torchscope.records import TensorSpec
>>> TensorSpec(shape=(2, 20), dtype="float32", device="cpu").shape
(2, 20)
"""

from __future__ import annotations

from torchscope.records._check import CheckResult as CheckResult
from torchscope.records._checkpoint import (
    CheckpointDiff as CheckpointDiff,
    CheckpointEntry as CheckpointEntry,
    CheckpointInfo as CheckpointInfo,
    DtypeMismatch as DtypeMismatch,
    OptimizerState as OptimizerState,
    ShapeMismatch as ShapeMismatch,
    UntiedInFile as UntiedInFile,
)
from torchscope.records._core import (
    SCHEMA_VERSION as SCHEMA_VERSION,
    CallRecord as CallRecord,
    Finding as Finding,
    FlowEdge as FlowEdge,
    LazyRecord as LazyRecord,
    MapSpec as MapSpec,
    ModuleRecord as ModuleRecord,
    ParamKind as ParamKind,
    ParamRecord as ParamRecord,
    RankRecord as RankRecord,
    Report as Report,
    SeqSpec as SeqSpec,
    Severity as Severity,
    Spec as Spec,
    TensorSpec as TensorSpec,
    TiedGroup as TiedGroup,
    TieKind as TieKind,
    ValueSpec as ValueSpec,
    inferred_numel as inferred_numel,
    record_dict as record_dict,
    record_json as record_json,
    spec_text as spec_text,
)
from torchscope.records._cost import (
    OPTIMIZERS as OPTIMIZERS,
    CallCost as CallCost,
    CostReport as CostReport,
)
from torchscope.records._diff import (
    ArchitectureDiff as ArchitectureDiff,
    CallChange as CallChange,
    ChangeKind as ChangeKind,
    CountDelta as CountDelta,
    FieldChange as FieldChange,
    ModuleChange as ModuleChange,
    TensorChange as TensorChange,
    TieChange as TieChange,
)
from torchscope.records._init import (
    InitEntry as InitEntry,
    InitReport as InitReport,
    InitRule as InitRule,
    InitStatus as InitStatus,
)
from torchscope.records._syncs import (
    SyncKind as SyncKind,
    SyncReport as SyncReport,
    SyncSite as SyncSite,
    UnobservedThread as UnobservedThread,
    short_path as short_path,
)
from torchscope.records._training import (
    BlockGradient as BlockGradient,
    GradientReport as GradientReport,
    NonfiniteReport as NonfiniteReport,
    OptimizerGroup as OptimizerGroup,
    OptimizerReport as OptimizerReport,
    ParamGradient as ParamGradient,
    TensorStats as TensorStats,
    UnusedParam as UnusedParam,
    UnusedReason as UnusedReason,
    UnusedReport as UnusedReport,
)

__all__ = [
    "SCHEMA_VERSION",
    "ArchitectureDiff",
    "CallChange",
    "ChangeKind",
    "CountDelta",
    "FieldChange",
    "ModuleChange",
    "TensorChange",
    "TieChange",
    "OPTIMIZERS",
    "CallCost",
    "CallRecord",
    "CheckpointDiff",
    "CheckpointEntry",
    "CheckpointInfo",
    "CostReport",
    "DtypeMismatch",
    "Finding",
    "FlowEdge",
    "InitEntry",
    "InitReport",
    "InitRule",
    "InitStatus",
    "LazyRecord",
    "MapSpec",
    "ModuleRecord",
    "OptimizerState",
    "ParamKind",
    "ParamRecord",
    "RankRecord",
    "Report",
    "SeqSpec",
    "Severity",
    "ShapeMismatch",
    "Spec",
    "SyncKind",
    "SyncReport",
    "SyncSite",
    "UnobservedThread",
    "TensorSpec",
    "TieKind",
    "TiedGroup",
    "UntiedInFile",
    "ValueSpec",
    "BlockGradient",
    "CheckResult",
    "GradientReport",
    "NonfiniteReport",
    "OptimizerGroup",
    "OptimizerReport",
    "ParamGradient",
    "TensorStats",
    "UnusedParam",
    "UnusedReason",
    "UnusedReport",
    "inferred_numel",
    "record_dict",
    "record_json",
    "short_path",
    "spec_text",
]
