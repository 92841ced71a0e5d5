"""Stored expected outputs of the released HYPIR enhancer (``expected/released_expected.safetensors``):
the oracle ``released_enhancer.enhance`` run once on the tiny test model, fp32, CPU, posterior
mean, for the cases in :data:`CASES`, frozen so the released preset is also checked against
numbers that do not move when the oracle or the restorer is edited.

    python tests/hypir/released_expected.py    # regenerate (after a change to hypir.testing's models)

The file's metadata holds a checksum of the tiny model and LoRA it was made with; a test that finds
another checksum says the model changed (regenerate), not that the preset drifted."""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F

STORED = Path(__file__).with_name("expected") / "released_expected.safetensors"
CASES = [(24, 40, 4), (37, 29, 2)]  # (h, w, upscale); the 130x136 case (2.5 MB) is checked live only


def case_key(h: int, w: int, s: int) -> str:
    return f"{h}x{w}x{s}"


def case_image(h: int, w: int, seed: int = 0) -> torch.Tensor:
    """``[1, 3, h, w]``: smooth colour plus noise, the right half hard 0/1 edges (bicubic overshoots)."""
    g = torch.Generator().manual_seed(seed)
    smooth = F.interpolate(torch.rand(1, 3, 4, 4, generator=g), size=(h, w), mode="bilinear")
    x = (smooth + 0.3 * torch.rand(1, 3, h, w, generator=g)).clamp(0, 1)
    x[..., :, w // 2:] = (x[..., :, w // 2:] > 0.5).float()
    return x


def model_checksum(components) -> str:
    """Sums of the UNet (with LoRA), VAE and text encoder weights, float64, to 6 significant digits."""
    parts = []
    for m in (components.unet, components.vae, components.text_encoder):
        parts.append(f"{sum(float(p.double().abs().sum()) for p in m.state_dict().values()):.6e}")
    return ",".join(parts)


def build(root: Path):
    """The tiny model and rank-8 LoRA of ``tests/hypir/conftest.py`` (same builders, same seeds),
    loaded as the official enhancer would (peft adapters, unmerged); returns the components."""
    from hypir.models import lora as hypir_lora
    from hypir.models import save_checkpoint
    from hypir.models.lora import LoraSpec
    from hypir.models.components import load_components
    from hypir.testing import tiny_components, trained_like_unet

    tiny_components(root / "tokenizer-src").save_pretrained(root / "model")
    ckpt = save_checkpoint(trained_like_unet(tiny_components(root / "tok"), LoraSpec(rank=8)).unet, root / "hypir.pth")
    components = load_components(root / "model")
    hypir_lora.load_checkpoint(components.unet, ckpt)
    for m in (components.vae, components.unet, components.text_encoder):
        m.eval().requires_grad_(False)
    return components, root / "model", ckpt


def regenerate() -> None:
    from safetensors.torch import save_file

    sys.path.insert(0, str(Path(__file__).parent))
    from released_enhancer import enhance

    with tempfile.TemporaryDirectory() as tmp:
        components, _, _ = build(Path(tmp))
        tensors = {case_key(*c): enhance(components, case_image(*c[:2]), c[2])[0].contiguous() for c in CASES}
        STORED.parent.mkdir(exist_ok=True)
        save_file(tensors, str(STORED), metadata={"model_checksum": model_checksum(components),
                                                   "torch": torch.__version__, "made_by": "tests/hypir/released_expected.py"})
    print(f"wrote {STORED} ({', '.join(tensors)})")


if __name__ == "__main__":
    regenerate()
