"""Parsing initialization policies: selectors, initializer strings, TOML files, name matching.

Private to :mod:`torchscope.init` (which re-exports :func:`load_policy`). Initializer strings are
parsed with :mod:`ast` and only literal arguments are accepted: nothing is ever evaluated.

>>> parse_initializer("normal(std=0.02)", "example").text
'normal(std=0.02)'
"""

from __future__ import annotations

import ast
import difflib
import fnmatch
import inspect
import math
import os
import re
import signal
import stat
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

from torch import nn

from torchscope.errors import InitPolicyError

__all__ = [
    "INITIALIZERS",
    "SPECIAL",
    "Initializer",
    "Matcher",
    "Policy",
    "Rule",
    "Selector",
    "load_policy",
    "parse_initializer",
    "parse_policy",
    "rule_where",
]

#: initializer name (as written in a policy) -> ``torch.nn.init`` function name
INITIALIZERS: dict[str, str] = {
    name.removesuffix("_"): name
    for name in (
        "constant_",
        "dirac_",
        "eye_",
        "kaiming_normal_",
        "kaiming_uniform_",
        "normal_",
        "ones_",
        "orthogonal_",
        "sparse_",
        "trunc_normal_",
        "uniform_",
        "xavier_normal_",
        "xavier_uniform_",
        "zeros_",
    )
}
SPECIAL = ("keep", "reset")
_RULE_KEYS = ("match", "type", "role", "init")

#: what a policy may be: a mapping ``selector -> initializer`` or a sequence of rules
Policy = Union[Mapping[Any, Any], Sequence[Any], "os.PathLike[str]", str]


# ---------------------------------------------------------------------------------------------
# parsing rules and initializers


@dataclass(frozen=True, slots=True)
class Initializer:
    """A parsed initializer: a ``torch.nn.init`` function with literal arguments, or not."""

    kind: str  # "fn" | "callable" | "reset" | "keep"
    text: str
    fn: Callable[..., Any] | None = None
    args: tuple[Any, ...] = ()
    kwargs: tuple[tuple[str, Any], ...] = ()

    @property
    def short(self) -> str:
        return self.text.split("(", 1)[0]


@dataclass(frozen=True, slots=True)
class Selector:
    """A parsed selector: a name glob, a regular expression or a module type (+ role)."""

    kind: str  # "glob" | "regex" | "type"
    text: str
    pattern: str = ""
    regex: re.Pattern[str] | None = None
    module_type: type[nn.Module] | str | None = None
    role: str | None = None


@dataclass(frozen=True, slots=True)
class Rule:
    """One rule of a policy: its position, what it selects and how it initializes."""

    index: int
    selector: Selector
    init: Initializer


def rule_where(index: int, selector: object) -> str:
    shown = repr(selector)
    if len(shown) > 80:
        shown = shown[:79] + "…"
    return f"policy rule #{index} ({shown})"


