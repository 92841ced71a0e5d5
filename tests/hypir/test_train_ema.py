import pytest
import torch

from hypir.train.ema import EMA


def test_ema_update_and_applied():
    p = torch.nn.Parameter(torch.zeros(3))
    ema = EMA({"p": p}, decay=0.9)
    with torch.no_grad():
        p.fill_(1.0)
    ema.update()
    torch.testing.assert_close(ema.shadow["p"], torch.full((3,), 0.1))
    ema.update()
    torch.testing.assert_close(ema.shadow["p"], torch.full((3,), 0.19))
    with ema.applied():
        torch.testing.assert_close(p.detach(), torch.full((3,), 0.19))
    assert torch.equal(p.detach(), torch.ones(3))
    with pytest.raises(ValueError, match="ema"):
        ema.load_state_dict({"q": torch.zeros(3)})
    with pytest.raises(ValueError, match="decay"):
        EMA({"p": p}, decay=1.0)
