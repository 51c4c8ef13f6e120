"""load_model(spec) -> (model, tokenizer): the embedded SmolLM2 default, tiny test models, or any local HF checkpoint."""
from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
from pathlib import Path

import torch

log = logging.getLogger(__name__)

SUPPORTED_FAMILIES = ("llama", "qwen2", "mistral")  # decoder-only, RoPE, (cos, sin) passed to every layer
EMBEDDED_SPECS = ("smollm2-135m", "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b")  # real models in PyPI packages (sdtp_lib.embedded)
BUILTIN_SPECS = (*EMBEDDED_SPECS, "tiny-qwen2", "tiny-llama")


class UnsupportedModelError(ValueError):
    pass


def project_root() -> Path | None:
    """The source checkout this library lives in (has pyproject.toml), or None for a plain install."""
    root = Path(__file__).resolve().parent.parent
    return root if (root / "pyproject.toml").exists() else None


def cache_dir() -> Path:
    """Where converted weights are cached: $SDTP_CACHE, else <checkout>/checkpoints/_cache, else ~/.cache/sdtp."""
    if os.environ.get("SDTP_CACHE"):
        return Path(os.environ["SDTP_CACHE"])
    root = project_root()
    return root / "checkpoints" / "_cache" if root else Path.home() / ".cache" / "sdtp"


def load_model(spec: str = "smollm2-135m", dtype: torch.dtype | str | None = None, device: str | None = None,
               attn_implementation: str = "sdpa", seed: int = 0):
    """Load `spec` and return (model, tokenizer), in eval mode.

    spec: "smollm2-135m" | "qwen2.5-coder-0.5b" | "qwen2.5-coder-1.5b" | "tiny-qwen2" | "tiny-llama" | a local HF directory | a hub id
    (needs network).
    dtype: torch dtype or name ("float32", "bfloat16", "float16"); default float32 on CPU, bfloat16 on GPU.
    attn_implementation: one of ATTN_IMPLEMENTATIONS ("sdpa" default, "eager", "flash_attention_2",
    "flash_attention_4"); an unavailable one is refused (check_attn), never switched silently.
    """
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = _dtype(dtype, device)
    check_attn(attn_implementation, device.split(":")[0])
    if spec in ("tiny-qwen2", "tiny-llama"):
        model, tok = _tiny(spec.split("-")[1], seed, attn_implementation), tiny_tokenizer()
    elif spec in EMBEDDED_SPECS:
        model, tok = _embedded(spec, attn_implementation)
    else:
        model, tok = _hf(spec, dtype, attn_implementation)
    check_supported(model)
    model.config.sdtp_model_id = spec
    model = model.to(device=device, dtype=dtype).eval()
    return model, tok


def resolve_device(device: str | None = "auto") -> str:
    """The notebooks' `device` parameter: "auto"/None = the GPU when there is one, else "cpu"; "cuda" without a
    GPU is refused with a clear error."""
    if device in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if not isinstance(device, str) or device.split(":")[0] not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda[:N]', got {device!r}")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} was asked for but CUDA is not available on this machine")
    return device


def check_supported(model) -> None:
    mt = getattr(model.config, "model_type", None)
    if mt not in SUPPORTED_FAMILIES:
        raise UnsupportedModelError(f"unsupported model family {mt!r}: SDTP here supports {', '.join(SUPPORTED_FAMILIES)} "
                                    "(decoder-only models whose layers take position_embeddings=(cos, sin))")


def cache_kwarg(model) -> str:
    """The name of forward's KV-cache argument: "cache" from transformers 5.2x on ("past_key_values" still works
    there with a FutureWarning and is removed in 5.40), "past_key_values" before (5.17)."""
    import inspect
    return "cache" if "cache" in inspect.signature(type(model).forward).parameters else "past_key_values"


def output_cache(out):
    """The KV cache a forward returned (`out.cache`, or `out.past_key_values` before transformers renamed it)."""
    cache = getattr(out, "cache", None)
    return cache if cache is not None else out.past_key_values


def config_fingerprint(config) -> str:
    """Short hash of the shape-defining fields: a predictor trained for one model refuses another."""
    keys = ("model_type", "hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
            "intermediate_size", "vocab_size")
    blob = json.dumps({k: getattr(config, k, None) for k in keys}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


# ------------------------------------------------------------------- helpers
def _dtype(dtype, device) -> torch.dtype:
    if dtype is None:
        return torch.float32 if str(device).startswith("cpu") else torch.bfloat16
    if isinstance(dtype, torch.dtype):
        return dtype
    names = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
             "float16": torch.float16, "fp16": torch.float16}
    if dtype not in names:
        raise ValueError(f"unknown dtype {dtype!r}; use one of {sorted(names)}")
    return names[dtype]


# attention backends: transformers' own implementations of each (its AttentionInterface); flash_attention_4 is
# flash-attn 4 (CuTe DSL, Hopper and newer), which transformers calls through flash_attn.cute.flash_attn_func
ATTN_IMPLEMENTATIONS = ("sdpa", "eager", "flash_attention_2", "flash_attention_4")
_ATTN_INSTALL = {
    "flash_attention_2": "pip install flash-attn --no-build-isolation",
    "flash_attention_4": "pip install '.[fa4]' (flash-attn-4==4.0.0b36 with its CuTe DSL wheels; see docs/speed.md)",
}