def parse_initializer(spec: object, where: str) -> Initializer:
    if callable(spec) and not isinstance(spec, str):
        try:
            sig = inspect.signature(spec)
        except (TypeError, ValueError):  # builtins without a signature: trust them
            sig = None
        if sig is not None:
            try:
                sig.bind(object())
            except TypeError as err:
                raise InitPolicyError(
                    f"{where}: callable initializer {_callable_name(spec)} cannot be called with "
                    f"one tensor ({err}); give a function f(tensor) that fills it in place"
                ) from None
        return Initializer("callable", f"callable {_callable_name(spec)}", fn=spec)
    if not isinstance(spec, str):
        raise InitPolicyError(
            f"{where}: initializer {spec!r} is a {type(spec).__name__}; give a name such as "
            "'normal(std=0.02)', 'reset', 'keep' or a callable taking the tensor"
        )
    text = spec.strip()
    if len(text) > _MAX_INIT_CHARS:
        raise InitPolicyError(
            f"{where}: initializer {text[:40]!r}… is {len(text):,} characters long (at most "
            f"{_MAX_INIT_CHARS}); write a name with a few literal arguments, e.g. "
            "'normal(std=0.02)'"
        )
    try:
        node = ast.parse(text, mode="eval").body
    except (SyntaxError, RecursionError, MemoryError, ValueError):
        raise InitPolicyError(
            f"{where}: initializer {spec!r} is not a name or a call with literal arguments; "
            "write e.g. 'xavier_uniform' or \"kaiming_normal(mode='fan_out')\""
        ) from None
    call_args: list[ast.expr] = []
    call_kwargs: list[ast.keyword] = []
    if isinstance(node, ast.Call):
        func = node.func
        call_args, call_kwargs = list(node.args), list(node.keywords)
    else:
        func = node
    if not isinstance(func, ast.Name):
        raise InitPolicyError(
            f"{where}: initializer {spec!r} is not a plain name or call; write e.g. "
            "'normal(std=0.02)' (torch.nn.init names, without a module prefix)"
        )
    name = func.id.removesuffix("_")
    if name in SPECIAL:
        if call_args or call_kwargs:
            raise InitPolicyError(f"{where}: {name!r} takes no arguments; write just {name!r}")
        return Initializer(name, name)
    if name not in INITIALIZERS:
        close = difflib.get_close_matches(name, [*INITIALIZERS, *SPECIAL], n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise InitPolicyError(
            f"{where}: unknown initializer {func.id!r}; {hint}choose one of "
            f"{', '.join(sorted(INITIALIZERS))}, 'reset', 'keep', or pass a callable"
        )
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    try:
        for a in call_args:
            if isinstance(a, ast.Starred):
                raise ValueError("*args")
            args.append(ast.literal_eval(a))
        for kw in call_kwargs:
            if kw.arg is None:
                raise ValueError("**kwargs")
            kwargs[kw.arg] = ast.literal_eval(kw.value)
    except ValueError:
        raise InitPolicyError(
            f"{where}: initializer {spec!r} has an argument that is not a literal (a number, "
            "string, True/False/None); write e.g. 'uniform(-0.1, 0.1)'"
        ) from None
    fn = getattr(nn.init, INITIALIZERS[name])
    params = list(inspect.signature(fn).parameters)
    if "generator" in kwargs or params[0] in kwargs:
        bad = "generator" if "generator" in kwargs else params[0]
        raise InitPolicyError(
            f"{where}: initializer {spec!r} may not set {bad!r}; use apply_init(seed=...) for "
            "reproducible results"
        )
    try:
        inspect.signature(fn).bind(None, *args, **kwargs)
    except TypeError as err:
        takes = ", ".join(p for p in params[1:] if p != "generator") or "no arguments"
        raise InitPolicyError(
            f"{where}: bad arguments in initializer {spec!r} ({err}); {name} takes {takes}"
        ) from None
    bound = inspect.signature(fn).bind(None, *args, **kwargs)
    bound.apply_defaults()
    _check_values(name, bound.arguments, spec, where)
    shown = [repr(a) for a in args] + [f"{k}={v!r}" for k, v in kwargs.items()]
    canon = f"{name}({', '.join(shown)})" if shown else name
    return Initializer("fn", canon, fn=fn, args=tuple(args), kwargs=tuple(kwargs.items()))


#: the longest initializer string accepted (a name and a few literal arguments)
_MAX_INIT_CHARS = 500

#: per initializer, (argument, lowest value allowed) for arguments that must not be negative
_NON_NEGATIVE = {
    "normal": ("std",), "trunc_normal": ("std",), "sparse": ("sparsity", "std"),
    "xavier_uniform": ("gain",), "xavier_normal": ("gain",),
}
#: per initializer, (low, high) argument pairs that must be ordered (low < high)
_ORDERED = {"uniform": ("a", "b"), "trunc_normal": ("a", "b")}


def _check_values(name: str, bound: Mapping[str, Any], spec: object, where: str) -> None:
    """Refuse argument values an initializer would reject or turn into garbage: infinite or
    NaN numbers, negative spreads, bounds in the wrong order, a sparsity outside [0, 1]."""
    values = {k: v for k, v in bound.items() if k != "tensor" and v is not None}
    for key, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if isinstance(value, float) and not math.isfinite(value):
            raise InitPolicyError(
                f"{where}: initializer {spec!r} has {key}={value!r}; give a finite number"
            )
    for key in _NON_NEGATIVE.get(name, ()):
        value = values.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
            raise InitPolicyError(
                f"{where}: initializer {spec!r} has {key}={value!r}; {key} cannot be negative"
            )
    if name == "sparse":
        value = values.get("sparsity")
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 1:
            raise InitPolicyError(
                f"{where}: initializer {spec!r} has sparsity={value!r}; give a fraction in "
                "[0, 1]"
            )
    pair = _ORDERED.get(name)
    if pair is not None:
        low, high = values.get(pair[0]), values.get(pair[1])
        if (isinstance(low, (int, float)) and isinstance(high, (int, float))
                and not low <= high):
            raise InitPolicyError(
                f"{where}: initializer {spec!r} has {pair[0]}={low!r} > {pair[1]}={high!r}; "
                f"give {pair[0]} < {pair[1]}, e.g. '{name}(-0.1, 0.1)'"
            )


def _callable_name(fn: object) -> str:
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None)
    if isinstance(fn, nn.Module) or name is None:
        name = type(fn).__name__
    return str(name)


