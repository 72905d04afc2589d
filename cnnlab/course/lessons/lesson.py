"""One lesson of the index, and the arguments the index test adds to run its command small."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Lesson:
    """One concept: ``command`` is what a learner types; ``quick`` are the arguments the index
    test adds to run it small (``{runs}``: the test's runs folder, ``{scratch}``: an empty one);
    ``pending`` marks a command whose feature has not landed yet."""

    name: str
    part: str
    title: str
    command: str
    look_for: str
    quick: str = ""
    explorer: str = ""
    pending: bool = False


RUNS = "--runs-dir {runs}"
TRAIN = "--epochs 1 --train-subset 600 --test-subset 200 --runs-dir {scratch} --no-progress"
CIFAR = (
    "--epochs 1 --train-subset 128 --test-subset 100 --runs-dir {scratch} --no-progress "
    "--data-variant subset"
)  # its 128-channel convolutions are slow on a CPU
PHOTO = "$CNNLAB_DATA/photos/chelsea.png"
