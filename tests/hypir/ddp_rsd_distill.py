"""Run by tests/hypir/test_rsd_distill.py under ``torchrun --nproc_per_node 2``: a tiny distillation
of the teacher ``argv[1]`` into ``argv[2]``; each rank writes its generator and fake score to
``<out>/rank<R>.safetensors``."""
import sys
from pathlib import Path

from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).parent))
from test_rsd_distill import tiny  # noqa: E402

from hypir.rsd.distill import Distiller  # noqa: E402


def main(teacher: str, out: str) -> None:
    from accelerate import Accelerator

    accelerator = Accelerator(cpu=True)
    d = Distiller(tiny(teacher, out, **{"optim.batch_size": 2, "run.steps": 3}), accelerator=accelerator, progress=False)
    d.train()
    state = {f"g.{k}": p.detach().contiguous() for k, p in d.named_g.items()}
    state.update({f"f.{k}": p.detach().contiguous() for k, p in d.named_f.items()})
    meta = {"processes": str(accelerator.num_processes), "distributed": accelerator.distributed_type.value}
    save_file(state, str(Path(out) / f"rank{accelerator.process_index}.safetensors"), metadata=meta)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
