"""Records of checkpoint files and of their diff against a model."""

from __future__ import annotations

from dataclasses import dataclass, field

from torchscope.records._core import Displayed, Finding, TiedGroup

__all__ = [
    "CheckpointDiff",
    "CheckpointEntry",
    "CheckpointInfo",
    "DtypeMismatch",
    "OptimizerState",
    "ShapeMismatch",
    "UntiedInFile",
]


@dataclass(frozen=True, slots=True)
class CheckpointEntry:
    """One tensor stored in a checkpoint.

    ``name`` is its dotted path inside the file (``model.hidden.weight``; ``""`` for a file that
    holds one tensor; list items by index). ``device`` is the device it was saved from, or
    ``None`` where the format does not record it (safetensors). ``stored_bytes`` is the size of
    the storage the file keeps for it: larger than ``nbytes`` for a view of a bigger tensor.
    ``shard`` names the shard file of a sharded checkpoint.
    """

    name: str
    shape: tuple[int, ...]
    dtype: str
    numel: int
    nbytes: int
    stored_bytes: int
    device: str | None = None
    shard: str | None = None


@dataclass(frozen=True, slots=True)
class OptimizerState:
    """An optimizer ``state_dict()`` found in a training checkpoint (summarized, not listed).

    ``state_keys`` are the per-parameter state names (``exp_avg``, ``momentum_buffer``…);
    ``hyperparams`` the scalar options of the first parameter group (``lr``…), as reprs.
    """

    path: str
    params_with_state: int
    param_groups: int
    tensors: int
    nbytes: int
    state_keys: tuple[str, ...]
    hyperparams: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True, repr=False)
class CheckpointInfo(Displayed):
    """What a checkpoint file holds, read without loading its tensor data.

    ``format`` is ``torch-zip``, ``torch-legacy``, ``safetensors``, ``sharded`` (an index JSON)
    or ``state-dict`` (an in-memory mapping). ``total_bytes`` counts each unique byte of tensor
    data once; ``stored_bytes`` is what the file spends on storages (more when it keeps views of
    bigger tensors). ``shared`` lists tensors stored over the same bytes (tied weights saved by
    ``torch.save`` stay shared). ``state_dicts`` are the dotted paths of the state dicts found
    (``""``: the whole file is one); ``optimizers`` summarize optimizer states; ``scalars`` are
    the other plain values (``("epoch", "3")``); ``metadata`` the safetensors/index metadata.
    """

    path: str
    format: str
    file_bytes: int
    entries: tuple[CheckpointEntry, ...]
    total_numel: int
    total_bytes: int
    stored_bytes: int
    shared: tuple[TiedGroup, ...] = ()
    state_dicts: tuple[str, ...] = ()
    optimizers: tuple[OptimizerState, ...] = ()
    scalars: tuple[tuple[str, str], ...] = ()
    metadata: tuple[tuple[str, str], ...] = ()
    shards: tuple[str, ...] = ()
    findings: tuple[Finding, ...] = ()

    def entry(self, name: str) -> CheckpointEntry:
        """The entry stored under ``name``.

        Raises:
            KeyError: no tensor has that name.
        """
        for e in self.entries:
            if e.name == name:
                return e
        raise KeyError(f"no tensor named {name!r} in {self.path}")

    def __repr__(self) -> str:
        return (f"<CheckpointInfo {self.path!r}: {self.format}, {len(self.entries)} tensors, "
                f"{self.total_numel:,} values, {len(self.findings)} findings>")


@dataclass(frozen=True, slots=True)
class ShapeMismatch:
    """A key whose tensor has another shape in the file than in the model."""

    name: str
    file_shape: tuple[int, ...]
    model_shape: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class DtypeMismatch:
    """A key whose dtype differs (``load_state_dict`` converts it, possibly losing precision)."""

    name: str
    file_dtype: str
    model_dtype: str


@dataclass(frozen=True, slots=True)
class UntiedInFile:
    """Names the model ties (one tensor) that the file stores as separate tensors.

    ``values_differ`` is ``None`` when the values cannot be compared (shapes or dtypes differ).
    ``wins`` is the name whose value every name holds after ``load_state_dict`` (the last one
    loaded, in state-dict order).
    """

    names: tuple[str, ...]
    values_differ: bool | None
    wins: str


@dataclass(frozen=True, slots=True, repr=False)
class CheckpointDiff(Displayed):
    """A checkpoint compared with a model, without loading anything into the model.

    When the keys only match after removing or adding a prefix (``strip_prefix``/``add_prefix``,
    e.g. ``module.`` from DDP), ``missing``/``unexpected``/mismatches are computed *after* that
    fix, while ``would_load_strict`` is about the file as it is and ``would_load_after_fix``
    about the fixed keys. ``tied_missing`` pairs a missing key with the present key the model
    ties it to (a file saved by ``safetensors.torch.save_model`` keeps one copy); strict loading
    still fails on it, ``strict=False`` or ``safetensors.torch.load_model`` fill it through the
    tie. ``findings`` say all of it in words, with the fix.
    """

    source: str
    state_dict: str
    model_type: str
    matched: int
    missing: tuple[str, ...]
    unexpected: tuple[str, ...]
    shape_mismatches: tuple[ShapeMismatch, ...]
    dtype_mismatches: tuple[DtypeMismatch, ...]
    tied_missing: tuple[tuple[str, str], ...]
    untied_in_file: tuple[UntiedInFile, ...]
    strip_prefix: str | None
    add_prefix: str | None
    would_load_strict: bool
    would_load_after_fix: bool
    findings: tuple[Finding, ...] = field(default=())

    @property
    def ok(self) -> bool:
        """True when ``load_state_dict(strict=True)`` would succeed as the file is."""
        return self.would_load_strict

    def __repr__(self) -> str:
        verdict = "loads" if self.would_load_strict else "does not load"
        return (f"<CheckpointDiff {self.source!r} vs {self.model_type}: {verdict} strictly, "
                f"{self.matched} matched, {len(self.missing)} missing, "
                f"{len(self.unexpected)} unexpected, {len(self.shape_mismatches)} shape "
                f"mismatches>")


