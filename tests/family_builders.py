"""Tiny random-weight SDXL, SD3 and Flux pipelines, built offline with the sizes of diffusers' own tests.

Shared by ``test_families.py`` (engine exactness) and ``test_plugin_families.py`` (plugin and CLI).
T5 (Flux's second encoder) shares the CLIP tokenizer; SD3 runs without T5 (``text_encoder_3=None``).
"""

from __future__ import annotations

import torch

WORDS = ["a red handwritten three", "a green handwritten eight", "a handwritten seven", "trois", "red", "green"]
SIZE = 16  # pixels; 8×8 latents
MSL = 8  # T5 / SD3 sequence length: short, for speed


def _tokenizer():
    from pytest_uoc.zoo.build import build_tokenizer

    return build_tokenizer(WORDS, 16)


def _clip_config(tok):
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        vocab_size=len(tok), hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
        max_position_embeddings=tok.model_max_length, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id, projection_dim=32, hidden_act="gelu",
    )


def _flow_vae():
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        sample_size=SIZE, in_channels=3, out_channels=3, block_out_channels=(4, 8),
        down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2, layers_per_block=1,
        latent_channels=4, norm_num_groups=1, use_quant_conv=False, use_post_quant_conv=False,
        shift_factor=0.0609, scaling_factor=1.5035,
    )


def sdxl_unet(seed: int):
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    return UNet2DConditionModel(
        block_out_channels=(8, 16), layers_per_block=1, sample_size=SIZE // 2, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4), use_linear_projection=True, addition_embed_type="text_time",
        addition_time_embed_dim=8, transformer_layers_per_block=(1, 1),
        projection_class_embeddings_input_dim=6 * 8 + 32, cross_attention_dim=64, norm_num_groups=4,
    )


def build_sdxl(scheduler: str = "euler"):
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        EulerDiscreteScheduler,
        StableDiffusionXLPipeline,
    )
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    tok = _tokenizer()
    unet = sdxl_unet(0)
    torch.manual_seed(0)
    vae = AutoencoderKL(
        block_out_channels=[8, 16], in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * 2,
        up_block_types=["UpDecoderBlock2D"] * 2, latent_channels=4, sample_size=SIZE, norm_num_groups=4,
        layers_per_block=1,
    )
    text_encoder = CLIPTextModel(_clip_config(tok))
    text_encoder_2 = CLIPTextModelWithProjection(_clip_config(tok))
    config = dict(beta_start=0.00085, beta_end=0.012, steps_offset=1, beta_schedule="scaled_linear",
                  timestep_spacing="leading")
    sched = EulerDiscreteScheduler(**config) if scheduler == "euler" else DDIMScheduler(**config, clip_sample=False)
    pipe = StableDiffusionXLPipeline(vae=vae, text_encoder=text_encoder, text_encoder_2=text_encoder_2,
                                     tokenizer=tok, tokenizer_2=tok, unet=unet, scheduler=sched)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def sd3_transformer(seed: int):
    from diffusers import SD3Transformer2DModel

    torch.manual_seed(seed)
    return SD3Transformer2DModel(
        sample_size=SIZE // 2, patch_size=1, in_channels=4, num_layers=1, attention_head_dim=8,
        num_attention_heads=4, caption_projection_dim=32, joint_attention_dim=32, pooled_projection_dim=64,
        out_channels=4,
    )


def build_sd3():
    from diffusers import FlowMatchEulerDiscreteScheduler, StableDiffusion3Pipeline
    from transformers import CLIPTextModelWithProjection

    tok = _tokenizer()
    transformer = sd3_transformer(0)
    torch.manual_seed(0)
    vae = _flow_vae()
    pipe = StableDiffusion3Pipeline(
        transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0), vae=vae,
        text_encoder=CLIPTextModelWithProjection(_clip_config(tok)), tokenizer=tok,
        text_encoder_2=CLIPTextModelWithProjection(_clip_config(tok)), tokenizer_2=tok,
        text_encoder_3=None, tokenizer_3=None,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def flux_transformer(seed: int):
    from diffusers import FluxTransformer2DModel

    torch.manual_seed(seed)
    return FluxTransformer2DModel(
        patch_size=1, in_channels=16, num_layers=1, num_single_layers=1, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=32, axes_dims_rope=[4, 4, 8],
        guidance_embeds=True,
    )


def build_flux():
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline
    from transformers import CLIPTextModel, T5Config, T5EncoderModel

    tok = _tokenizer()
    transformer = flux_transformer(0)
    torch.manual_seed(0)
    vae = _flow_vae()
    t5 = T5EncoderModel(T5Config(vocab_size=len(tok), d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4,
                                 relative_attention_num_buckets=8)).eval()  # built in train mode: no dropout
    scheduler = FlowMatchEulerDiscreteScheduler(
        use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15, base_image_seq_len=256,
        max_image_seq_len=4096, shift=3.0,
    )
    pipe = FluxPipeline(scheduler=scheduler, vae=vae, text_encoder=CLIPTextModel(_clip_config(tok)), tokenizer=tok,
                        text_encoder_2=t5, tokenizer_2=tok, transformer=transformer)
    pipe.set_progress_bar_config(disable=True)
    return pipe
