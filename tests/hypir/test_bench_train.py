"""hypir.bench.train: both variants run the same training step, the anchor on plain peft layers
and BasicSR-style degradation ops."""
import math

from hypir.bench.degrade import BASICSR_OPS
from hypir.bench.train import batches, build, time_steps


def test_variants(tmp_path):
    ours = build("ours", str(tmp_path / "a"), width=32, rank=4, size=64, batch=1)
    released = build("released", str(tmp_path / "b"), width=32, rank=4, size=64, batch=1)
    lora_layer = lambda t: next(m for n, m in t._net.named_modules() if n.endswith("to_q"))  # noqa: E731
    assert getattr(lora_layer(ours), "_hk_patched", False) and ours.degrade_ops is None
    assert not getattr(lora_layer(released), "_hk_patched", False) and released.degrade_ops is BASICSR_OPS
    data = batches(ours, 1)
    a, b = ours.train_step(0, data), released.train_step(0, data)
    # same model, weights and draws: the first step's losses agree up to the Gaussian noise values
    assert math.isclose(a["lpips"], b["lpips"], rel_tol=0.2) and math.isclose(a["mse"], b["mse"], rel_tol=0.2)
    times = time_steps({"ours": ours, "released": released}, 2)
    assert {k: len(v) for k, v in times.items()} == {"ours": 2, "released": 2}
