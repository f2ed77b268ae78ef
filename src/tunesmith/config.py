"""The project config: one YAML file, typed and loud.

Every section forbids unknown keys (a misspelled key is an error that names it and suggests the right one,
never a silently ignored setting) and every field carries a description, which feeds ``--help``,
``tunesmith config schema`` and the API docs. Where a field maps 1:1 to a peft/TRL field it keeps that name.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tunesmith.errors import TunesmithError
from tunesmith.yamlsafe import YAMLSyntaxError, load_yaml, load_yaml_file

Task = Literal["chat", "completion", "classification", "extraction", "preference", "text"]
Method = Literal["sft", "cpt", "dpo", "reward", "ppo", "rloo", "grpo"]
Finetune = Literal["full", "lora", "qlora", "dora"]


# Number bounds, one rule for every numeric field: finite (allow_inf_nan=False on every section) and inside
# a stated range, given by one of these types or by the field's own ge/gt and le/lt. The ranges are generous
# (far beyond any run one machine makes) and only refuse nonsense such as lr: .inf or max_seq_len: 1e23;
# tests/unit/test_config_safety.py checks that every numeric field has both bounds. README "Configuration".
MAX_TOKENS = 1 << 20  # sequence lengths, micro-batch tokens, generation budgets, chunk sizes
MAX_STEPS = 100_000_000  # optimizer steps and step intervals
MAX_COUNT = 1_000_000  # examples and batch sizes
MAX_SEED = 2**32 - 1  # the range numpy, torch and random all accept
Seed = Annotated[int, Field(ge=0, le=MAX_SEED)]
Tokens = Annotated[int, Field(ge=1, le=MAX_TOKENS)]
Steps = Annotated[int, Field(ge=1, le=MAX_STEPS)]
Count = Annotated[int, Field(ge=1, le=MAX_COUNT)]
Usd = Annotated[float, Field(ge=0, le=1e6)]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class ModelConfig(Section):
    name: str = Field(
        "smollm2-135m-instruct",
        description="Base model: an alias (smollm2-135m-instruct, tiny), a local Hugging Face model folder, "
        "or a hub id (only when the machine is online).",
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="Compute dtype. auto = float32 on CPU, bfloat16 on a GPU that supports it."
    )
    attn_implementation: Literal["auto", "eager", "sdpa", "sdpa_packed"] = Field(
        "auto",
        description=(
            "Attention kernel. auto = sdpa_packed when training (causal sdpa per example inside packed rows, "
            "no block mask; models with a sliding window keep sdpa) and sdpa elsewhere."
        ),
    )


class DataConfig(Section):
    train: Path | None = Field(
        None, description="Training file (JSONL, CSV, TXT/MD or a folder of text files)."
    )
    holdout: Path | None = Field(None, description="Hold-out file used for validation loss and evaluation.")
    task: Task | None = Field(None, description="Data format; detected from the file when omitted.")
    text_field: str = Field(
        "text", description="Column with the input text (classification/extraction tables)."
    )
    label_field: str = Field("label", description="Column with the label (classification tables).")
    fields_field: str = Field(
        "fields", description="Column with the JSON object of fields (extraction tables)."
    )
    system_prompt: str | None = Field(
        None, description="System prompt added to every example (generated for classification/extraction)."
    )
    max_seq_len: Tokens = Field(
        1024, ge=16, description="Longest tokenized example; longer ones are truncated."
    )
    train_on: Literal["assistant", "all"] = Field(
        "assistant",
        description="Which tokens carry loss: assistant turns only (honouring per-message weight, "
        "end-of-turn token included) or every token.",
    )
    holdout_fraction: float = Field(
        0.2, gt=0, lt=1, description="Fraction split off as hold-out when no holdout file is given."
    )
    seed: Seed = Field(0, description="Seed for splits and shuffling.")


class LoraConfig(Section):
    r: int = Field(16, ge=1, le=4096, description="LoRA rank (peft `r`).")
    lora_alpha: int = Field(32, ge=1, le=65536, description="LoRA scaling numerator (peft `lora_alpha`).")
    lora_dropout: float = Field(
        0.0, ge=0, lt=1, description="Dropout on the LoRA path (peft `lora_dropout`)."
    )
    target_modules: list[str] | Literal["all-linear"] = Field(
        "all-linear", description="Modules that get adapters: 'all-linear' or a list of module names."
    )
    layers_to_transform: list[Annotated[int, Field(ge=0, le=10_000)]] | None = Field(
        None,
        description="Only adapt these layer indices (e.g. the upper layers: no backward through frozen "
        "lower layers). None = every layer.",
    )


class TrainConfig(Section):
    method: Method = Field(
        "sft",
        description="sft, cpt (continued pre-training), dpo, reward, ppo (PPO with a value head, written in "
        "tunesmith), rloo (TRL's RLOO) or grpo (TRL's GRPO). docs/rl.md.",
    )
    finetune: Finetune = Field("lora", description="full, lora, qlora (4-bit NF4 base + LoRA) or dora.")
    lr: float | None = Field(
        None,
        gt=0,
        le=1.0,
        description="Peak learning rate. None: sft/cpt choose it by model size (docs/training.md, the plan); "
        "other methods 2e-4 for adapters, 2e-5 full.",
    )
    epochs: Annotated[float, Field(le=10_000)] | Literal["auto"] = Field(
        "auto",
        description="Passes over the training data (> 0). auto: sft/cpt choose enough passes for ~150 "
        "optimizer steps (docs/training.md); other methods 1.",
    )
    max_steps: Steps | None = Field(None, description="Stop after this many optimizer steps.")
    batch_tokens: Annotated[int, Field(le=MAX_TOKENS)] | Literal["auto"] = Field(
        "auto",
        description="Tokens per micro-batch (>= 16). auto: the memory plan chooses it from "
        "train.memory_budget_gb. A number also makes an optimizer step train.grad_accum micro-batches of "
        "this many tokens (token-sized steps) unless train.batch_size is a number.",
    )
    batch_size: Annotated[int, Field(le=MAX_COUNT)] | Literal["auto"] = Field(
        "auto",
        description="Examples per optimizer step (>= 1), whatever the micro-batch: the memory plan splits a "
        "step into micro-batches and accumulates. auto: sft/cpt choose it from the data size "
        "(docs/training.md); other methods 8 per device.",
    )
    grad_accum: int = Field(
        1,
        ge=1,
        le=65_536,
        description="With a numeric train.batch_tokens (and batch_size auto): micro-batches per optimizer "
        "step. With example-sized steps: multiplies train.batch_size (examples per step = batch_size x "
        "grad_accum). dpo/reward/ppo: TRL's gradient_accumulation_steps.",
    )
    memory_budget_gb: Annotated[float, Field(le=1e6)] | Literal["auto"] = Field(
        "auto",
        description="Memory the training process may use, in GB (> 0). auto: 60% of the RAM available "
        "at start on CPU, 85% of the free GPU memory on a GPU. The plan chooses the micro-batch (and "
        "gradient checkpointing) to fit it (sft/cpt).",
    )
    distributed: Literal["auto", "ddp", "fsdp"] = Field(
        "auto",
        description="How the processes of `tunesmith train --nproc N` share the model: ddp (a whole copy "
        "each, gradients averaged) or fsdp (FSDP2: weights, gradients and optimizer state sharded over the "
        "processes, for a model whose training state does not fit one device; sft/cpt, not qlora). auto: "
        "ddp when a whole copy fits train.memory_budget_gb, else fsdp. One process ignores it.",
    )
    packing: bool = Field(True, description="Padding-free packing of examples (no cross-example attention).")
    warmup_ratio: float | Literal["auto"] = Field(
        "auto",
        description="Fraction of steps with linear warmup (0 <= x < 1). auto: 0.05, at least 5 steps when "
        "the run has 50 or more (sft/cpt; docs/training.md).",
    )
    lr_scheduler: Literal["cosine", "linear", "constant"] = Field("cosine", description="Decay after warmup.")
    weight_decay: float = Field(0.0, ge=0, le=1, description="AdamW weight decay.")
    max_grad_norm: float = Field(1.0, gt=0, le=1e4, description="Gradient clipping norm.")
    seed: Seed = Field(42, description="Seed for model init, data order and dropout.")
    eval_every: Steps | None = Field(None, description="Hold-out loss every N steps (None: once per epoch).")
    early_stopping_patience: int | None = Field(
        None,
        ge=1,
        le=10_000,
        description="Stop after N evaluations without improvement of the hold-out loss.",
    )
    save_every: Steps | None = Field(None, description="Checkpoint every N steps (None: end of each epoch).")
    keep_checkpoints: int = Field(2, ge=1, le=1000, description="How many recent checkpoints to keep.")
    gradient_checkpointing: bool | Literal["auto"] = Field(
        "auto",
        description="Recompute activations in backward to save memory. auto: sft/cpt turn it on when the "
        "memory plan needs it to fit train.memory_budget_gb; other methods off.",
    )
    logging_steps: Steps = Field(1, description="Write metrics.jsonl every N steps.")
    output_dir: Path = Field(Path("runs"), description="Folder that holds one sub-folder per run.")
    run_name: str | None = Field(None, description="Run folder name (default: a timestamped id).")
    report_to: list[Literal["tensorboard", "mlflow"]] = Field(
        default_factory=list,
        description="Experiment trackers that also get every metrics.jsonl row: tensorboard, mlflow (the "
        "trackers extra: pip install 'tunesmith[trackers]'; docs/training.md).",
    )
    forgetting_probe: bool = Field(
        False, description="Report the loss on a built-in set of general prompts before and after training."
    )
    # preference methods
    beta: float = Field(0.1, gt=0, le=100, description="DPO/KL strength (TRL `beta`).")
    loss_type: str = Field(
        "sigmoid", description="DPO loss type (TRL `loss_type`: sigmoid, ipo, hinge, ...)."
    )
    init_from: Path | None = Field(None, description="Start from this SFT run's adapter or model.")
    reward_model: Path | None = Field(
        None, description="Reward run (method: reward) that scores answers for ppo, rloo and grpo."
    )
    grader: Path | None = Field(
        None,
        description="Grader JSON file (OpenAI grader shape, docs/graders.md) that scores answers for ppo, rloo "
        "and grpo, instead of train.reward_model.",
    )
    prompts: Path | None = Field(
        None, description="Prompts file for ppo, rloo and grpo (JSONL with prompt or messages)."
    )
    num_generations: int = Field(
        4,
        ge=2,
        le=256,
        description="rloo, grpo: answers sampled per prompt; each is baselined by the others (TRL `num_generations`).",
    )
    max_completion_length: Tokens = Field(
        64, description="ppo, rloo, grpo: longest sampled answer in tokens (TRL `max_completion_length`)."
    )
    temperature: float = Field(
        1.0, gt=0, le=100, description="ppo, rloo, grpo: sampling temperature of the policy (TRL `temperature`)."
    )
    # method: ppo only (train/ppo.py; names as in TRL's former PPOConfig)
    num_ppo_epochs: int = Field(
        2, ge=1, le=64, description="ppo: optimisation passes over each batch of sampled answers."
    )
    num_mini_batches: int = Field(
        1, ge=1, le=1024, description="ppo: mini-batches each pass splits the batch of answers into."
    )
    cliprange: float = Field(0.2, gt=0, le=10, description="ppo: clip range of the policy ratio (epsilon).")
    cliprange_value: float = Field(
        0.2, gt=0, le=1e4, description="ppo: clip range of the value update around the old values."
    )
    vf_coef: float = Field(0.1, ge=0, le=1e3, description="ppo: weight of the value loss.")
    gamma: float = Field(1.0, ge=0, le=1, description="ppo: discount factor of GAE.")
    lam: float = Field(0.95, ge=0, le=1, description="ppo: lambda of GAE (bias-variance trade-off).")
    kl_target: float | None = Field(
        None,
        gt=0,
        le=1e4,
        description="ppo: target KL (nats per answer) of the adaptive KL controller (Ziegler et al. 2019); "
        "None keeps the KL coefficient fixed at train.beta.",
    )
    kl_horizon: Steps = Field(
        10_000, description="ppo: horizon of the adaptive KL controller, in sampled answers."
    )

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        if self.method in ("ppo", "rloo", "grpo") and (self.reward_model is None) == (self.grader is None):
            raise ValueError(
                f"method: {self.method} needs exactly one reward: train.reward_model (the folder of a reward "
                f"run) or train.grader (a grader JSON file)"
                + (", not both." if self.reward_model is not None else ".")
            )
        if self.distributed == "fsdp" and (self.method not in ("sft", "cpt") or self.finetune == "qlora"):
            what = f"finetune: {self.finetune}" if self.finetune == "qlora" else f"method: {self.method}"
            raise ValueError(
                f"train.distributed: fsdp shards sft and cpt runs of full, lora or dora fine-tunes, not {what}; "
                "use train.distributed: ddp (or auto)."
            )
        _check_auto_number("epochs", self.epochs, low=0.0, low_open=True)
        _check_auto_number("batch_tokens", self.batch_tokens, low=16)
        _check_auto_number("batch_size", self.batch_size, low=1)
        _check_auto_number("warmup_ratio", self.warmup_ratio, low=0.0, high=1.0)
        _check_auto_number("memory_budget_gb", self.memory_budget_gb, low=0.0, low_open=True)
        return self

    def fixed(self, name: str) -> Any:
        """``name``'s value, or what methods that do not plan (dpo, reward, ppo, remote APIs) use for auto:
        epochs 1, batch_size 8, warmup_ratio 0.05, batch_tokens 4096, gradient_checkpointing off."""
        value = getattr(self, name)
        return _AUTO_FALLBACK[name] if value == "auto" else value

    def resolved_lr(self) -> float:
        """train.lr, else the fixed default of the methods that do not plan (2e-4 adapters, 2e-5 full);
        sft/cpt's planned rate is in the run's plan (train/plan.py)."""
        if self.lr is not None:
            return self.lr
        return 2e-5 if self.finetune == "full" else 2e-4


_AUTO_FALLBACK: dict[str, Any] = {
    "epochs": 1.0,
    "batch_size": 8,
    "warmup_ratio": 0.05,
    "batch_tokens": 4096,
    "gradient_checkpointing": False,
}


def _check_auto_number(
    name: str, value: Any, *, low: float, low_open: bool = False, high: float | None = None
) -> None:
    # "auto" or a finite number in range; NaN, 0 and negatives are refused with the field's name
    if value == "auto":
        return
    import math

    bad = isinstance(value, float) and not math.isfinite(value)
    bad = bad or (value <= low if low_open else value < low) or (high is not None and value >= high)
    if bad:
        bound = f"> {low:g}" if low_open else f">= {low:g}"
        upper = f" and < {high:g}" if high is not None else ""
        raise ValueError(f"train.{name} must be auto or a finite number {bound}{upper} (got {value}).")


class EvalConfig(Section):
    baselines: list[Literal["zero-shot", "few-shot", "rag"]] = Field(
        default_factory=lambda: ["zero-shot", "few-shot"],
        description="Prompted baselines to compare against.",
    )
    few_shot_k: int = Field(3, ge=1, le=64, description="Examples in the few-shot prompt.")
    few_shot_selection: Literal["similar", "random"] = Field(
        "similar", description="How few-shot examples are chosen from the training set."
    )
    max_new_tokens: Tokens = Field(128, description="Generation budget per answer.")
    batch_size: Count = Field(8, description="Examples generated together.")
    require: list[str] = Field(
        default_factory=list, description="Release gate rules, e.g. 'finetuned.accuracy>=0.9'."
    )
    format_regex: str | None = Field(None, description="Answers must match this regex (format rule).")
    json_schema: dict[str, Any] | None = Field(None, description="Answers must validate against this schema.")
    max_answer_chars: int | None = Field(
        None, ge=1, le=100_000_000, description="Answers longer than this fail the format rule."
    )
    price_per_1k_tokens: Usd | None = Field(
        None,
        description="Serving price per 1,000 tokens (prompt + completion) for cost per 1,000 requests; "
        "unset = machine time x eval.machine_usd_per_hour.",
    )
    machine_usd_per_hour: Usd = Field(
        0.10,
        description="Hourly price of the machine serving the model, for cost per 1,000 requests from "
        "measured time (default: a small 2-vCPU cloud VM).",
    )
    consistency_examples: int = Field(
        16,
        ge=0,
        le=MAX_COUNT,
        description="Hold-out examples re-asked in a lightly reworded form to measure consistency (0 = off).",
    )
    max_examples: Count | None = Field(None, description="Evaluate only the first N hold-out examples.")
    graders: list[Path] = Field(
        default_factory=list,
        description="Grader JSON files (OpenAI's grader shapes, docs/graders.md) run on every candidate's answers.",
    )
    judge_url: str | None = Field(
        None, description="OpenAI-compatible base URL for model judges that name no base_url (e.g. tunesmith serve)."
    )
    min_judge_agreement: float | None = Field(
        0.4,
        ge=-1,
        le=1,
        description="A gate rule on a model judge's number fails unless the judge's calibrated agreement with "
        "people (Cohen's kappa or Spearman's rho, `tunesmith grade calibrate`) is at least this; null = no check.",
    )


class RagConfig(Section):
    docs: list[Path] = Field(default_factory=list, description="Document files or folders to index.")
    index: str | None = Field(
        None, description="Index folder (relative to this file), or a postgresql:// URL for the server store."
    )
    chunk_tokens: Tokens = Field(256, ge=16, description="Chunk size in embedder tokens.")
    chunk_overlap: int = Field(32, ge=0, le=MAX_TOKENS, description="Tokens shared by consecutive chunks.")
    k: int = Field(5, ge=1, le=1000, description="Passages retrieved per question.")
    mode: Literal["hybrid", "dense", "bm25"] = Field("hybrid", description="Retrieval mode.")

    @model_validator(mode="after")
    def _check(self) -> RagConfig:
        if self.chunk_overlap >= self.chunk_tokens:
            raise ValueError("rag.chunk_overlap must be smaller than rag.chunk_tokens.")
        return self


class ProjectConfig(Section):
    """A tunesmith project: what to train on, how, and how to judge it."""

    model: ModelConfig = Field(default_factory=ModelConfig, description="The base model.")
    data: DataConfig = Field(default_factory=DataConfig, description="Training and hold-out data.")
    lora: LoraConfig = Field(default_factory=LoraConfig, description="Adapter settings (lora/qlora/dora).")
    train: TrainConfig = Field(default_factory=TrainConfig, description="Training method and schedule.")
    eval: EvalConfig = Field(default_factory=EvalConfig, description="Evaluation and release gate.")
    rag: RagConfig = Field(default_factory=RagConfig, description="Retrieval (optional).")

    @model_validator(mode="after")
    def _fields_the_method_reads(self) -> ProjectConfig:
        # a field the method never reads, set to anything but its default, would change nothing: refuse it
        # (defaults pass, so every run's config.resolved.yaml loads)
        problems = []
        for name, (why, instead) in IGNORED_BY_METHOD[self.train.method].items():
            section, field = name.split(".")
            model = getattr(self, section)
            default = type(model).model_fields[field].get_default(call_default_factory=True)
            if getattr(model, field) != default:
                use = f" {instead}" if instead else ""
                problems.append(f"{name} does nothing for method: {self.train.method} ({why}).{use}")
        if problems:
            raise ValueError(" ".join(problems) + " Remove it, or pick the method that reads it.")
        return self


# Config fields that each method reads nowhere (its module under train/ and what that calls), with why and
# what to set instead. Any value but the field's default is refused for that method (ProjectConfig above);
# docs/training.md "Fields each method reads" lists the same. When a method starts reading a field, drop it
# here: tests/unit/test_config_method_fields.py checks every entry against a default config.
_RL_ONLY = "only ppo, rloo and grpo read it"
_PPO_ONLY = "only method: ppo reads it"
_NO_PLAN = "it uses TRL's trainer, which has no memory plan"
_PREF_DATA = "its pairs or prompts carry their own messages"
# fields only method: ppo (train/ppo.py) reads
_PPO_FIELDS = ("num_ppo_epochs", "num_mini_batches", "cliprange", "cliprange_value", "vf_coef", "gamma", "lam",
               "kl_target", "kl_horizon")  # fmt: skip
_PPO_ONLY_FIELDS: dict[str, tuple[str, str]] = {f"train.{f}": (_PPO_ONLY, "") for f in _PPO_FIELDS}
_SFT_CPT: dict[str, tuple[str, str]] = {
    "train.beta": ("the DPO/KL strength of method: dpo, ppo, rloo and grpo", ""),
    "train.loss_type": ("the DPO loss of method: dpo", ""),
    "train.init_from": (
        "the SFT run that method: dpo, ppo, rloo and grpo start from",
        "To start from a trained model, set model.name to its folder.",
    ),
    "train.reward_model": (_RL_ONLY, ""),
    "train.grader": (_RL_ONLY, "To judge a model with a grader, use `tunesmith eval --grader`."),
    "train.prompts": (_RL_ONLY, "The training data is data.train."),
    "train.num_generations": ("only rloo and grpo read it", ""),
    "train.max_completion_length": (_RL_ONLY, "The sequence length is data.max_seq_len."),
    "train.temperature": (_RL_ONLY, ""),
    **_PPO_ONLY_FIELDS,
}
_TRL: dict[str, tuple[str, str]] = {
    "train.batch_tokens": (_NO_PLAN, "Its batch is train.batch_size (x train.grad_accum)."),
    "train.memory_budget_gb": (
        _NO_PLAN,
        "Its memory follows train.batch_size, data.max_seq_len and train.gradient_checkpointing.",
    ),
    "train.packing": ("its batches are padded by TRL", ""),
    "train.eval_every": (
        "it scores the hold-out once before and once after training",
        "Bound the run with train.max_steps or train.epochs.",
    ),
    "train.early_stopping_patience": (
        "it scores the hold-out once before and once after training",
        "Bound the run with train.max_steps or train.epochs.",
    ),
    "train.save_every": ("it writes no checkpoints; its runs cannot be resumed", ""),
    "train.keep_checkpoints": ("it writes no checkpoints; its runs cannot be resumed", ""),
    "train.forgetting_probe": ("only sft and cpt run the forgetting probe", ""),
    "data.train_on": (_PREF_DATA, ""),
    "data.text_field": (_PREF_DATA, ""),
    "data.label_field": (_PREF_DATA, ""),
    "data.fields_field": (_PREF_DATA, ""),
    "data.system_prompt": (_PREF_DATA, "Put a system message in the pairs' prompts."),
}
_RL_SPECIFIC = {
    k: v for k, v in _SFT_CPT.items() if k not in ("train.beta", "train.loss_type", "train.init_from")
}
# dpo and reward train on tunesmith's own loop (train/pref_run.py): the memory plan, hold-out evaluation,
# early stopping and checkpoints apply; pairs are always packed and there is no forgetting probe
_PREF_LOOP = {
    **{k: v for k, v in _TRL.items() if k.startswith("data.") or k == "train.forgetting_probe"},
    "train.packing": ("pairs are always packed (a pair's two sequences need per-sequence positions)", ""),
}
_PROBE = "it keeps a few of its prompts aside as the before/after probe"
# rloo and grpo: TRL's trainers, sampling num_generations answers per prompt
_TRL_RL: dict[str, tuple[str, str]] = {
    **_TRL,
    **_PPO_ONLY_FIELDS,
    "train.loss_type": ("the DPO loss of method: dpo", ""),
    "data.holdout": (_PROBE, ""),
    "data.holdout_fraction": (_PROBE, ""),
}
# ppo: tunesmith's own PPO loop (train/ppo.py); one sampled answer per prompt, baselined by the value head.
# num_generations is RLOO's: configs written when method: ppo ran RLOO get an error naming both methods.
_RENAMED_PPO = (
    "train.num_generations is RLOO's (samples per prompt); method: ppo is now PPO with a value head and "
    "one answer per prompt, and the RLOO trainer that method: ppo used to run is method: rloo",
    "Set train.method: rloo to keep RLOO, or remove train.num_generations to run PPO.",
)
_PPO_OWN_LOOP: dict[str, tuple[str, str]] = {
    **{k: v for k, v in _TRL.items() if k not in ("train.batch_tokens", "train.memory_budget_gb", "train.packing")},
    "train.batch_tokens": ("its batch is train.batch_size prompts", ""),
    "train.memory_budget_gb": ("it has no memory plan; memory follows train.batch_size", ""),
    "train.packing": ("its sampled answers are padded", ""),
    "train.grad_accum": ("each step is train.batch_size prompts split into train.num_mini_batches", ""),
    "train.gradient_checkpointing": ("it does not recompute activations", ""),
    "train.save_every": ("it writes no checkpoints; its runs cannot be resumed", ""),
    "train.keep_checkpoints": ("it writes no checkpoints; its runs cannot be resumed", ""),
    "train.eval_every": (_PROBE.replace("it keeps", "it scores the probe before and after; it keeps"), ""),
    "train.num_generations": _RENAMED_PPO,
    "train.loss_type": ("the DPO loss of method: dpo", ""),
    "data.holdout": (_PROBE, ""),
    "data.holdout_fraction": (_PROBE, ""),
}
IGNORED_BY_METHOD: dict[str, dict[str, tuple[str, str]]] = {
    "sft": _SFT_CPT,
    "cpt": {**_SFT_CPT, "data.train_on": ("cpt trains on every token", "")},
    "dpo": {**_PREF_LOOP, **_RL_SPECIFIC},
    "reward": {
        **_PREF_LOOP,
        **_RL_SPECIFIC,
        "train.beta": ("the DPO/KL strength of method: dpo, ppo, rloo and grpo", ""),
        "train.loss_type": ("the DPO loss of method: dpo", ""),
        "train.init_from": (
            "a reward model starts from the base with a new scalar head",
            "The base is model.name.",
        ),
    },
    "ppo": _PPO_OWN_LOOP,
    "rloo": _TRL_RL,
    "grpo": _TRL_RL,
}


def overrides_for(method: str, overrides: list[str]) -> list[str]:
    """The ``key=value`` overrides that ``method`` reads (those naming a field in ``IGNORED_BY_METHOD[method]``
    are left out): for settings applied to runs of every method, such as ``tunesmith serve --train-override``."""
    return [o for o in overrides if o.partition("=")[0].strip() not in IGNORED_BY_METHOD[method]]


# --------------------------------------------------------------------------- loading


def _missing_config_hint(path: Path) -> str:
    """A YAML file beside the missing one that it most likely meant (`tunesmith.yml` for `tunesmith.yaml`),
    else how to create a config."""
    folder = path.parent
    near = sorted(p.name for p in folder.glob("*.y*ml") if p.is_file()) if folder.is_dir() else []
    close = difflib.get_close_matches(path.name, near, n=1, cutoff=0.75)
    if close:
        return f"Did you mean {folder / close[0]}?"
    return "Create one with `tunesmith init DIR`."


def load_config(path: Path | str | None, overrides: list[str] | None = None) -> ProjectConfig:
    """Read a YAML config (or start from defaults when ``path`` is None), apply ``a.b=value`` overrides,
    validate, and resolve relative data paths against the config file's folder."""
    raw: dict[str, Any] = {}
    base = Path(".")
    if path is not None:
        path = Path(path)
        if path.is_dir():
            raise TunesmithError(
                f"{path} is a folder, not a config file.", "Pass the YAML file, e.g. tunesmith.yaml."
            )
        if not path.exists():
            raise TunesmithError(f"Config file {path} does not exist.", _missing_config_hint(path))
        # bounded read, limits on size, depth and aliases, duplicate keys refused (tunesmith/yamlsafe.py)
        loaded = load_yaml_file(path, what="Config file")
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise TunesmithError(f"{path} must hold a mapping of sections (model:, data:, train:, ...).")
        raw = loaded
        base = path.parent
    for item in overrides or []:
        apply_override(raw, item)
    cfg = validate_config_dict(raw, source=str(path) if path else "config")
    try:
        return _resolve_paths(cfg, base)
    except (OSError, ValueError) as exc:  # a NUL byte or an over-long name in a path field
        raise TunesmithError(
            f"{path or 'config'}: a path in it cannot be used: {_short_repr(str(exc))}.",
            "Check the path fields (data.train, data.holdout, rag.docs, rag.index, train.output_dir, "
            "train.init_from, model.name) for stray characters or over-long names.",
        ) from None


