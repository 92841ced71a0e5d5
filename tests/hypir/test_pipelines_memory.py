"""Peak-memory measurement, the fitted model, and tile plans under a budget."""
import pytest
import torch

from hypir.pipelines.memory import MARGIN, MemoryModel, PeakMemory, fit_memory_model, plan_auto, plan_fixed


def test_cpu_peak_counts_live_allocations_not_views_or_freed_memory():
    x = torch.randn(1000)
    with PeakMemory("cpu") as m:
        a = x * 2  # 4000 B
        b = a.view(10, 100)  # view: nothing new
        a.add_(1)  # in place: nothing new
        c = torch.empty(2000)  # 8000 B -> 12000 live
        del c
        d = torch.empty(500)  # 2000 B -> 6000 live
    assert m.peak == 12000
    del a, b, d


def test_fit_recovers_linear_and_quadratic_costs():
    def make(s):
        return torch.empty(s, s)

    def linear(x):
        return torch.empty(x.numel() * 3), torch.empty(100)  # 12 B / px + 400 B

    model = fit_memory_model(linear, make, (8, 16, 24), "cpu")
    assert model.per_pixel == pytest.approx(12) and model.per_pixel_sq == 0 and model.fixed == pytest.approx(400)
    assert model.bytes(1000, 2) == int(MARGIN * (400 + 2 * 12 * 1000))

    def quadratic(x):
        return torch.empty(x.numel() ** 2)

    q = fit_memory_model(quadratic, make, (8, 16, 24), "cpu")
    for s in (8, 16, 24, 64):
        assert q.bytes(s * s) >= 4 * s**4  # bounds the quadratic cost from above, also beyond the probes


def test_auto_plan_uses_one_tile_when_it_fits_and_the_largest_tile_that_fits_otherwise():
    model = MemoryModel(fixed=1000, per_pixel=10)
    whole = plan_auto(model, 100, 80, align=8, step=1, budget=10**9)
    assert whole.tile is None and whole.batch == 1
    budget = model.bytes(40 * 40)
    p = plan_auto(model, 100, 80, align=8, step=1, budget=budget, batch=1)
    assert p.tile == 40 and p.stride == 30 and p.estimate <= budget
    assert model.bytes(48 * 48) > budget
    larger = plan_auto(model, 100, 80, align=8, step=1, budget=3 * budget)
    assert larger.tile == 64 and larger.estimate <= 3 * budget  # a larger budget buys a larger tile first
    with pytest.raises(ValueError, match="max_memory: .* too small"):
        plan_auto(model, 100, 80, align=8, step=1, budget=model.bytes(7 * 7))


def test_fixed_plan_keeps_the_tile_and_sizes_the_batch():
    model = MemoryModel(fixed=0, per_pixel=1)
    p = plan_fixed(model, 128, 128, 64, 32, budget=model.bytes(64 * 64, 4))
    assert (p.tile, p.stride, p.batch) == (64, 32, 4)
    assert plan_fixed(model, 64, 64, 64, 32, budget=1).tile is None  # one tile covers the image
