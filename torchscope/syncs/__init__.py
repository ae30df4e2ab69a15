"""Host-device synchronization detector: which lines make the host wait for the device.

``with detect_syncs() as report:`` records every operation that forces the host to wait for an
accelerator — ``.item()``, ``float()``/``int()``/``bool()`` of a tensor, ``if tensor:``,
``.tolist()``, ``.cpu()``/``.to("cpu")``/``.numpy()``, printing a tensor, ``nonzero``,
boolean-mask indexing, ``masked_select``, ``unique``, ``repeat_interleave`` without
``output_size``, ``equal``, ``allclose`` — at the user's ``file:line`` and function, grouped by
site with counts, with the fix. :func:`no_syncs` raises :class:`~torchscope.errors.SyncError`
at the first one, for tests.

How (docs/architecture.md, "Host-device synchronization"):

* A :class:`~torch.overrides.TorchFunctionMode` sees every public torch call and looks the
  function up in a small table (one dict lookup for the calls that never synchronize). Only a
  hit walks the Python frames (``sys._getframe``) to find the first frame outside torch and
  torchscope. Without an accelerator this reports what *would* synchronize on one: on CPU
  ``.cpu()`` is a no-op and ``.item()`` costs nothing, but the same line stalls a GPU.
* ``deep=True`` adds a :class:`~torch.utils._python_dispatch.TorchDispatchMode` that also sees
  the scalar reads torch's C++ code makes (``torch.zeros(n)``/``torch.arange(n)`` with a tensor
  ``n``, sizes given as tensors). Everything else — ``int(t)``/``bool(t)`` in transformers'
  helpers included — is a Python-level call the function mode sees. The dispatch mode costs
  more, since every ATen op (backward and optimizer included) goes through Python:
  ``benchmarks/bench_syncs.py`` measured, on an Adam step of 4 x Linear(h, h), batch 64, on 2
  CPU threads, 1.0-1.1x (h=512) and 1.4-1.5x (h=64) for the default, 1.3-1.6x and 2.5-3.2x
  with ``deep=True`` — so the dispatch mode is opt-in.
* On CUDA, ``torch.cuda.set_sync_debug_mode("warn")`` runs as well and its warnings become sites;
  tensors on the CPU are then not reported (reading them never waits for the GPU).
* The modes belong to the thread that enters them. Threads started while recording run theirs
  too (``threading.Thread.start`` is wrapped); threads that were already running are not
  observed, and the report names them (:attr:`~torchscope.records.SyncReport.unobserved_threads`;
  :func:`detect_syncs` says why they are not observed).

Known false positives on CPU, not reported: optimizer step counters (``torch.optim`` keeps
``step`` as a host tensor and reads it every step), the scalar read inside ``x[mask] = 0.0``
(a ``masked_fill`` on the device), and ``.to(device)`` where ``device`` only happens to be the
CPU (reported only when the line names ``cpu``).

>>> import torch, torchscope
>>> with torchscope.detect_syncs() as report:
...     loss = torch.ones(3).sum()
...     value = loss.item()
>>> [(site.op, site.count) for site in report.sites]
[('.item()', 1)]
"""

from __future__ import annotations

import contextlib
import linecache
import os
import sys
import threading
import types
import warnings
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

from torchscope.errors import SyncError, TorchscopeError
from torchscope.records import SyncKind, SyncReport, short_path
from torchscope.syncs._rules import (
    DISPATCH_RULES,
    FIX_SCALAR,
    FIXES,
    FUNCTION_RULES,
    HOST_COPIES,
    Hit,
)

_Line = tuple[types.CodeType, int]

__all__ = ["SyncRecorder", "detect_syncs", "no_syncs"]




# -- frames ----------------------------------------------------------------------------------------

_TORCH_DIR = os.path.dirname(torch.__file__) + os.sep
_TORCH_PARENT = os.path.dirname(os.path.dirname(torch.__file__)) + os.sep
_HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep  # the package
_THIS_FILE = os.path.abspath(__file__)
# torch files that only route a call to its implementation: never "where torch synchronized"
_PLUMBING = tuple(
    _TORCH_DIR + p.replace("/", os.sep)
    for p in ("overrides.py", "_tensor.py", "functional.py", "_jit_internal.py", "_compile.py",
              "_dynamo/", "utils/_python_dispatch", "_ops.py", "utils/_contextlib.py")
)
# torch.optim reads these on purpose: step counters live on the host (false positives)
_OPTIM_DIR = _TORCH_DIR + "optim" + os.sep
_OPTIM_REAL = tuple(_OPTIM_DIR + f for f in ("lr_scheduler.py", "lbfgs.py"))

