"""The lesson index: every concept of the course, in teaching order, with the one command that
shows it and what to look for in the result. The one source of ``cnnlab lessons`` and of
``docs/lessons.md`` (written by ``cnnlab lessons --markdown``, :mod:`cnnlab.cli.lessons`; a
test checks it is current and runs every command at small sizes, so the index cannot rot).

Commands name the runs the training lessons make: ``lenet`` (LeNet-5 on MNIST) and ``cifar``
(a residual CNN on CIFAR-10), and read photos from ``$CNNLAB_DATA/photos``.
"""

from __future__ import annotations

from . import basics, inside

LESSONS = (*basics.LESSONS, *inside.LESSONS)
