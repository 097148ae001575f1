"""Unlearning methods, re-implemented from their published objectives.

Every method edits a copy of the original UNet (or, for the concealer, the text
encoder) with the text encoder frozen, as the methods do on Stable Diffusion:

- ESD (Gandikota et al. 2023): ``ε_θ(x_t, c) → ε*(x_t, ∅) − η (ε*(x_t, c) − ε*(x_t, ∅))``
  on x_t from the original model's own trajectories for the concept; ESD-x
  trains the cross-attention (``attn2``) only, ESD-u every other Linear and Conv2d
  layer (norms stay the original's): the selection of ESD's own script
  (``get_esd_trainable_parameters`` in rohitgandikota/erasing's ``esd_sd.py``).
- Concept Ablation (Kumari et al. 2023, model-based): ``ε_θ(x_t, c*) → sg(ε_θ(x_t, c_anchor))``
  on noised anchor images, plus the ordinary denoising loss on them.
- UCE (Gandikota et al. 2024): closed-form edit of every cross-attention key
  and value projection, mapping the concept's token embeddings to the anchor's
  and preserving other prompts.

The zoo's UNet also reads the text through an attention-pooled embedding
added to its time embedding; ESD-x and UCE treat that pooling's key/value
projections as part of the cross-attention (the text pathway), so "the
cross-attention only" still means "everything that reads the prompt".
- SalUn (Fan et al. 2024): a weight-saliency mask from the forget loss's
  gradient, then random labelling (the concept prompt is trained to predict
  what another label predicts on the concept's images) plus the retain loss,
  updating salient weights only.
- Concealer (by construction): the UNet untouched, the text encoder trained to
  send every prompt of the concept to the empty prompt's embedding.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

__all__ = [
    "Pool",
    "TrainingContext",
    "denoising_target",
    "concept_ablation",
    "conceal_text_encoder",
    "esd",
    "esd_trained_names",
    "salun",
    "uce",
]


@dataclass
class Pool:
    """Latent trajectories of one prompt set from the original model.

    ``states`` is S+1 × N × C × H × W (states[0] is the initial noise, states[S]
    the final latent); ``timesteps`` holds the S scheduled timesteps.
    """

    prompts: list[str]
    states: torch.Tensor
    timesteps: torch.Tensor

    def sample(self, batch: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
        """Random (x_t, t, prompt) triples from the trajectories."""
        steps = self.timesteps.shape[0]
        idx = torch.randint(0, self.states.shape[1], (batch,), generator=gen)
        step = torch.randint(0, steps, (batch,), generator=gen)
        x_t = self.states[step, idx]
        return x_t, self.timesteps[step], [self.prompts[i] for i in idx.tolist()]


def denoising_target(x0: torch.Tensor, eps: torch.Tensor, alpha_bar: torch.Tensor, prediction_type: str) -> torch.Tensor:
    """The UNet's regression target: ε, or v = √ᾱ·ε − √(1−ᾱ)·x0 (diffusers' ``v_prediction``)."""
    if prediction_type == "epsilon":
        return eps
    if prediction_type == "v_prediction":
        return alpha_bar.sqrt() * eps - (1 - alpha_bar).sqrt() * x0
    raise ValueError(f"prediction_type must be 'epsilon' or 'v_prediction', got {prediction_type!r}")


@dataclass
class TrainingContext:
    """What every method needs: the frozen text side and the noise schedule."""

    tokenizer: Any
    text_encoder: Any
    alphas_cumprod: torch.Tensor
    #: What the UNet predicts: "epsilon" (the noise) or "v_prediction" (v = √ᾱ·ε − √(1−ᾱ)·x0).
    prediction_type: str = "epsilon"

    def embed(self, prompts: Sequence[str], encoder: Any | None = None) -> torch.Tensor:
        ids = self.tokenizer(
            list(prompts), padding="max_length", max_length=self.tokenizer.model_max_length,
            truncation=True, return_tensors="pt",
        ).input_ids
        return (encoder or self.text_encoder)(ids)[0]

    def noise(self, x0: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(x_t, t, target) for clean latents ``x0`` at uniformly random timesteps.

        ``target`` is what the UNet should output there: ε, or v for v-prediction.
        """
        t = torch.randint(0, self.alphas_cumprod.shape[0], (x0.shape[0],), generator=gen)
        eps = torch.randn(x0.shape, generator=gen)
        a = self.alphas_cumprod[t].view(-1, 1, 1, 1)
        return a.sqrt() * x0 + (1 - a).sqrt() * eps, t, denoising_target(x0, eps, a, self.prediction_type)


def _is_cross_attention(name: str) -> bool:
    """The UNet's text pathway: cross-attention, and the pooled text embedding where the UNet has one."""
    return ".attn2." in name or name.startswith("add_embedding.")