# frame categories
_USER, _TORCH, _PLUMB, _DETECTOR, _OWN = range(5)


def _category(filename: str) -> int:
    path = os.path.abspath(filename) if not filename.startswith("<") else filename
    if path == _THIS_FILE:
        return _DETECTOR
    if path.startswith(_HERE):
        if path == _HERE + "examples.py":
            return _USER  # the chapter's models are user code as far as syncs go
        if path == _HERE + os.path.join("cli", "syncs.py"):
            return _PLUMB
        return _OWN
    if path.startswith(_PLUMBING):
        return _PLUMB
    if path.startswith(_TORCH_DIR):
        return _TORCH
    if path.startswith("<frozen "):
        return _PLUMB  # runpy, importlib
    return _USER




# -- the recorder ----------------------------------------------------------------------------------


class SyncRecorder(SyncReport):
    """The :class:`~torchscope.records.SyncReport` that :func:`detect_syncs` returns: the
    context manager that records (enter it again to record more; the counts add up; entering it
    while it is already active changes nothing)."""

    def __init__(self, *, include_cpu: bool | None = None, deep: bool = False,
                 cuda: bool | None = None, strict: bool = False) -> None:
        for name, value, optional in (("include_cpu", include_cpu, True), ("deep", deep, False),
                                      ("cuda", cuda, True)):
            if not isinstance(value, bool) and not (optional and value is None):
                raise TorchscopeError(
                    f"{name} = {value!r} is not True or False"
                    + (" (or None for the default)" if optional else "") + "; pass a bool")
        available = torch.cuda.is_available()
        super().__init__(
            include_cpu=(not available) if include_cpu is None else bool(include_cpu),
            deep=bool(deep),
            cuda=available if cuda is None else bool(cuda and available),
        )
        self._strict = strict
        self._codes: dict[types.CodeType, int] = {}
        # per thread, > 0 while a reported (or knowingly skipped) call runs: no double count
        self._local = threading.local()
        self._depth = 0
        self._stack: contextlib.ExitStack | None = None
        self._thread_start: Any = None  # threading.Thread.start before ours
        # threads started under this recorder (observed) and those found running when it started
        self._watched: weakref.WeakSet[threading.Thread] = weakref.WeakSet()
        self._found: weakref.WeakKeyDictionary[threading.Thread, list[Any]] = (
            weakref.WeakKeyDictionary())
        self._running: list[tuple[weakref.ref[threading.Thread], list[Any]]] = []
        # id -> (result of .cpu(), (code, line) of the call when .cpu() returned its input)
        self._host: dict[int, tuple[weakref.ref[torch.Tensor], _Line | None]] = {}

    # -- recording ---------------------------------------------------------------------------
    def __enter__(self) -> SyncRecorder:
        """Start recording in this thread and in threads started from now on; note the other
        threads already running, which are not observed (see :func:`detect_syncs`)."""
        self._depth += 1
        if self._depth > 1:
            return self
        stack = contextlib.ExitStack()
        try:
            if self.cuda:
                stack.enter_context(self._cuda_debug())
            stack.enter_context(_FunctionMode(self))
            if self.deep:
                stack.enter_context(_DispatchMode(self))
        except BaseException:
            self._depth -= 1
            stack.close()
            raise
        self._stack = stack
        self._note_running_threads()
        # torch's modes are per thread: threads started while recording run in their own
        self._thread_start = threading.Thread.start
        threading.Thread.start = self._watched_start(self._thread_start)  # type: ignore[method-assign,assignment]
        return self

    def __exit__(self, *exc: object) -> None:
        self._depth -= 1
        if self._depth == 0 and self._stack is not None:
            stack, self._stack = self._stack, None
            threading.Thread.start = self._thread_start  # type: ignore[method-assign]
            self._thread_start = None
            stack.close()
            for ref, row in self._running:
                thread = ref()
                row[1] = thread is not None and thread.is_alive()
            self._running = []

    def _note_running_threads(self) -> None:
        """Note the threads that run outside this recorder's modes: every thread
        ``threading.enumerate()`` lists except this one, those started under this recorder
        (observed) and dummy entries (threads started outside ``threading``, which ``threading``
        keeps listing after they end). torchscope starts no threads of its own."""
        current = threading.current_thread()
        for thread in threading.enumerate():
            if (thread is current or thread in self._watched
                    or isinstance(thread, threading._DummyThread)):
                continue
            row = self._found.get(thread)
            if row is None:  # the same thread found again when the report is entered again
                row = self._found[thread] = [thread.name, None]
                self._threads.append(row)
            row[1] = None
            self._running.append((weakref.ref(thread), row))

    def _watched_start(self, start: Callable[[threading.Thread], None],
                       ) -> Callable[[threading.Thread], None]:
        """``Thread.start`` that runs the thread's ``run`` under this recorder's modes (they
        record nothing once recording stopped)."""
        recorder = self

        def watched_start(thread: threading.Thread) -> None:
            recorder._watched.add(thread)
            run = thread.run

            def watched_run() -> None:
                with contextlib.ExitStack() as modes:
                    modes.enter_context(_FunctionMode(recorder))
                    if recorder.deep:
                        modes.enter_context(_DispatchMode(recorder))
                    run()

            thread.run = watched_run  # type: ignore[method-assign]
            start(thread)

        return watched_start

    @property
    def _quiet(self) -> int:
        quiet: int = getattr(self._local, "quiet", 0)
        return quiet

    def _category(self, code: types.CodeType) -> int:
        cat = self._codes.get(code)
        if cat is None:
            cat = self._codes[code] = _category(code.co_filename)
        return cat

    def _on_host(self, op: str, tensor: Any, frame: types.FrameType | None) -> bool:
        if not isinstance(tensor, torch.Tensor):
            return False
        if not self.include_cpu and tensor.device.type in ("cpu", "meta"):
            return True  # reading a host tensor never waits for the device
        entry = self._host.get(id(tensor))
        if entry is None or entry[0]() is not tensor:
            return False
        if entry[1] is None:
            return True  # a copy made by .cpu(): it lives on the host, reading it is free
        # On CPU .cpu() returns the tensor itself: only the next read on that same line
        # (x.cpu().numpy()) is reading the copy.
        if (op not in HOST_COPIES and frame is not None
                and entry[1] == (frame.f_code, frame.f_lineno)):
            del self._host[id(tensor)]
            return True
        return False

    def _on_call(self, hit: Hit, func: Callable[..., Any], args: tuple[Any, ...],
                 kwargs: dict[str, Any], frame: types.FrameType | None) -> Any:
        op, kind, tensor = hit
        site = None
        if not self._on_host(op, tensor, frame):
            site = self._record(op, kind, frame, tensor)
        local = self._local
        local.quiet = getattr(local, "quiet", 0) + 1  # the dispatch level must not count it
        try:
            result = func(*args, **kwargs)
        finally:
            local.quiet -= 1
        if op in HOST_COPIES and isinstance(result, torch.Tensor):
            if len(self._host) > 1024:
                self._host = {k: e for k, e in self._host.items() if e[0]() is not None}
            if result is not tensor:
                self._host[id(result)] = (weakref.ref(result), None)
            elif site is not None and frame is not None:
                self._host[id(result)] = (weakref.ref(result), (frame.f_code, frame.f_lineno))
        return result

    def _record(self, op: str, kind: SyncKind, frame: types.FrameType | None,
                tensor: Any) -> types.FrameType | None:
        """Count one synchronization at the first user frame, unless it is a known false
        positive or torchscope's own doing; raise SyncError instead when strict.

        Returns the frame of the site that was counted, or ``None``.
        """
        inner: types.FrameType | None = None  # innermost torch frame that is not plumbing
        site: types.FrameType | None = None
        while frame is not None:
            cat = self._category(frame.f_code)
            if cat == _DETECTOR or cat == _PLUMB:
                frame = frame.f_back
                continue
            if cat == _OWN:
                return None  # torchscope's own machinery (or torch on its behalf) read it
            if cat == _USER:
                site = frame
                break
            if cat == _TORCH and inner is None:
                inner = frame
            frame = frame.f_back
        if inner is not None:
            path = inner.f_code.co_filename
            if (kind is SyncKind.SCALAR_READ and path.startswith(_OPTIM_DIR)
                    and not path.startswith(_OPTIM_REAL)):
                return None  # optimizer step counter: a host tensor (known false positive)
        where = site if site is not None else inner
        if where is None:
            return None
        file, line = where.f_code.co_filename, where.f_lineno
        if (op == '.to("cpu")' and isinstance(tensor, torch.Tensor) and tensor.device.type == "cpu"
                and "cpu" not in linecache.getline(file, line).lower()):
            return None  # .to(device) where device only happens to be the CPU: not a device sync
        via = None
        if inner is not None and site is not None:
            via = (f"{os.path.relpath(inner.f_code.co_filename, _TORCH_PARENT)}:{inner.f_lineno}"
                   f" {inner.f_code.co_name}")
        function = getattr(where.f_code, "co_qualname", where.f_code.co_name)
        if self._strict:
            raise SyncError(
                f"host-device synchronization inside no_syncs(): {op} ({kind.value}) at "
                f"{short_path(file)}:{line} in {function}"
                + (f" (inside {via})" if via else "")
                + f"; fix: {FIXES.get(op, FIX_SCALAR)}"
            )
        key = (file, line, op)
        row = self._sites.get(key)
        if row is None:
            self._sites[key] = [1, len(self._sites), file, line, function, op, kind, via,
                                FIXES.get(op, FIX_SCALAR)]
        else:
            row[0] += 1
        return where

    @contextlib.contextmanager
    def _cuda_debug(self) -> Iterator[None]:  # pragma: no cover - needs a CUDA device
        previous = torch.cuda.get_sync_debug_mode()
        with warnings.catch_warnings(record=True) as log:
            warnings.filterwarnings("always", message=".*synchronizing CUDA operation.*")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                yield
            finally:
                torch.cuda.set_sync_debug_mode(previous)
        for w in log:
            if "synchronizing CUDA operation" in str(w.message):
                key = (w.filename, w.lineno, "synchronizing CUDA op")
                row = self._sites.get(key)
                if row is None:
                    self._sites[key] = [1, len(self._sites), w.filename, w.lineno, "?",
                                        "synchronizing CUDA op", SyncKind.CUDA, None,
                                        FIXES.get("synchronizing CUDA op", FIX_SCALAR)]
                else:
                    row[0] += 1
            else:
                warnings.showwarning(w.message, w.category, w.filename, w.lineno, w.file, w.line)