def check_attn(impl: str, device: str | None = None) -> None:
    """Refuse an attention backend that is unknown, not installed, or (flash-attn 4) asked for off a CUDA GPU,
    saying how to install it. Never switched silently to another backend."""
    if impl not in ATTN_IMPLEMENTATIONS:
        raise ValueError(f"attn_implementation {impl!r} is not supported; use one of {ATTN_IMPLEMENTATIONS}")
    if impl == "flash_attention_2" and not _has_distribution("flash_attn", "flash-attn"):
        raise ImportError(f"attn_implementation='flash_attention_2' needs the flash-attn package, which is not "
                          f"installed ({_ATTN_INSTALL[impl]}); use 'sdpa' instead")
    if impl == "flash_attention_4":
        if not _has_distribution("flash_attn", "flash-attn-4"):
            raise ImportError(f"attn_implementation='flash_attention_4' needs flash-attn 4, which is not installed: "
                              f"{_ATTN_INSTALL[impl]}; or use 'sdpa'")
        if (device or ("cuda" if torch.cuda.is_available() else "cpu")) != "cuda":
            raise ValueError("attn_implementation='flash_attention_4' runs on a CUDA GPU (Hopper or newer) only; "
                             "on this device use 'sdpa'")


def _has_distribution(module: str, dist: str) -> bool:
    """`module` is importable and installed by the distribution `dist` (flash-attn 2 and 4 share `flash_attn`)."""
    from importlib.metadata import packages_distributions
    if importlib.util.find_spec(module) is None:
        return False
    return dist in {d.lower().replace("_", "-") for d in packages_distributions().get(module, [])}


def tiny_config(family: str):
    """A few-layer random model for tests (hidden 64), built in code: no download."""
    from transformers import LlamaConfig, Qwen2Config
    common = dict(vocab_size=len(_TINY_SPECIALS) + 256, hidden_size=64, intermediate_size=128, num_hidden_layers=4,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096, rms_norm_eps=1e-6,
                  bos_token_id=256, eos_token_id=257, pad_token_id=258, tie_word_embeddings=False)
    if family == "qwen2":
        return Qwen2Config(**common, use_sliding_window=False)
    if family == "llama":
        return LlamaConfig(**common)
    raise UnsupportedModelError(f"no tiny config for family {family!r}; use 'qwen2' or 'llama'")


def _tiny(family: str, seed: int, attn: str):
    from transformers import AutoModelForCausalLM
    cfg = tiny_config(family)
    cfg._attn_implementation = attn
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(cfg, attn_implementation=attn)
    return model


_TINY_SPECIALS = ("<s>", "</s>", "<pad>", "<|im_start|>", "<|im_end|>")


def tiny_tokenizer():
    """Byte-level tokenizer (256 bytes + specials) built in code for the tiny models."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast
    byte_chars = pre_tokenizers.ByteLevel.alphabet()
    vocab = {c: i for i, c in enumerate(sorted(byte_chars))}
    vocab.update({s: 256 + i for i, s in enumerate(_TINY_SPECIALS)})
    tk = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    tk.add_special_tokens(list(_TINY_SPECIALS))
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    tok.chat_template = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
                         "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    return tok


def _embedded(spec: str, attn: str):
    """An embedded GGUF model (sdtp_lib.embedded), dequantised once and cached as float32 safetensors. Processes that
    load it at once on a cold cache (suite workers, data-parallel ranks) take turns: one converts, the others wait
    for its lock and then load the cache."""
    from filelock import FileLock
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from .embedded import EMBEDDED, file_sha256, gguf_path
    emb = EMBEDDED[spec]
    gguf = gguf_path(spec, cache_dir())
    stamp = (emb.sha256 or file_sha256(gguf))[:8]  # the cache follows the file's content (pinned: checked once)
    cached = cache_dir() / f"{spec}-instruct-{stamp}"
    if not _complete(cached):  # a complete cache is read without the lock (it may sit on a read-only disk)
        with FileLock(str(cached.with_name(f".{cached.name}.lock"))):
            if not _complete(cached):  # nobody converted it while this process waited
                return _convert(gguf, cached, attn)
    log.info("loading cached %s weights from %s", spec, cached)
    tok = AutoTokenizer.from_pretrained(cached)
    return AutoModelForCausalLM.from_pretrained(cached, dtype=torch.float32, attn_implementation=attn), tok


def _convert(gguf: Path, cached: Path, attn: str):
    """The GGUF dequantised to float32, saved to `cached` (a temp folder renamed into place: a half-written cache is
    never picked up); returns (model, tokenizer)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    log.info("converting %s (first load; cached under %s)", gguf, cached)
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32,
                                                 attn_implementation=attn)
    # the weights are dequantised float32 now: drop the GGUF marker so the model saves as plain safetensors
    model.hf_quantizer, model.is_quantized = None, False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = cached.with_name(f".{cached.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)  # left by a process killed while converting
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    if cached.exists():  # a broken earlier cache (no weights): replace it
        shutil.rmtree(cached)
    tmp.rename(cached)
    return model, tok


def _complete(cached: Path) -> bool:
    return (cached / "config.json").exists() and (cached / "model.safetensors").exists()


def _hf(spec: str, dtype, attn: str):
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    is_local = Path(spec).expanduser().exists()
    if not is_local and ("/" not in spec or spec.startswith((".", "/", "~"))):
        raise UnsupportedModelError(f"unknown model spec {spec!r}: not a local directory; use one of "
                                    f"{BUILTIN_SPECS}, a local HF checkpoint directory, or a hub id (org/name)")
    path = str(Path(spec).expanduser()) if is_local else spec
    config = AutoConfig.from_pretrained(path)
    if getattr(config, "model_type", None) not in SUPPORTED_FAMILIES:
        raise UnsupportedModelError(f"unsupported model family {config.model_type!r} in {spec}: "
                                    f"SDTP here supports {', '.join(SUPPORTED_FAMILIES)}")
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, attn_implementation=attn)
    return model, AutoTokenizer.from_pretrained(path)
