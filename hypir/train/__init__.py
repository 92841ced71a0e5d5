"""HYPIR training (issue 12): the adversarial LoRA fine-tuning trainer, its discriminator,
losses, EMA and checkpoints (the last three shared with the RSD trainers)."""
from .config import TrainConfig, load_config
from .trainer import HypirTrainer

__all__ = ["HypirTrainer", "TrainConfig", "load_config"]
