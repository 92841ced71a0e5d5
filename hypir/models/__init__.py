"""Backbones (SD2.x, SDXL, SD3, Flux.1) and their components, HYPIR's LoRA and checkpoint format, the texture-richness embedding."""
from .lora import (HYPIR_TARGETS, LoraSpec, add_lora, load_checkpoint, lora_state_dict, read_checkpoint, save_checkpoint,
                   save_released)
from .backbones import Backbone, make_backbone
from .components import Components, build_components, load_components
from .texture import TextureEmbedding, attach_texture_embedding, texture_richness

__all__ = [
    "Backbone", "Components", "HYPIR_TARGETS", "LoraSpec", "TextureEmbedding", "add_lora", "attach_texture_embedding",
    "build_components", "load_checkpoint", "load_components", "lora_state_dict", "make_backbone", "read_checkpoint",
    "save_checkpoint", "save_released", "texture_richness",
]