class _FunctionMode(TorchFunctionMode):  # type: ignore[no-untyped-call,unused-ignore]
    """Sees public torch calls; one dict lookup for the calls that never synchronize."""

    def __init__(self, report: SyncRecorder) -> None:
        super().__init__()  # type: ignore[no-untyped-call,unused-ignore]
        self._report = report

    def __torch_function__(self, func: Any, types: Any, args: tuple[Any, ...] = (),
                           kwargs: dict[str, Any] | None = None) -> Any:
        if kwargs is None:
            kwargs = {}
        try:
            rule = FUNCTION_RULES.get(func)
        except TypeError:  # an unhashable callable: never one of ours
            rule = None
        if rule is None:
            return func(*args, **kwargs)
        try:
            hit = rule(args, kwargs)
        except Exception:  # odd arguments: let torch raise its own error
            hit = None
        if hit is None:
            return func(*args, **kwargs)
        report = self._report
        if report._quiet or not report._depth:  # nested, or a thread outliving the recording
            return func(*args, **kwargs)
        if report.cuda:  # pragma: no cover - needs a CUDA device
            previous = torch.cuda.get_sync_debug_mode()
            torch.cuda.set_sync_debug_mode(0)  # this one is reported here, not as a warning
            try:
                return report._on_call(hit, func, args, kwargs, sys._getframe(1))
            finally:
                torch.cuda.set_sync_debug_mode(previous)
        return report._on_call(hit, func, args, kwargs, sys._getframe(1))


