from hypir_kernels.testing import skip_gpu_tests_without_cuda


def pytest_collection_modifyitems(config, items):
    skip_gpu_tests_without_cuda(items)
