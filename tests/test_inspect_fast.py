"""The static summary's fast paths give exactly what the plain paths give.

``summarize`` builds its records through draft classes (see ``torchscope/inspect.py``) and
skips the tie-aware machinery when nothing shares memory; these tests hold both to the
dataclass constructor and to the careful path.
"""

from __future__ import annotations

import copy
import dataclasses
import pickle

import pytest
import torch
from models import gpt2
from torch import nn

import torchscope
from torchscope import examples
from torchscope.inspect import _walk as ts_walk
from torchscope.records import ModuleRecord, ParamRecord


def _stack() -> nn.Module:
    model = nn.Sequential(*[m for _ in range(20) for m in (nn.Linear(4, 4), nn.ReLU())])
    model.register_buffer("scale", torch.ones(3), persistent=False)
    model[0].requires_grad_(False)
    return model


def _rebuilt(record: object) -> object:
    """The same record through the dataclass's own constructor."""
    cls = type(record)
    return cls(**{f.name: getattr(record, f.name) for f in dataclasses.fields(cls)})  # type: ignore[arg-type]


@pytest.mark.parametrize("build", [_stack, examples.SharedMLP, examples.LazyMLP, gpt2])
def test_records_are_genuine_frozen_dataclasses(build: object) -> None:
    report = torchscope.summarize(build())  # type: ignore[operator]
    for record in (*report.modules, *report.params):
        assert type(record) in (ModuleRecord, ParamRecord)
        assert record == _rebuilt(record)
        assert hash(record) == hash(_rebuilt(record))
        assert repr(record) == repr(_rebuilt(record))
        assert pickle.loads(pickle.dumps(record)) == record
        assert copy.deepcopy(record) == record
        assert dataclasses.replace(record) == record
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(record, dataclasses.fields(record)[0].name, "x")


@pytest.mark.parametrize("build", [_stack, examples.SharedMLP, gpt2])
def test_plain_constructors_give_the_same_report(
    build: object, monkeypatch: pytest.MonkeyPatch,
) -> None:
    model = build()  # type: ignore[operator]
    fast = torchscope.summarize(model)
    monkeypatch.setattr(ts_walk, "_module_record", ts_walk._plain_module_record)
    monkeypatch.setattr(ts_walk, "_param_record", ts_walk._plain_param_record)
    assert torchscope.summarize(model) == fast


def test_tie_aware_path_keeps_the_other_records() -> None:
    """A strided buffer sends the whole report down the tie-aware path; every other record
    and total must stay as the fast path made them."""
    plain = _stack()
    fast = torchscope.summarize(plain)
    strided = copy.deepcopy(plain)
    strided[3].register_buffer("every_other", torch.zeros(10)[::2])
    careful = torchscope.summarize(strided)
    assert [p for p in careful.params if p.name != "3.every_other"] == list(fast.params)
    extra = next(p for p in careful.params if p.name == "3.every_other")
    assert (extra.shape, extra.numel, extra.nbytes) == ((5,), 5, 20)
    assert careful.total_params == fast.total_params
    assert careful.buffer_numel == fast.buffer_numel + 5
    assert careful.buffer_bytes == fast.buffer_bytes + 20
    by_path = {m.path: m for m in fast.modules}
    for module in careful.modules:
        if module.path in ("", "3"):
            assert module.total_buffers == by_path[module.path].total_buffers + 5
        else:
            assert module == by_path[module.path]


def test_a_tensor_under_two_names_is_found_without_a_name_table() -> None:
    """Repeats are found through the storage key on the fast path."""
    model = _stack()
    model[2].register_buffer("again", model[0].weight)  # a parameter, also a buffer elsewhere
    report = torchscope.summarize(model)
    record = next(p for p in report.params if p.name == "0.weight")
    assert record.aliases == ("2.again",)
    assert record.tie_group is not None
    assert report.total_params == sum(p.numel() for p in model.parameters())
