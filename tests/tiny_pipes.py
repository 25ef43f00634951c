"""Tiny pipeline folders with random weights, made at test time: a text-conditional StableDiffusionPipeline
(our tokenizer's format, 8 tokens at most) and an unconditional DDPMPipeline, 8x8 images."""
from __future__ import annotations

from pathlib import Path


def make(root: Path) -> Path:
    """ROOT/text and ROOT/uncond; returns ROOT."""
    import torch
    from diffusers import (AutoencoderKL, DDPMPipeline, DDPMScheduler, DPMSolverMultistepScheduler, StableDiffusionPipeline,
                           UNet2DConditionModel, UNet2DModel)
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizerFast

    from pdd.train.tokenizer import build_vocab

    torch.manual_seed(0)
    vocab, merges = build_vocab([])
    tok = CLIPTokenizerFast(vocab=vocab, merges=merges, model_max_length=8)
    te = CLIPTextModel(CLIPTextConfig(vocab_size=len(vocab), hidden_size=16, intermediate_size=16, num_hidden_layers=1,
                                      num_attention_heads=2, max_position_embeddings=8, projection_dim=16,
                                      bos_token_id=vocab["<|startoftext|>"], eos_token_id=vocab["<|endoftext|>"]))
    unet = UNet2DConditionModel(sample_size=4, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(8,),
                                down_block_types=("CrossAttnDownBlock2D",), up_block_types=("CrossAttnUpBlock2D",),
                                norm_num_groups=4, cross_attention_dim=16, attention_head_dim=2)
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(4, 4), layers_per_block=1,
                        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                        norm_num_groups=2, sample_size=8)
    StableDiffusionPipeline(vae=vae, text_encoder=te, tokenizer=tok, unet=unet,
                            scheduler=DPMSolverMultistepScheduler(num_train_timesteps=50), safety_checker=None,
                            feature_extractor=None, image_encoder=None, requires_safety_checker=False
                            ).save_pretrained(root / "text")
    DDPMPipeline(unet=UNet2DModel(sample_size=8, in_channels=3, out_channels=3, layers_per_block=1, block_out_channels=(4,),
                                  down_block_types=("DownBlock2D",), up_block_types=("UpBlock2D",), norm_num_groups=2,
                                  attention_head_dim=2),
                 scheduler=DDPMScheduler(num_train_timesteps=50)).save_pretrained(root / "uncond")
    return root
