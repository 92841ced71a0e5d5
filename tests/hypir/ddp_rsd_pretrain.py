"""Run by tests/hypir/test_rsd_pretrain.py under ``torchrun --nproc_per_node 2``: a tiny RSD
pretraining run; each rank writes its final weights to ``<out>/rank<R>.safetensors``."""
import sys
from pathlib import Path

from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).parent))
from test_rsd_pretrain import tiny  # noqa: E402

from hypir.rsd.pretrain import Pretrainer  # noqa: E402


def main(out: str) -> None:
    from accelerate import Accelerator

    accelerator = Accelerator(cpu=True)
    trainer = Pretrainer(tiny("inpainting", out, **{"optim.batch_size": 4, "run.steps": 3}), accelerator=accelerator,
                         progress=False)
    trainer.train()
    state = {k: p.detach().contiguous() for k, p in trainer.named.items()}
    meta = {"processes": str(accelerator.num_processes), "distributed": accelerator.distributed_type.value}
    save_file(state, str(Path(out) / f"rank{accelerator.process_index}.safetensors"), metadata=meta)


if __name__ == "__main__":
    main(sys.argv[1])
