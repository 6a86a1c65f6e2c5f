"""The measurements of `benchmarks/gpu_check.py`: randomly initialised models from configs (nothing is
downloaded), a synthetic word-level tokenizer, and one function per figure.

    from gpu_parts import SHAPES, build_model, train_lora      # (benchmarks/ on sys.path)
    model = build_model(SHAPES["smollm2-135m"], "cuda")
    train_lora(model, batch=16, seq=512, steps=5)               # {"tokens_per_s": ..., "mfu": ...}

FLOPs counted per trained token: 4 x frozen params (forward + the backward to the activations; frozen
weights get no weight gradient) + 6 x trainable params + attention (fwd 2·L·T·d, causal, x3 with
backward). MFU = achieved FLOP/s / the H200's ~790 TFLOP/s dense bf16 (measured here on 8192³ matmuls).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import torch

H200_BF16_FLOPS = 790e12


@dataclass(frozen=True)
class Shape:
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    intermediate: int
    vocab: int


SHAPES = {
    "tiny": Shape(64, 2, 4, 2, 128, 512),
    "smollm2-135m": Shape(576, 30, 9, 3, 1536, 49152),
    "llama-3-8b": Shape(4096, 32, 32, 8, 14336, 128256),
}


def build_model(shape: Shape, device: str, dtype=torch.bfloat16):
    """A random Llama of this shape (SmolLM2 and Llama 3 are both Llama architectures)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=shape.vocab,
        hidden_size=shape.hidden,
        intermediate_size=shape.intermediate,
        num_hidden_layers=shape.layers,
        num_attention_heads=shape.heads,
        num_key_value_heads=shape.kv_heads,
        max_position_embeddings=4096,
        tie_word_embeddings=shape.vocab < 100_000,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    )
    torch.manual_seed(0)
    with torch.device(device):
        model = LlamaForCausalLM(config).to(dtype)
    return model.eval()


def word_tokenizer(vocab: int):
    """A fast tokenizer over words "w0".."w{vocab-1}" with a plain chat template (0 pad, 1 bos, 2 eos)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = {f"w{i}": i for i in range(vocab)}
    core = Tokenizer(models.WordLevel(words, unk_token="w3"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    core.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="w0", bos_token="w1", eos_token="w2")
    tokenizer.chat_template = (
        "{% for m in messages %}{{ m['content'] }} {% endfor %}{% if add_generation_prompt %}w4 {% endif %}"
    )
    tokenizer.padding_side = "left"
    return tokenizer


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def lora_model(model, rank: int = 16):
    """Our LoRA (`forgetless train`'s): rank r on every linear of the blocks, adapter weights in fp32."""
    from forgetless.adapters.registry import build_method
    from forgetless.train.config import TrainConfig

    return build_method(TrainConfig(data="-", output="-", rank=rank)).wrap(model)


def train_steps(model, batch: int, seq: int, steps: int, warmup: int = 2, answer: int = 8) -> dict:
    """Timed fwd+bwd+AdamW steps on random tokens, loss on the last `answer` tokens (label-only logits,
    as ForgetlessTrainer computes them). Returns tokens/s, step time, peak memory, MFU."""
    device = str(next(model.parameters()).device)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4, fused=device.startswith("cuda"))
    ids = torch.randint(5, model.config.vocab_size, (batch, seq), device=device)
    model.train()
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    times = []
    for step in range(warmup + steps):
        sync(device)
        start = time.perf_counter()
        with torch.autocast(device.split(":")[0], dtype=torch.bfloat16):  # as the Trainer's bf16=True
            logits = model(input_ids=ids, logits_to_keep=answer + 1, use_cache=False).logits[:, :-1].float()
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, -answer:].reshape(-1))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        sync(device)
        if step >= warmup:
            times.append(time.perf_counter() - start)
    step_s = statistics.median(times)
    tokens_per_s = batch * seq / step_s
    return {
        "step_s": step_s,
        "tokens_per_s": tokens_per_s,
        "mfu": tokens_per_s * flops_per_token(model, seq) / H200_BF16_FLOPS if device.startswith("cuda") else None,
        "peak_gib": torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else None,
        "trainable": sum(p.numel() for p in params),
    }


def flops_per_token(model, seq: int) -> float:
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    config = model.config
    attention = 3 * 2 * config.num_hidden_layers * seq * config.hidden_size
    return 4 * frozen + 6 * trainable + attention