def validate_config_dict(raw: dict[str, Any], source: str = "config") -> ProjectConfig:
    try:
        return ProjectConfig.model_validate(raw)
    except ValidationError as exc:
        raise TunesmithError(_format_validation_error(exc, source), _hint(exc)) from None


def apply_override(raw: dict[str, Any], item: str) -> None:
    """Apply one ``section.key=value`` override; the value is parsed as YAML (numbers, lists, true/false)
    with the limits of ``tunesmith.yamlsafe``; text that is not YAML at all is kept as a string.

    Raises:
        TunesmithError: for an item without ``=``, a path through a non-section, or a value over a limit.
    """
    if "=" not in item:
        raise TunesmithError(
            f"Override {_short_repr(item)} is not of the form key=value.", "Example: train.lr=1e-4"
        )
    key, _, value = item.partition("=")
    parts = key.strip().split(".")
    node = raw
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise TunesmithError(
                f"Override {_short_repr(item)}: {_short_repr(part)} is not a section.",
                "Override a key inside a section, e.g. train.lr=1e-4.",
            )
    try:
        parsed = load_yaml(value, f"Override {_short_repr(item)}") if value.strip() else ""
    except YAMLSyntaxError:
        parsed = value
    node[parts[-1]] = parsed


def dump_config(cfg: ProjectConfig) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)


