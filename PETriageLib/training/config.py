"""TrainConfig: every setting of one training run, stored in checkpoints and compared on resume."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, Optional

DEFAULT_TARGET_SENSITIVITY = {1: 0.95, 2: 0.98}
# Settings that may change between an interrupted run and its resume without changing the result so far.
RESUMABLE_CHANGES = ("epochs", "patience", "save_every", "threads", "progress")


@dataclass
class TrainConfig:
    stage: int = 1
    architecture: str = "cbamdrn_d22"
    model_config: dict = field(default_factory=lambda: {"width": 0.5})
    windows: list = field(default_factory=lambda: ["vascular", "lung"])
    input_size: int = 128
    crop: str = "dynamic"
    margin_mm: float = 10.0
    epochs: int = 10
    batch_size: int = 16  # per process: under torchrun the effective batch is batch_size x ranks
    micro_batches: int = 1  # forward/backward passes per step, gradients summed (BatchNorm sees each alone)
    lr: float = 1e-3
    weight_decay: float = 1e-4
    scheduler: str = "onecycle"  # onecycle | cosine | constant
    balance: str = "sampler"  # sampler (class-balanced sampling) | weighted_loss | none
    augment: bool = True
    augment_config: dict = field(default_factory=dict)  # AugmentConfig fields to override
    patience: int = 4  # epochs without val improvement before stopping
    seed: int = 0
    target_sensitivity: Optional[float] = None  # None -> 0.95 stage 1, 0.98 stage 2
    amp: str = "auto"  # auto (CUDA fp16 only) | bf16 | off
    steps_per_epoch: Optional[int] = None  # None -> one pass over the training slices
    save_every: int = 50  # steps between resumable checkpoints
    threads: Optional[int] = None
    init_from: Optional[str] = None  # fine-tune from this checkpoint
    mask_loss_weight: float = 0.0  # > 0: auxiliary lesion-map loss on the manifest's lesion masks
    progress: bool = True

    @property
    def sensitivity_target(self) -> float:
        return self.target_sensitivity if self.target_sensitivity is not None else DEFAULT_TARGET_SENSITIVITY[self.stage]

    @property
    def context(self) -> int:
        """Slices each side of the classified one: a model setting that preprocessing must follow."""
        return int(self.model_config.get("context", 0))

    def preprocess_dict(self) -> dict:
        from PETriageLib.preprocess.slices import PreprocessConfig

        return PreprocessConfig(list(self.windows), int(self.input_size), self.crop, float(self.margin_mm),
                                self.context).to_dict()

    def channel_windows(self) -> list:
        """The window of each input channel (a window repeats once per context slice)."""
        return [w for w in self.windows for _ in range(2 * self.context + 1)]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "TrainConfig":
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown training settings: {', '.join(sorted(unknown))}")
        return cls(**dict(d))

    def differences(self, other: "TrainConfig") -> list[str]:
        """Settings that differ from ``other`` in ways that make a resume invalid."""
        a, b = self.to_dict(), other.to_dict()
        a["model_config"], b["model_config"] = self.full_model_config(), other.full_model_config()
        return [k for k in a if k not in RESUMABLE_CHANGES and a[k] != b[k]]

    def full_model_config(self) -> dict:
        """model_config with the builder's defaults filled in: {"width": 0.5} == {"width": 0.5, "pool": "avg"}."""
        from PETriageLib.models.registry import model_options

        try:
            defaults = model_options(self.architecture)
        except (KeyError, ValueError):  # an unknown name fails later, where the model is built
            defaults = {}
        return {**defaults, **self.model_config}