class _DispatchMode(TorchDispatchMode):  # type: ignore[no-untyped-call,unused-ignore]
    """Sees every ATen op, also those torch's C++ code calls (``deep=True``)."""

    def __init__(self, report: SyncRecorder) -> None:
        super().__init__()  # type: ignore[no-untyped-call,unused-ignore]
        self._report = report

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple[Any, ...] = (),
                           kwargs: dict[str, Any] | None = None) -> Any:
        if kwargs is None:
            kwargs = {}
        rule = DISPATCH_RULES.get(func)
        if rule is None or self._report._quiet or not self._report._depth:
            return func(*args, **kwargs)
        try:
            hit = rule(args, kwargs)
        except Exception:  # odd arguments: let torch raise its own error
            hit = None
        if hit is None:
            return func(*args, **kwargs)
        return self._report._on_call(hit, func, args, kwargs, sys._getframe(1))


def detect_syncs(*, include_cpu: bool | None = None, deep: bool = False,
                 cuda: bool | None = None) -> SyncRecorder:
    """Record the host-device synchronizations of a block of code, by line.

    Args:
        include_cpu: count operations on CPU tensors, which synchronize only on an accelerator
            (default: ``True`` without CUDA, so a CPU run reports what would stall a GPU;
            ``False`` with CUDA, where reading a CPU tensor costs no synchronization).
        deep: also watch ATen ops at the dispatch level, which sees the scalar reads torch's
            C++ code makes (``torch.zeros(n)`` with a tensor ``n``); slower (every op, backward
            included, goes through Python).
        cuda: use ``torch.cuda.set_sync_debug_mode("warn")`` as well (default: when CUDA is
            available); its warnings become sites of kind ``cuda sync``.

    Returns:
        A :class:`SyncReport`: use it as a context manager (``with detect_syncs() as report:``);
        it fills while the block runs and can be entered again to record more.

    Raises:
        SyncError: never; see :func:`no_syncs` to fail on the first synchronization.

    Threads: torch's function and dispatch modes live in each thread's own state, and only code
    running in that thread can enter one. The thread that enters the report records, and so do
    threads started while it records (their ``run`` enters the modes first). Threads that were
    already running when recording started are not observed, and the report says so, naming
    them (:attr:`~torchscope.records.SyncReport.unobserved_threads`) and whether each was still
    running when recording stopped. Python 3.11 has no way to run code in a thread that is
    already running (``sys.setprofile`` is per thread, ``threading.setprofile`` only reaches
    threads started later); the hook that 3.12 adds (``threading.setprofile_all_threads``)
    could enter a mode in such a thread, but in the middle of that thread's own work: a thread
    inside its own ``with SomeMode():`` would pop ours when its block ends and leave its mode
    stack wrong. So the report names those threads on every version instead of observing them.

    >>> import torch, torchscope
    >>> with torchscope.detect_syncs() as report:
    ...     for step in range(3):
    ...         value = float(torch.ones(2).sum())
    >>> report.sites[0].count
    3
    """
    return SyncRecorder(include_cpu=include_cpu, deep=deep, cuda=cuda)