def loramoe_arms(shape: Shape, device: str, batch: int, seq: int, steps: int) -> dict[str, dict]:
    """PEFT LoRA r=4 vs our stacked LoRAMoE (N=6, r=4) vs the per-expert loop, on the FFN linears."""
    from loop_loramoe import LoopLoRAMoELinear
    from peft import LoraConfig, get_peft_model

    from forgetless.adapters.loramoe import LoRAMoEConfig, inject_loramoe, loramoe_layers

    targets = ("gate_proj", "up_proj", "down_proj")
    out = {}
    for arm in ("lora", "loramoe", "loop"):
        model = build_model(shape, device)
        if arm == "lora":
            model = get_peft_model(model, LoraConfig(r=4, lora_alpha=32, target_modules=list(targets)))
        else:
            model = inject_loramoe(model, LoRAMoEConfig(num_experts=6, rank=4, alpha=32, target_modules=targets))
            for name, layer in loramoe_layers(model) if arm == "loop" else []:
                parent, _, child = name.rpartition(".")
                setattr(model.get_submodule(parent), child, LoopLoRAMoELinear.from_stacked(layer, 0.05))
        out[arm] = train_steps(model, batch, seq, steps)
        del model
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
    return out


def timed(device: str, fn) -> tuple[float, object]:
    sync(device)
    start = time.perf_counter()
    result = fn()
    sync(device)
    return time.perf_counter() - start, result


def generation(model, tokenizer, device: str, prompts: int, new_tokens: int, loop_prompts: int) -> dict:
    """Batched generation (forgetless' engine, one batch) vs a one-prompt-at-a-time loop: tokens/s."""
    from forgetless.engine.generate import generate_texts
    from forgetless.engine.sampling import SamplingConfig

    sampling = SamplingConfig(max_new_tokens=new_tokens, precision="bf16" if device != "cpu" else "fp32")
    words = [" ".join(f"w{5 + (i * 7 + j) % 400}" for j in range(32)) for i in range(prompts)]
    convs = [[{"role": "user", "content": text}] for text in words]
    generate_texts(model, tokenizer, convs[:2], sampling, batch_size=2)  # warm-up
    batched_s, answers = timed(device, lambda: generate_texts(model, tokenizer, convs, sampling, batch_size=prompts))
    loop_s, loop_answers = timed(device, lambda: generate_texts(model, tokenizer, convs[:loop_prompts], sampling, 1))
    batched_tokens = sum(len(a[0].split()) for a in answers)
    loop_tokens = sum(len(a[0].split()) for a in loop_answers)
    return {
        "batched_tokens_per_s": batched_tokens / batched_s,
        "loop_tokens_per_s": loop_tokens / loop_s,
        "ratio": (batched_tokens / batched_s) / (loop_tokens / loop_s),
    }


def shared_prefix(model, tokenizer, device: str, prompts: int, prefix_words: int, loop_prompts: int) -> dict:
    """Shared-prefix probing (one long few-shot prefix, many short questions) vs one prompt at a time."""
    from forgetless.engine.generate import generate_texts
    from forgetless.engine.prefix import generate_shared_prefix
    from forgetless.engine.sampling import SamplingConfig

    sampling = SamplingConfig(max_new_tokens=8, precision="bf16" if device != "cpu" else "fp32")
    system = " ".join(f"w{5 + j % 300}" for j in range(prefix_words))
    convs = [
        [{"role": "system", "content": system}, {"role": "user", "content": f"w{400 + i % 90} w{500 - i % 60}"}]
        for i in range(prompts)
    ]
    shared_s, _ = timed(device, lambda: generate_shared_prefix(model, tokenizer, convs, sampling, batch_size=prompts))
    loop_s, _ = timed(device, lambda: generate_texts(model, tokenizer, convs[:loop_prompts], sampling, 1))
    per_shared, per_loop = shared_s / prompts, loop_s / loop_prompts
    return {"shared_s_per_prompt": per_shared, "loop_s_per_prompt": per_loop, "ratio": per_loop / per_shared}


def mixed_adapters(model, tokenizer, device: str, prompts: int, adapters: int = 3) -> dict:
    """Rows of `adapters` LoRAs in the same batch (PEFT adapter_names) vs one adapter at a time."""
    from peft import LoraConfig, get_peft_model

    from forgetless.adapters.mixed import generate_mixed
    from forgetless.engine.generate import generate_texts
    from forgetless.engine.sampling import SamplingConfig

    names = [f"task{i}" for i in range(adapters)]
    config = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    peft_model = get_peft_model(model, config, adapter_name=names[0])
    for name in names[1:]:
        peft_model.add_adapter(name, config)
    peft_model.eval()
    sampling = SamplingConfig(max_new_tokens=16, precision="bf16" if device != "cpu" else "fp32")
    convs = [[{"role": "user", "content": f"w{10 + i} w{20 + i} w{30 + i}"}] for i in range(prompts)]
    rows = [names[i % adapters] for i in range(prompts)]
    mixed_s, _ = timed(device, lambda: generate_mixed(peft_model, tokenizer, convs, rows, sampling, batch_size=prompts))

    def one_at_a_time():
        for name in names:
            peft_model.set_adapter(name)
            mine = [c for c, r in zip(convs, rows, strict=True) if r == name]
            generate_texts(peft_model, tokenizer, mine, sampling, batch_size=prompts)

    single_s, _ = timed(device, one_at_a_time)
    return {"mixed_s": mixed_s, "one_adapter_at_a_time_s": single_s, "ratio": single_s / mixed_s}