def _resolve_paths(cfg: ProjectConfig, base: Path) -> ProjectConfig:
    def fix(p: Path | None) -> Path | None:
        if p is None or p.is_absolute():
            return p
        return (base / p).resolve() if (base / p).exists() or not p.exists() else p

    data = cfg.data
    data.train, data.holdout = fix(data.train), fix(data.holdout)
    cfg.rag.docs = [fix(p) for p in cfg.rag.docs]  # type: ignore[misc]
    cfg.eval.graders = [fix(p) for p in cfg.eval.graders]  # type: ignore[misc]
    if cfg.rag.index is not None and "://" not in cfg.rag.index:  # a URL stays as written
        cfg.rag.index = str(fix(Path(cfg.rag.index)))
    for name in ("init_from", "reward_model", "grader", "prompts"):
        setattr(cfg.train, name, fix(getattr(cfg.train, name)))
    if not cfg.train.output_dir.is_absolute():
        cfg.train.output_dir = (base / cfg.train.output_dir).resolve()
    model = Path(cfg.model.name)
    if not model.is_absolute() and (base / model).is_dir():
        cfg.model.name = str((base / model).resolve())
    return cfg


MAX_LISTED_PROBLEMS = 20


def _format_validation_error(exc: ValidationError, source: str) -> str:
    # bounded: at most MAX_LISTED_PROBLEMS lines, each quoting at most a short prefix of the bad value
    lines: list[str] = []
    for err in exc.errors():
        loc = ".".join(_short_repr(p, 40) if not isinstance(p, str) or len(p) > 40 else p for p in _loc(err))
        if err["type"] == "extra_forbidden":
            suggestion = _suggest(err["loc"])
            extra = f" Did you mean `{suggestion}`?" if suggestion else ""
            line = f"  - {loc}: unknown key.{extra}"
        else:
            got = err.get("input")
            got_s = f" (got {_short_repr(got)})" if not isinstance(got, dict) and got is not None else ""
            line = f"  - {loc or 'config'}: {err['msg']}{got_s}"
        if line not in lines:
            lines.append(line)
    more = len(lines) - MAX_LISTED_PROBLEMS
    shown = lines[:MAX_LISTED_PROBLEMS] + ([f"  ... and {more} more"] if more > 0 else [])
    return "\n".join([f"{source}: {len(lines)} problem(s):", *shown])


