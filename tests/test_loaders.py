"""In-memory data sets are batched by gathering, with exactly the batches a DataLoader would give."""
import torch
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from ablate.loaders import TensorBatches


def test_tensor_batches_equal_a_dataloaders():
    data = TensorDataset(torch.randn(103, 3, 4, 4), torch.arange(103))
    sampler = DistributedSampler(data, num_replicas=2, rank=1, shuffle=True, seed=5)
    for drop_last in (True, False):
        for epoch in (0, 1):
            sampler.set_epoch(epoch)
            ours = list(TensorBatches(data, sampler, 8, drop_last, torch.device("cpu")))
            theirs = list(DataLoader(data, batch_size=8, sampler=sampler, drop_last=drop_last))
            assert len(ours) == len(theirs) == len(TensorBatches(data, sampler, 8, drop_last, torch.device("cpu")))
            for (x, y), (tx, ty) in zip(ours, theirs):
                assert torch.equal(x, tx) and torch.equal(y, ty)
