"""Model names -> directories through the Hugging Face cache, offline (these machines have no hub)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REV = "0123456789abcdef0123456789abcdef01234567"


def fake_hub_cache(root: Path, repo: str, files_from: Path) -> Path:
    """The layout huggingface_hub writes: models--org--name/{refs/main, snapshots/<rev>/...}."""
    repo_dir = root / ("models--" + repo.replace("/", "--"))
    snap = repo_dir / "snapshots" / REV
    shutil.copytree(files_from, snap)
    (repo_dir / "refs").mkdir(parents=True)
    (repo_dir / "refs" / "main").write_text(REV)
    return snap


def resolve_in_subprocess(names: list[str], hub: Path, cache: Path) -> list[str]:
    env = {**os.environ, "HF_HUB_CACHE": str(hub), "HF_HUB_OFFLINE": "1", "WHISPERFAST_CACHE": str(cache)}
    code = ("import json, sys\nfrom whisperfast.model.hub import resolve\nfrom whisperfast.errors import ModelLoadError\n"
            "out = []\nfor n in sys.argv[1:]:\n    try:\n        out.append(str(resolve(n)))\n"
            "    except ModelLoadError as e:\n        out.append('ERROR ' + str(e))\nprint(json.dumps(out))")
    done = subprocess.run([sys.executable, "-c", code, *names], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def test_names_and_hub_ids_resolve_from_the_offline_cache(tiny_en_dir, tmp_path):
    snap = fake_hub_cache(tmp_path / "hub", "openai/whisper-tiny.en", tiny_en_dir)
    custom = fake_hub_cache(tmp_path / "hub", "someone/whisper-tiny-custom", tiny_en_dir)
    got = resolve_in_subprocess(["tiny.en", "openai/whisper-tiny.en", "someone/whisper-tiny-custom",
                                 "small", "someone/not-cached"], tmp_path / "hub", tmp_path / "empty")
    assert got[:3] == [str(snap), str(snap), str(custom)]  # the cache wins over the packaged fallback
    assert got[3].startswith("ERROR") and "openai/whisper-small" in got[3] and "huggingface-cli download" in got[3]
    assert got[4].startswith("ERROR") and "someone/not-cached" in got[4]
    assert not (tmp_path / "empty").exists()  # nothing was converted


def test_transcribe_by_hub_id_from_the_cache(tiny_en_dir, tmp_path):
    fake_hub_cache(tmp_path / "hub", "openai/whisper-tiny.en", tiny_en_dir)
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1",
           "WHISPERFAST_CACHE": str(tmp_path / "empty")}
    done = subprocess.run([sys.executable, "-m", "whisperfast", str(ROOT / "tests/data/jfk.flac"),
                           "--model", "openai/whisper-tiny.en", "--output_format", "txt", "--output_dir",
                           str(tmp_path / "out")], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    text = (tmp_path / "out" / "jfk.txt").read_text()
    assert "ask not what your country can do for you" in text


def test_download_patterns_take_one_copy_of_the_weights():
    """On openai/whisper-large-v3's file list (as published), the patterns pick the fp16 model.safetensors,
    the configs and the tokenizer, not the fp32 shards, .bin, msgpack or h5 copies."""
    from huggingface_hub.utils import filter_repo_objects

    from whisperfast.model.hub import WEIGHT_FILES

    listing = ["added_tokens.json", "config.json", "flax_model.msgpack", "generation_config.json", "merges.txt",
               "model.fp32-00001-of-00002.safetensors", "model.fp32-00002-of-00002.safetensors",
               "model.safetensors", "model.safetensors.index.fp32.json", "normalizer.json",
               "preprocessor_config.json", "pytorch_model.bin", "pytorch_model.bin.index.fp32.json",
               "pytorch_model.fp32-00001-of-00002.bin", "special_tokens_map.json", "tf_model.h5",
               "tokenizer.json", "tokenizer_config.json", "vocab.json",
               # a sharded checkpoint's names
               "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
               "model.safetensors.index.json"]
    picked = set(filter_repo_objects(listing, allow_patterns=WEIGHT_FILES))
    weights = {f for f in picked if not f.endswith((".json", ".txt"))}
    assert weights == {"model.safetensors", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"}
    assert {"config.json", "generation_config.json", "tokenizer.json", "model.safetensors.index.json"} <= picked
