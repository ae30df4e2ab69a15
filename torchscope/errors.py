"""Exceptions: one base class and a few subclasses, each message naming the thing and the fix.

>>> from torchscope.errors import TorchscopeError
>>> issubclass(TorchscopeError, RuntimeError)
True
"""

from __future__ import annotations

__all__ = [
    "ArgumentError",
    "CheckpointError",
    "ForwardError",
    "InitPolicyError",
    "InputSpecError",
    "SyncError",
    "TargetError",
    "TorchscopeError",
]


class TorchscopeError(RuntimeError):
    """Base class of every error torchscope raises on purpose; the CLI exits 2 on it."""


class TargetError(TorchscopeError):
    """A ``package.module:name`` / ``file.py:name`` target did not resolve to a module."""


class InputSpecError(TorchscopeError, ValueError):
    """Example inputs or ``--input-size``/``--dtype`` values that cannot be used."""


class ForwardError(TorchscopeError):
    """The model's forward raised while torchscope traced it (the original error is chained)."""


class CheckpointError(TorchscopeError):
    """A checkpoint file is missing, corrupt, unsafe to read or not a checkpoint at all."""


class InitPolicyError(TorchscopeError, ValueError):
    """An initialization policy with an unknown initializer, bad arguments or a bad rule."""


class SyncError(TorchscopeError):
    """A host-device synchronization happened inside :func:`torchscope.no_syncs`."""


class ArgumentError(TorchscopeError, TypeError):
    """A public function got an argument of a type it does not take (``None`` for a model,
    a number for a path); the message names the argument and what it takes."""
