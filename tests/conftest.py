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
