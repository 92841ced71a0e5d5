"""Run by tests/hypir/test_train_ddp.py, once under ``torchrun --nproc_per_node 2`` and once as a
single process: the same tiny run with a global batch of 2 (1 sample x 2 processes, or 1 sample x
2 accumulated micro-batches); each rank writes its final weights to ``<out>/rank<R>.safetensors``."""
import sys
from pathlib import Path

from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).parent))
from test_train_trainer import tiny_config  # noqa: E402

from hypir.train import HypirTrainer  # noqa: E402


def main(out: str) -> None:
    from accelerate import Accelerator

    accelerator = Accelerator(cpu=True)
    world = accelerator.num_processes
    cfg = tiny_config(out, data={"batch_size": 1, "accumulation": 2 // world}, run={"steps": 2})
    trainer = HypirTrainer(cfg, accelerator=accelerator, progress=False)
    trainer.train()
    state = {f"g/{k}": p.detach().contiguous() for k, p in trainer.g_named.items()}
    state.update({f"d/{k}": v.contiguous() for k, v in trainer._disc.heads.state_dict().items()})
    meta = {"processes": str(world), "distributed": accelerator.distributed_type.value}
    save_file(state, str(Path(out) / f"rank{accelerator.process_index}.safetensors"), metadata=meta)


if __name__ == "__main__":
    main(sys.argv[1])
