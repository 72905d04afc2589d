"""Whole-batch augmentation and the DDP sharding rule."""

from __future__ import annotations

import torch

from cnnlab.data import BatchLoader, ImageDataset, Preprocess, load_dataset
from cnnlab.data.batches import random_crop, random_flip, scaling_stats


def _digits() -> ImageDataset:
    return load_dataset("digits", "train")


def test_random_crop_is_a_shift_with_zero_fill():
    images = _digits().images[:64]
    generator = torch.Generator().manual_seed(1)
    cropped = random_crop(images, 2, generator)
    padded = torch.nn.functional.pad(images, (2, 2, 2, 2))
    for image, out in zip(padded, cropped):
        # every crop must equal one of the 25 windows of the padded image
        windows = [image[:, dy : dy + 8, dx : dx + 8] for dy in range(5) for dx in range(5)]
        assert any(torch.equal(out, w) for w in windows)
    assert not torch.equal(cropped, images)  # with 64 images, some shift is non-zero


def test_random_flip_mirrors_about_half():
    images = _digits().images[:200]
    flipped = random_flip(images, torch.Generator().manual_seed(0))
    mirrored = [
        torch.equal(f, i.flip(-1)) and not torch.equal(f, i) for f, i in zip(flipped, images)
    ]
    kept = [torch.equal(f, i) for f, i in zip(flipped, images)]
    assert all(m or k for m, k in zip(mirrored, kept))
    assert 60 < sum(mirrored) < 140


def test_preprocess_normalizes_with_the_given_statistics():
    data = _digits()
    mean, std = data.channel_stats()
    out = Preprocess(mean, std)(data.images)
    assert out.dtype == torch.float32
    assert abs(out.mean().item()) < 1e-4 and abs(out.std().item() - 1) < 1e-3


def test_ranks_split_each_global_batch_exactly():
    data = _digits()
    single = BatchLoader(data, 64, shuffle=True, seed=3, drop_last=True)
    ranks = [
        BatchLoader(data, 64, shuffle=True, seed=3, rank=r, world_size=2, drop_last=True)
        for r in range(2)
    ]
    for loader in (single, *ranks):
        loader.set_epoch(5)
    assert len(single) == len(ranks[0]) == len(ranks[1]) == 1437 // 64
    for (whole, _), (a, _), (b, _) in zip(single, *ranks):
        assert sorted(map(bytes, whole.numpy())) == sorted(map(bytes, torch.cat([a, b]).numpy()))


def test_epochs_reshuffle_and_evaluation_keeps_order():
    data = _digits()
    loader = BatchLoader(data, 100, shuffle=True, seed=0)
    first = torch.cat([labels for _, labels in loader])
    loader.set_epoch(1)
    assert not torch.equal(first, torch.cat([labels for _, labels in loader]))
    ordered = BatchLoader(data, 100, shuffle=False)
    assert torch.equal(torch.cat([labels for _, labels in ordered]), data.labels)


def test_input_scalings_give_raw_unit_and_standard_pixels():
    data = _digits()
    raw = Preprocess(*scaling_stats(data, "none"))(data.images)
    assert torch.equal(raw, data.images.float())  # exactly 0..255, no rounding
    unit = Preprocess(*scaling_stats(data, "unit"))(data.images)
    assert torch.equal(unit, data.images.float() / 255)
    standard = Preprocess(*scaling_stats(data, "standard"))(data.images)
    assert torch.equal(standard, Preprocess(*data.channel_stats())(data.images))
    assert abs(standard.mean().item()) < 1e-4


def test_training_without_shuffle_keeps_the_stored_order_on_every_rank():
    data = _digits()
    single = BatchLoader(data, 64, shuffle=False, seed=3, drop_last=True)
    ranks = [
        BatchLoader(data, 64, shuffle=False, seed=3, rank=r, world_size=2, drop_last=True)
        for r in range(2)
    ]
    for epoch in (0, 4):
        for loader in (single, *ranks):
            loader.set_epoch(epoch)
        batches = [labels for _, labels in single]
        assert torch.equal(torch.cat(batches), data.labels[: 1437 // 64 * 64])
        for whole, (_, a), (_, b) in zip(batches, *ranks):  # the ranks take turns along it
            assert torch.equal(whole[0::2], a) and torch.equal(whole[1::2], b)
