"""Promises 2, 4 and 5 for files: checkpoints, indexes and policy files are read with bounds —
sizes declared by an archive are believed before anything inflates, JSON has a size and
nesting limit, FIFOs and devices are never opened as policies, links out of a checkpoint's
folder are refused unread, legacy files that can only be read whole say so."""

from __future__ import annotations

import json
import os
import struct
import zipfile
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file

import torchscope
from torchscope import examples
from torchscope.checkpoint import _read
from torchscope.errors import CheckpointError, InitPolicyError

# ---------------------------------------------------------------------------------------------
# zip archives: declared sizes


def _bomb(path: Path, inflated: int) -> None:
    """A zip that looks like torch.save output whose data.pkl inflates to ``inflated`` bytes."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        with zf.open("archive/data.pkl", "w", force_zip64=True) as f:
            chunk = b"\0" * (1 << 20)
            for _ in range(inflated >> 20):
                f.write(chunk)
        zf.writestr("archive/version", "3\n")


def test_a_zip_bomb_is_refused_from_its_declared_sizes(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    # guards the bug: a small zip whose data.pkl inflates to GiBs was inflated (3.3 GB RSS),
    # then reported with a wrong message about code
    path = tmp_path / "bomb.pt"
    _bomb(path, 64 << 20)
    stored = zipfile.ZipFile(path).getinfo("archive/data.pkl").compress_size

    def no_load(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("torch.load must not run on a refused archive")

    monkeypatch.setattr(torch, "load", no_load)
    with pytest.raises(CheckpointError, match=(
            rf"^'.*bomb\.pt': its entry 'archive/data\.pkl' declares 67,108,864 bytes "
            rf"\({stored:,} stored\) — more than a torch\.save file holds .* torchscope does "
            r"not inflate it: re-save the checkpoint with torch\.save$")):
        torchscope.inspect_checkpoint(path)


def test_a_declared_pickle_over_the_limit_is_refused(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "big.pt"
    torch.save(examples.MLP().state_dict(), path)
    monkeypatch.setattr(_read, "_MAX_PICKLE_BYTES", 100)
    with pytest.raises(CheckpointError, match=r"its entry '.*data\.pkl' declares [\d,]+ bytes"):
        torchscope.inspect_checkpoint(path)


def test_an_ordinary_checkpoint_still_reads(tmp_path: Path) -> None:
    path = tmp_path / "mlp.pt"
    torch.save(examples.MLP().state_dict(), path)
    info = torchscope.inspect_checkpoint(path)
    assert info.total_numel == 7946
    assert info.findings == ()


# ---------------------------------------------------------------------------------------------
# legacy files: read whole, so said (or refused)


def test_a_legacy_file_says_it_was_read_whole(tmp_path: Path) -> None:
    path = tmp_path / "legacy.pt"
    torch.save(examples.MLP().state_dict(), path, _use_new_zipfile_serialization=False)
    info = torchscope.inspect_checkpoint(path)
    size = path.stat().st_size
    assert [(f.code, f.message) for f in info.findings] == [(
        "checkpoint-legacy-format",
        f"legacy.pt is a legacy (non-zip) torch.save file: listing it read all {size:,} bytes "
        "into memory (the zip format is memory-mapped instead)")]


def test_a_large_legacy_file_is_refused_without_reading_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # guards the bug: listing a 2 GB legacy checkpoint read all of it
    path = tmp_path / "legacy.pt"
    torch.save(examples.MLP().state_dict(), path, _use_new_zipfile_serialization=False)
    monkeypatch.setattr(_read, "_MAX_LEGACY_BYTES", 1000)

    def no_load(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("torch.load must not run")

    monkeypatch.setattr(torch, "load", no_load)
    size = path.stat().st_size
    with pytest.raises(CheckpointError, match=(
            rf"^'.*legacy\.pt' is a legacy \(non-zip\) torch\.save file of {size:,} bytes: "
            r"torch can list it only by reading all of it into memory .* torchscope reads at "
            r"most 1,000 bytes that way; re-save it in the zip format")):
        torchscope.inspect_checkpoint(path)


# ---------------------------------------------------------------------------------------------
# safetensors headers and shard indexes: JSON with limits


def _raw_safetensors(path: Path, header: str) -> None:
    raw = header.encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw)


@pytest.mark.parametrize("depth", [17, 1000, 100_000])
def test_a_deeply_nested_safetensors_header_is_one_line(tmp_path: Path, depth: int) -> None:
    # guards the bug: a nested header raised RecursionError
    path = tmp_path / "deep.safetensors"
    _raw_safetensors(path, '{"__metadata__": {"a": ' + "[" * depth + "]" * depth + "}}")
    with pytest.raises(CheckpointError, match=(
            r"^'.*deep\.safetensors' is not a valid safetensors file: its header nests arrays "
            r"or objects more than 16 levels deep; flatten it$")):
        torchscope.inspect_checkpoint(path)


def _sharded(folder: Path, *, index: dict[str, Any] | None = None) -> Path:
    folder.mkdir(exist_ok=True)
    sd = examples.MLP().state_dict()
    save_file({k: v for k, v in sd.items() if k.startswith("hidden")},
              folder / "model-00001.safetensors")
    save_file({k: v for k, v in sd.items() if k.startswith("output")},
              folder / "model-00002.safetensors")
    data = index or {
        "metadata": {"total_size": 31784},
        "weight_map": {k: "model-00001.safetensors" if k.startswith("hidden")
                       else "model-00002.safetensors" for k in sd},
    }
    path = folder / "model.safetensors.index.json"
    path.write_text(json.dumps(data) if isinstance(data, dict) else data)
    return path


@pytest.mark.parametrize("depth", [17, 100_000])
def test_a_deeply_nested_shard_index_is_one_line(tmp_path: Path, depth: int) -> None:
    path = tmp_path / "model.safetensors.index.json"
    path.write_text('{"metadata": ' + "[" * depth + "]" * depth + ', "weight_map": {}}')
    with pytest.raises(CheckpointError, match=(
            r"^'.*index\.json' is not a sharded checkpoint index: its JSON nests arrays or "
            r"objects more than 16 levels deep; flatten it$")):
        torchscope.inspect_checkpoint(path)


def test_a_5000_digit_total_size_is_a_finding(tmp_path: Path) -> None:
    # guards the bug: int() of a 5,000-digit total_size raised ValueError
    path = _sharded(tmp_path / "ck")
    data = json.loads(path.read_text())
    data["metadata"]["total_size"] = "9" * 5000
    path.write_text(json.dumps(data))
    info = torchscope.inspect_checkpoint(path)
    assert [(f.code, f.message) for f in info.findings] == [(
        "checkpoint-index-size",
        "the index's total_size 99999999999999999999… (5,000 characters) is not a byte count; "
        "its shards hold 31784 bytes of tensors")]


def test_a_shard_linking_out_of_the_folder_is_refused_unread(tmp_path: Path) -> None:
    path = _sharded(tmp_path / "ck")
    secret = tmp_path / "outside" / "secret.safetensors"
    secret.parent.mkdir()
    secret.write_bytes(b"TOP-SECRET-BYTES" * 4)
    shard = tmp_path / "ck" / "model-00002.safetensors"
    shard.unlink()
    shard.symlink_to(secret)
    with pytest.raises(CheckpointError) as info:
        torchscope.inspect_checkpoint(path)
    message = str(info.value)
    assert message == (
        f"{str(path)!r} is not a sharded checkpoint index: shard 'model-00002.safetensors' is "
        "a link to a file outside the checkpoint's folder; torchscope reads only shards inside "
        "it: copy the shard into the folder")
    assert "SECRET" not in message


def test_a_shard_linking_inside_the_folder_still_reads(tmp_path: Path) -> None:
    path = _sharded(tmp_path / "ck")
    real = tmp_path / "ck" / "blob-2"
    (tmp_path / "ck" / "model-00002.safetensors").rename(real)
    (tmp_path / "ck" / "model-00002.safetensors").symlink_to(real)
    assert torchscope.inspect_checkpoint(path).total_numel == 7946


# ---------------------------------------------------------------------------------------------
# policy files


def test_a_fifo_is_refused_as_a_policy_file(tmp_path: Path) -> None:
    # guards the bug: reading a FIFO as a policy blocked forever
    fifo = tmp_path / "policy.toml"
    os.mkfifo(fifo)
    with pytest.raises(InitPolicyError, match=(
            rf"^policy file {str(fifo)!r} is a FIFO, not a regular file; give the path of a "
            r"\.toml file$")):
        torchscope.load_policy(fifo)


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="needs /dev/zero")
def test_a_device_is_refused_as_a_policy_file() -> None:
    # guards the bug: /dev/zero was read until MemoryError
    with pytest.raises(InitPolicyError, match=(
            r"^policy file '/dev/zero' is a device or socket, not a regular file")):
        torchscope.apply_init(examples.MLP(), Path("/dev/zero"))


def test_a_folder_is_refused_as_a_policy_file(tmp_path: Path) -> None:
    with pytest.raises(InitPolicyError, match=r"is a folder, not a regular file"):
        torchscope.load_policy(tmp_path)


def test_a_huge_policy_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text("# " + "x" * (1 << 20) + "\n")
    with pytest.raises(InitPolicyError, match=(
            rf"^policy file {str(path)!r} is 1,048,579 bytes \(at most 1,048,576\); a policy "
            r"is a few \[\[rule\]\] tables$")):
        torchscope.load_policy(path)


def test_a_deeply_nested_policy_file_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text("a = " + "[" * 100_000 + "]" * 100_000 + "\n")
    with pytest.raises(InitPolicyError, match=(
            rf"^policy file {str(path)!r} nests arrays or tables too deeply to read; a policy "
            r"is a flat list of \[\[rule\]\] tables$")):
        torchscope.load_policy(path)