class _NoSyncs(contextlib.ContextDecorator):
    def __init__(self, include_cpu: bool | None, deep: bool) -> None:
        SyncRecorder(include_cpu=include_cpu, deep=deep, cuda=False)  # checks the arguments
        self._args = (include_cpu, deep)
        self._reports: list[SyncRecorder] = []

    def __enter__(self) -> None:
        include_cpu, deep = self._args
        report = SyncRecorder(include_cpu=include_cpu, deep=deep, cuda=False, strict=True)
        report.__enter__()
        self._reports.append(report)

    def __exit__(self, *exc: object) -> None:
        self._reports.pop().__exit__(*exc)


def no_syncs(*, include_cpu: bool | None = None, deep: bool = False) -> _NoSyncs:
    """Fail at the first host-device synchronization (a context manager or decorator).

    Args:
        include_cpu: count operations on CPU tensors (default: ``True`` without CUDA).
        deep: also watch ATen ops at the dispatch level (see :func:`detect_syncs`).

    Returns:
        A context manager, also usable as a decorator.

    Raises:
        SyncError: at the first synchronization inside the block, naming the operation, the
            ``file:line`` and the fix; the operation does not run.

    Threads started inside the block are watched too; threads that were already running are not
    (see :func:`detect_syncs`).

    >>> import torch, torchscope
    >>> with torchscope.no_syncs():
    ...     y = torch.ones(3) * 2          # fine: stays on the device
    >>> try:
    ...     with torchscope.no_syncs():
    ...         torch.ones(3).sum().item()
    ... except torchscope.SyncError as err:
    ...     print(str(err).split(" at ")[0])
    host-device synchronization inside no_syncs(): .item() (scalar read)
    """
    return _NoSyncs(include_cpu, deep)
