"""``python -m hypir_kernels.info``: versions, extension build and backend choices (the code is in
``_info``; a submodule named like the function ``hypir_kernels.info`` would replace it on import)."""
from ._info import collect, format_info, main

__all__ = ["collect", "format_info", "main"]

if __name__ == "__main__":
    main()