def _type_selector(module_type: object, role: object, where: str) -> Selector:
    if isinstance(module_type, type):
        if not issubclass(module_type, nn.Module):
            raise InitPolicyError(
                f"{where}: module type {module_type.__name__} is not an nn.Module subclass; give "
                "a module class such as nn.Linear or its name 'Linear'"
            )
        tname = module_type.__name__
    elif isinstance(module_type, str) and module_type.strip():
        tname = module_type = module_type.strip()
    else:
        raise InitPolicyError(
            f"{where}: module type {module_type!r} is neither a module class nor a class name; "
            "give nn.Linear or 'Linear'"
        )
    if role is not None and (not isinstance(role, str) or not role or "." in role):
        raise InitPolicyError(
            f"{where}: role {role!r} is not a parameter name on the module; give e.g. 'weight' "
            "or 'bias' (no dots)"
        )
    text = f"type:{tname}" + (f":{role}" if role else "")
    return Selector("type", text, module_type=module_type, role=role or None)


def _parse_selector(key: object, where: str) -> Selector:
    if isinstance(key, str):
        if key.startswith("re:"):
            if len(key) > _MAX_PATTERN_CHARS:
                raise InitPolicyError(
                    f"{where[:60]}…: a pattern of {len(key):,} characters (at most "
                    f"{_MAX_PATTERN_CHARS}); write a shorter pattern"
                )
            try:
                regex = re.compile(key[3:])
            except (RecursionError, OverflowError, MemoryError):
                raise InitPolicyError(
                    f"{where}: the pattern nests too deeply to compile; write a simpler one"
                ) from None
            except re.error as err:
                raise InitPolicyError(
                    f"{where}: {key!r} is not a valid regular expression ({err}); fix the "
                    "pattern after 're:'"
                ) from None
            return Selector("regex", key, pattern=key[3:], regex=regex)
        if key.startswith("type:"):
            tname, _, role = key[5:].partition(":")
            return _type_selector(tname, role or None, where)
        if not key:
            raise InitPolicyError(f"{where}: an empty pattern matches nothing; write e.g. '*.bias'")
        if len(key) > _MAX_PATTERN_CHARS:
            raise InitPolicyError(
                f"{where[:60]}…: a pattern of {len(key):,} characters (at most "
                f"{_MAX_PATTERN_CHARS}); write a shorter pattern"
            )
        return Selector("glob", key, pattern=key)
    if isinstance(key, type):
        return _type_selector(key, None, where)
    if isinstance(key, (tuple, list)) and len(key) == 2:
        return _type_selector(key[0], key[1], where)
    raise InitPolicyError(
        f"{where}: selector {key!r} is not a pattern ('*.weight', 're:...', 'type:Linear'), a "
        "module class or a (module class, role) pair"
    )