def _loc(err: Any) -> list[Any]:
    """The error's key path without pydantic's union-member tags (``constrained-float``, ``literal['auto']``)."""
    if err["type"] == "extra_forbidden":
        return list(err["loc"])
    return [p for p in err["loc"] if not (isinstance(p, str) and ("[" in p or "-" in p or p in _TAGS))]


_TAGS = {"int", "float", "str", "bool", "list", "dict", "none"}


def _short_repr(value: Any, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters (a value can be megabytes long, or an int too long to print)."""
    try:
        text = repr(value)
    except ValueError:  # int -> str beyond 4,300 digits
        return "a number of more than 4,300 digits"
    return text if len(text) <= limit else text[:limit] + f"... ({len(text):,} characters)"


def _hint(exc: ValidationError) -> str:
    return "Run `tunesmith config schema` to see every key with its type and description."


def _suggest(loc: tuple[Any, ...]) -> str | None:
    model: type[BaseModel] = ProjectConfig
    for part in loc[:-1]:
        field = model.model_fields.get(str(part))
        ann = getattr(field, "annotation", None) if field else None
        if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
            return None
        model = ann
    matches = difflib.get_close_matches(str(loc[-1]), list(model.model_fields), n=1, cutoff=0.6)
    if not matches:
        return None
    return ".".join([*(str(p) for p in loc[:-1]), matches[0]])