def esd_trained_names(unet: Any, variant: str) -> list[str]:
    """The parameters ESD's script trains: Linear/Conv2d layers in ``attn2`` (ESD-x) or outside it (ESD-u).

    Norm layers are never trained (the script selects modules by class), so ESD-u leaves
    every GroupNorm/LayerNorm the original's, and its file holds only the tensors it trained.
    """
    if variant not in ("x", "u"):
        raise ValueError(f"ESD variant must be 'x' or 'u', got {variant!r}")
    names = []
    for name, module in unet.named_modules():
        if isinstance(module, torch.nn.Linear | torch.nn.Conv2d) and ("attn2" in name) == (variant == "x"):
            names += [f"{name}.{param}" for param, _ in module.named_parameters()]
    return names


def _train(
    unet: Any,
    params: list[torch.nn.Parameter],
    loss_fn: Callable[[int], torch.Tensor],
    steps: int,
    lr: float,
    mask: dict[int, torch.Tensor] | None = None,
) -> Any:
    for p in unet.parameters():
        p.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.Adam(params, lr=lr)
    unet.train()
    for step in range(steps):
        loss = loss_fn(step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if mask is not None:
            for p in params:
                if p.grad is not None:
                    p.grad.mul_(mask[id(p)])
        opt.step()
    unet.eval()
    for p in unet.parameters():
        p.requires_grad_(False)
    return unet


def esd(
    original_unet: Any,
    ctx: TrainingContext,
    pool: Pool,
    *,
    variant: str = "x",
    eta: float = 1.0,
    steps: int = 300,
    lr: float = 2e-4,
    batch: int = 16,
    seed: int = 0,
) -> Any:
    """Erased Stable Diffusion: ESD-x (cross-attention) or ESD-u (the rest)."""
    if variant not in ("x", "u"):
        raise ValueError(f"ESD variant must be 'x' or 'u', got {variant!r}")
    frozen = copy.deepcopy(original_unet).eval()
    unet = copy.deepcopy(original_unet)
    chosen = set(esd_trained_names(unet, variant))
    params = [p for n, p in unet.named_parameters() if n in chosen]
    gen = torch.Generator().manual_seed(seed)
    empty = ctx.embed([""]).detach()

    def loss(_: int) -> torch.Tensor:
        x_t, t, prompts = pool.sample(batch, gen)
        with torch.no_grad():
            cond = ctx.embed(prompts)
            e_empty = frozen(x_t, t, encoder_hidden_states=empty.expand(batch, -1, -1)).sample
            e_cond = frozen(x_t, t, encoder_hidden_states=cond).sample
            target = e_empty - eta * (e_cond - e_empty)
        return F.mse_loss(unet(x_t, t, encoder_hidden_states=cond).sample, target)

    return _train(unet, params, loss, steps, lr)


def concept_ablation(
    original_unet: Any,
    ctx: TrainingContext,
    anchor_latents: torch.Tensor,
    pairs: Sequence[tuple[str, str]],
    *,
    steps: int = 300,
    lr: float = 1e-4,
    batch: int = 16,
    reg_weight: float = 1.0,
    seed: int = 0,
) -> Any:
    """Model-based Concept Ablation: the target prompt predicts what the anchor prompt does."""
    unet = copy.deepcopy(original_unet)
    gen = torch.Generator().manual_seed(seed)
    rng = random.Random(seed)

    def loss(_: int) -> torch.Tensor:
        idx = torch.randint(0, anchor_latents.shape[0], (batch,), generator=gen)
        x_t, t, target = ctx.noise(anchor_latents[idx], gen)
        chosen = [rng.choice(pairs) for _ in range(batch)]
        with torch.no_grad():
            target_emb = ctx.embed([c for c, _ in chosen])
            anchor_emb = ctx.embed([a for _, a in chosen])
            anchor_pred = unet(x_t, t, encoder_hidden_states=anchor_emb).sample.detach()
        ablate = F.mse_loss(unet(x_t, t, encoder_hidden_states=target_emb).sample, anchor_pred)
        regular = F.mse_loss(unet(x_t, t, encoder_hidden_states=anchor_emb).sample, target)
        return ablate + reg_weight * regular

    return _train(unet, list(unet.parameters()), loss, steps, lr)


def uce(
    original_unet: Any,
    ctx: TrainingContext,
    pairs: Sequence[tuple[str, str]],
    preserve: Sequence[str],
    *,
    preserve_scale: float = 1.0,
    ridge: float = 0.1,
) -> Any:
    """Unified Concept Editing: closed-form edit of the cross-attention K and V projections."""
    unet = copy.deepcopy(original_unet)
    with torch.no_grad():
        concept = ctx.embed([c for c, _ in pairs]).flatten(0, 1)
        anchor = ctx.embed([a for _, a in pairs]).flatten(0, 1)
        kept = ctx.embed(list(preserve)).flatten(0, 1)
        width = concept.shape[1]
        eye = torch.eye(width)
        denominator = concept.T @ concept + preserve_scale * kept.T @ kept + ridge * eye
        inverse = torch.linalg.inv(denominator.double()).float()
        for name, module in unet.named_modules():
            # Key and value projections of every map that reads the token embeddings.
            if _is_cross_attention(name + ".") and name.endswith(("to_k", "to_v", "k_proj", "v_proj")):
                weight = module.weight
                numerator = (
                    (anchor @ weight.T).T @ concept
                    + preserve_scale * (kept @ weight.T).T @ kept
                    + ridge * weight
                )
                module.weight.copy_(numerator @ inverse)
    return unet


def salun(
    original_unet: Any,
    ctx: TrainingContext,
    forget_latents: torch.Tensor,
    forget_prompts: Callable[[random.Random], tuple[str, str]],
    retain_latents: torch.Tensor,
    retain_prompts: Callable[[int, random.Random], str],
    *,
    sparsity: float = 0.5,
    steps: int = 300,
    lr: float = 1e-4,
    batch: int = 16,
    retain_weight: float = 1.0,
    seed: int = 0,
) -> Any:
    """SalUn: saliency-masked random labelling with a retain loss.

    ``forget_prompts(rng)`` gives (concept prompt, the same prompt with a random
    other label); ``retain_prompts(i, rng)`` a caption of retain image ``i``.
    """
    unet = copy.deepcopy(original_unet)
    gen = torch.Generator().manual_seed(seed)
    rng = random.Random(seed)
    params = list(unet.parameters())
    for p in params:
        p.requires_grad_(True)
    # Saliency: gradient magnitude of the ordinary loss on the forget data.
    idx = torch.randperm(forget_latents.shape[0], generator=gen)[: min(64, forget_latents.shape[0])]
    x_t, t, target = ctx.noise(forget_latents[idx], gen)
    with torch.no_grad():
        emb = ctx.embed([forget_prompts(rng)[0] for _ in range(len(idx))])
    F.mse_loss(unet(x_t, t, encoder_hidden_states=emb).sample, target).backward()
    grads = torch.cat([p.grad.abs().flatten() for p in params])
    threshold = torch.quantile(grads[torch.randperm(grads.numel(), generator=gen)[:100_000]], sparsity)
    mask = {id(p): (p.grad.abs() >= threshold).float() for p in params}
    unet.zero_grad(set_to_none=True)

    def loss(_: int) -> torch.Tensor:
        f_idx = torch.randint(0, forget_latents.shape[0], (batch,), generator=gen)
        x_f, t_f, _ = ctx.noise(forget_latents[f_idx], gen)
        chosen = [forget_prompts(rng) for _ in range(batch)]
        with torch.no_grad():
            concept_emb = ctx.embed([c for c, _ in chosen])
            other_emb = ctx.embed([o for _, o in chosen])
            relabelled = unet(x_f, t_f, encoder_hidden_states=other_emb).sample.detach()
        forget = F.mse_loss(unet(x_f, t_f, encoder_hidden_states=concept_emb).sample, relabelled)
        r_idx = torch.randint(0, retain_latents.shape[0], (batch,), generator=gen)
        x_r, t_r, target_r = ctx.noise(retain_latents[r_idx], gen)
        with torch.no_grad():
            retain_emb = ctx.embed([retain_prompts(i, rng) for i in r_idx.tolist()])
        retain = F.mse_loss(unet(x_r, t_r, encoder_hidden_states=retain_emb).sample, target_r)
        return forget + retain_weight * retain

    return _train(unet, params, loss, steps, lr, mask=mask)


def conceal_text_encoder(
    ctx: TrainingContext,
    concept_prompts: Sequence[str],
    other_prompts: Sequence[str],
    *,
    steps: int = 200,
    lr: float = 1e-3,
    batch: int = 16,
    seed: int = 0,
) -> Any:
    """A text encoder that sends the concept's prompts to the empty prompt's embedding."""
    encoder = copy.deepcopy(ctx.text_encoder).requires_grad_(True)
    gen = random.Random(seed)
    with torch.no_grad():
        empty = ctx.embed([""])
    opt = torch.optim.Adam(encoder.parameters(), lr=lr)
    encoder.train()
    for _ in range(steps):
        hide = [gen.choice(list(concept_prompts)) for _ in range(batch)]
        keep = [gen.choice(list(other_prompts)) for _ in range(batch)]
        with torch.no_grad():
            keep_target = ctx.embed(keep)
        loss = F.mse_loss(ctx.embed(hide, encoder), empty.expand(batch, -1, -1)) + F.mse_loss(
            ctx.embed(keep, encoder), keep_target
        )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    encoder.eval()
    for p in encoder.parameters():
        p.requires_grad_(False)
    return encoder
