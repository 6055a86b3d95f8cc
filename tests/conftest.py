"""Shared test set-up."""
import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _one_intra_op_thread():
    """The tests use tiny tensors: one intra-op thread is faster and does not oversubscribe the CPU
    while subprocess runs (torchrun, resume) use the other core."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def pytest_collection_modifyitems(items):
    """Files with end-to-end (slow) tests first: under pytest-xdist (``make test``) the longest files then start
    while the other process works through the short ones, instead of one of them finishing alone at the end."""
    slow_files = {item.nodeid.split("::")[0] for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.nodeid.split("::")[0] not in slow_files)  # stable: file order kept otherwise