def _parse_rule_dict(index: int, rule: Mapping[Any, Any]) -> tuple[object, object]:
    where = f"policy rule #{index}"
    unknown = [k for k in rule if k not in _RULE_KEYS]
    if unknown:
        raise InitPolicyError(
            f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; a rule has 'match' (a "
            "name pattern) or 'type' (a module type) with optional 'role', and 'init'"
        )
    if "init" not in rule:
        raise InitPolicyError(f"{where} ({dict(rule)!r}) has no 'init'; add e.g. init = 'zeros'")
    if ("match" in rule) == ("type" in rule):
        raise InitPolicyError(
            f"{where} ({dict(rule)!r}) needs exactly one of 'match' (a name pattern) and 'type' "
            "(a module type)"
        )
    if "match" in rule:
        if "role" in rule:
            raise InitPolicyError(
                f"{where}: 'role' goes with 'type', not with 'match'; put the parameter name in "
                "the pattern instead ('*.weight')"
            )
        return rule["match"], rule["init"]
    return (rule["type"], rule.get("role")), rule["init"]


def parse_policy(policy: object) -> list[Rule]:
    if isinstance(policy, os.PathLike) or (
        isinstance(policy, str) and policy.endswith(".toml")
    ):
        policy = load_policy(policy)
    pairs: list[tuple[object, object]] = []
    if isinstance(policy, Mapping):
        pairs = list(policy.items())
    elif isinstance(policy, Sequence) and not isinstance(policy, (str, bytes)):
        for index, item in enumerate(policy):
            if isinstance(item, Mapping):
                pairs.append(_parse_rule_dict(index, item))
            elif isinstance(item, (tuple, list)) and len(item) == 2:
                pairs.append((item[0], item[1]))
            elif isinstance(item, (tuple, list)) and len(item) == 3:
                pairs.append(((item[0], item[1]), item[2]))
            else:
                raise InitPolicyError(
                    f"policy rule #{index} ({item!r}) is not a (selector, initializer) pair, a "
                    "(module type, role, initializer) triple or a dict with 'match'/'type' and "
                    "'init'"
                )
    else:
        raise InitPolicyError(
            f"policy {policy!r} is a {type(policy).__name__}; give a dict such as "
            "{'*.weight': 'xavier_uniform', '*.bias': 'zeros'}, a list of rules or a TOML path"
        )
    rules: list[Rule] = []
    for index, (key, init) in enumerate(pairs):
        where = rule_where(index, key)
        rules.append(Rule(index, _parse_selector(key, where), parse_initializer(init, where)))
    return rules


# ---------------------------------------------------------------------------------------------
# policy files


def load_policy(path: str | os.PathLike[str]) -> list[dict[str, str]]:
    """Read a TOML policy file: an array of ``[[rule]]`` tables.

    Each rule has ``match`` (a name glob or ``re:`` pattern) or ``type`` (a module class name)
    with an optional ``role``, and ``init`` (an initializer string)::

        [[rule]]
        match = "*.weight"
        init = "normal(std=0.02)"

        [[rule]]
        type = "Linear"
        role = "bias"
        init = "zeros"

    Reading TOML uses the standard library's ``tomllib`` (Python 3.11+); on Python 3.10 the
    ``tomli`` package is used when installed.

    Args:
        path: the ``.toml`` file.

    Returns:
        The rules in file order, as dicts that :func:`apply_init` accepts as its policy.

    Raises:
        InitPolicyError: the file is missing, is not TOML, has keys other than ``rule``, or a rule
            is malformed (its number is named). Initializer strings are checked by
            :func:`apply_init`.

    >>> import pathlib, tempfile
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "policy.toml"
    >>> _ = p.write_text('[[rule]]\\nmatch = "*.bias"\\ninit = "zeros"\\n')
    >>> load_policy(p)
    [{'match': '*.bias', 'init': 'zeros'}]
    """
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        try:
            import tomli as tomllib
        except ModuleNotFoundError:
            raise InitPolicyError(
                f"reading policy file {str(path)!r} needs Python 3.11+ (stdlib tomllib) or the "
                "tomli package on Python 3.10: pip install tomli"
            ) from None
    if not isinstance(path, (str, os.PathLike)) or isinstance(path, bytes):
        raise InitPolicyError(
            f"load_policy: path = {type(path).__name__} is not a file path; give the path of a "
            ".toml file as a str or pathlib.Path"
        )
    file = Path(path)
    try:
        data = tomllib.loads(_read_policy_text(file))
    except FileNotFoundError:
        raise InitPolicyError(
            f"policy file {str(file)!r} does not exist; give the path of a .toml file"
        ) from None
    except (OSError, UnicodeDecodeError) as err:
        raise InitPolicyError(f"cannot read policy file {str(file)!r}: {err}") from None
    except (RecursionError, MemoryError):
        raise InitPolicyError(
            f"policy file {str(file)!r} nests arrays or tables too deeply to read; a policy "
            "is a flat list of [[rule]] tables"
        ) from None
    except tomllib.TOMLDecodeError as err:
        raise InitPolicyError(
            f"policy file {str(file)!r} is not valid TOML ({err}); rules are [[rule]] tables "
            "with match/type, role and init"
        ) from None
    extra = [k for k in data if k != "rule"]
    if extra:
        raise InitPolicyError(
            f"policy file {str(file)!r} has unknown top-level key(s) "
            f"{', '.join(map(repr, extra))}; it holds only [[rule]] tables"
        )
    rules = data.get("rule", [])
    if not isinstance(rules, list) or not rules:
        raise InitPolicyError(
            f"policy file {str(file)!r} has no [[rule]] tables; add e.g.\n"
            '[[rule]]\nmatch = "*.bias"\ninit = "zeros"'
        )
    out: list[dict[str, str]] = []
    for index, rule in enumerate(rules):
        if not isinstance(rule, dict):
            raise InitPolicyError(
                f"policy file {str(file)!r}: rule #{index} is not a table; write [[rule]] tables"
            )
        for key, value in rule.items():
            if not isinstance(value, str):
                raise InitPolicyError(
                    f"policy file {str(file)!r}: rule #{index} {key} = {value!r} is a "
                    f"{type(value).__name__}; quote it as a string"
                )
        try:
            _parse_rule_dict(index, rule)
        except InitPolicyError as err:
            raise InitPolicyError(f"policy file {str(file)!r}: {err}") from None
        out.append(dict(rule))
    return out


#: the largest policy file read (a policy is a few rules)
MAX_POLICY_BYTES = 1 << 20


def _read_policy_text(file: Path) -> str:
    """The text of a policy file, read only when it is a regular file of at most
    :data:`MAX_POLICY_BYTES` (a FIFO would block, ``/dev/zero`` never ends)."""
    info = os.stat(file)
    if not stat.S_ISREG(info.st_mode):
        kind = ("a folder" if stat.S_ISDIR(info.st_mode) else "a FIFO"
                if stat.S_ISFIFO(info.st_mode) else "a device or socket")
        raise InitPolicyError(
            f"policy file {str(file)!r} is {kind}, not a regular file; give the path of a .toml "
            "file"
        )
    if info.st_size > MAX_POLICY_BYTES:
        raise InitPolicyError(
            f"policy file {str(file)!r} is {info.st_size:,} bytes (at most "
            f"{MAX_POLICY_BYTES:,}); a policy is a few [[rule]] tables"
        )
    fd = os.open(file, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(fd, "rb") as handle:
        data = handle.read(MAX_POLICY_BYTES + 1)
    if len(data) > MAX_POLICY_BYTES:
        raise InitPolicyError(
            f"policy file {str(file)!r} is more than {MAX_POLICY_BYTES:,} bytes; a policy is a "
            "few [[rule]] tables"
        )
    return data.decode("utf-8")


# ---------------------------------------------------------------------------------------------
# matching


def _class_names(cls: type) -> set[str]:
    names: set[str] = set()
    for c in cls.__mro__:
        names.update((c.__name__, c.__qualname__, f"{c.__module__}.{c.__qualname__}"))
        if c.__module__.startswith("torch.nn.modules."):
            names.update((f"torch.nn.{c.__qualname__}", f"nn.{c.__qualname__}"))
    return names


class Matcher:
    """Tests names against selectors; caches module class names."""

    def __init__(self, modules: Mapping[str, nn.Module]) -> None:
        self._modules = modules
        self._names: dict[type, set[str]] = {}

    def matches(self, sel: Selector, name: str) -> bool:
        if sel.kind == "glob":
            if fnmatch.fnmatchcase(name, sel.pattern):
                return True
            return sel.pattern.startswith("*.") and "." not in name and fnmatch.fnmatchcase(
                "." + name, sel.pattern
            )
        if sel.kind == "regex":
            assert sel.regex is not None
            return _search(sel, name)
        path, _, role = name.rpartition(".")
        if sel.role is not None and not fnmatch.fnmatchcase(role, sel.role):
            return False
        module = self._modules[path]
        if isinstance(sel.module_type, type):
            return isinstance(module, sel.module_type)
        cls = type(module)
        if cls not in self._names:
            self._names[cls] = _class_names(cls)
        return sel.module_type in self._names[cls]


# ---------------------------------------------------------------------------------------------
# regular expressions that cannot hang the run

#: seconds one regular expression may take on one name before the policy is refused
REGEX_TIMEOUT = 1.0
_MAX_PATTERN_CHARS = 1000


class _RegexTimeout(Exception):
    pass


def _search(sel: Selector, name: str) -> bool:
    """``sel.regex.search(name)``, stopped after :data:`REGEX_TIMEOUT` seconds (a pattern with
    nested repeats such as ``^(a+)+$`` backtracks exponentially on a long name). The timer is
    a ``SIGALRM`` interval timer, so it works on the main thread of Unix; elsewhere patterns
    with nested unbounded repeats are refused up front."""
    assert sel.regex is not None
    if not _can_time():
        if _nested_repeat(sel.pattern):
            raise InitPolicyError(
                f"init selector {sel.text!r} nests unbounded repeats, which can take "
                "exponential time, and no timer is available off the main thread; rewrite it "
                "without a repeat inside a repeat (e.g. '^a+$' for '^(a+)+$')"
            )
        return sel.regex.search(name) is not None
    with _deadline(REGEX_TIMEOUT):
        try:
            return sel.regex.search(name) is not None
        except _RegexTimeout:
            pass
    shown = name if len(name) <= 60 else name[:59] + "…"
    raise InitPolicyError(
        f"init selector {sel.text!r} took more than {REGEX_TIMEOUT:g} s on the name "
        f"{shown!r} (catastrophic backtracking); rewrite it without a repeat inside a repeat, "
        "or use a glob such as '*.weight'"
    )


def _can_time() -> bool:
    return (hasattr(signal, "setitimer") and hasattr(signal, "SIGALRM")
            and threading.current_thread() is threading.main_thread())


@contextmanager
def _deadline(seconds: float) -> Iterator[None]:
    """Raise :class:`_RegexTimeout` in the block after ``seconds`` (main thread, Unix); the
    previous handler and any running interval timer come back."""

    def on_alarm(signum: int, frame: object) -> None:
        raise _RegexTimeout

    previous = signal.signal(signal.SIGALRM, on_alarm)
    left, interval = signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if left:  # someone else's timer was running: let it go on
            signal.setitimer(signal.ITIMER_REAL, left, interval)


def _nested_repeat(pattern: str) -> bool:
    """True when an unbounded repeat contains another repeat or an alternation."""
    try:
        from re import _parser as sre_parse  # type: ignore[attr-defined]
    except ImportError:  # pragma: no cover - older Python
        import sre_parse
    try:
        tree = sre_parse.parse(pattern)
    except Exception:
        return True

    repeats = {sre_parse.MAX_REPEAT, sre_parse.MIN_REPEAT}
    stack: list[tuple[Any, bool]] = [(tree, False)]
    while stack:
        node, inside = stack.pop()
        for op, av in node:
            if op in repeats:
                _, high, sub = av
                unbounded = high == sre_parse.MAXREPEAT or high > 1
                if inside and unbounded:
                    return True
                stack.append((sub, inside or unbounded))
            elif op is sre_parse.BRANCH:
                if inside:
                    return True
                stack.extend((b, inside) for b in av[1])
            elif op is sre_parse.SUBPATTERN:
                stack.append((av[-1], inside))
            elif op in (sre_parse.ASSERT, sre_parse.ASSERT_NOT):
                stack.append((av[1], inside))
    return False
