"""LLaVA-OneVision-1.5 configuration in the released checkpoints' format (model_type
`llavaonevision1_5`: `vision_config` of model_type `rice_vit`, `text_config` a Qwen3 config), for the
transformers version vlmops pins. Shipped next to every export (`auto_map`), so `AutoConfig` /
`AutoModelForCausalLM` with `trust_remote_code=True` load it, as lmms-eval's `llava_onevision1_5` does."""
from __future__ import annotations

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig, Qwen3Config


@strict
class RiceConfig(PreTrainedConfig):
    model_type = "rice_vit"
    base_config_key = "vision_config"

    depth: int = 24
    embed_dim: int = 1024
    hidden_size: int = 1024
    hidden_act: str = "gelu"
    intermediate_size: int = 4096
    num_heads: int = 16
    in_channels: int = 3
    patch_size: int = 14
    spatial_merge_size: int = 2
    temporal_patch_size: int = 1
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-5
    text_hidden_size: int = 2560


@strict
class LLaVAOneVision1_5_TextConfig(Qwen3Config):
    model_type = "LLaVAOneVision1_5_text"
    base_config_key = "text_config"


@strict
class Llavaonevision1_5Config(PreTrainedConfig):
    model_type = "llavaonevision1_5"
    sub_configs_defaults = {"vision_config": RiceConfig, "text_config": LLaVAOneVision1_5_TextConfig}

    text_config: dict | PreTrainedConfig | None = None
    vision_config: dict | PreTrainedConfig | None = None
    image_token_id: int = 151655
    video_token_id: int | None = 151656
    vision_start_token_id: int = 151652
    vocab_size: int = 151936
    tie_word_embeddings: bool = False


__all__ = ["Llavaonevision1_5Config", "RiceConfig", "LLaVAOneVision1_5_TextConfig"]
