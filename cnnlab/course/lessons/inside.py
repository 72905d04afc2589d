"""The lessons that look inside trained networks, then transfer learning and graphs."""

from __future__ import annotations

from .lesson import PHOTO, RUNS, Lesson

LESSONS = (
    # ------------------------------------------------------------------- seeing inside
    Lesson(
        "feature-maps",
        "seeing inside",
        "Feature maps",
        "cnnlab show featuremaps lenet test:1",
        "early maps are edges of the digit; later ones coarse blobs",
        RUNS,
        explorer="cnnlab serve: 'Feature maps, layer by layer' and 'Trace one number'",
    ),
    Lesson(
        "learned-filters",
        "seeing inside",
        "Learned filters against classic ones",
        "cnnlab show learned-filters lenet",
        "first-layer filters named after the nearest of Sobel-x/y, Laplacian, Gaussian, ... "
        "with the correlation r",
        RUNS,
    ),
    Lesson(
        "top-activations",
        "seeing inside",
        "What deeper layers respond to (Zeiler & Fergus)",
        "cnnlab show top-activations lenet --layer features.3 --per-channel 6",
        "each channel's favourite images and the receptive field boxed: loops, bars, corners",
        RUNS + " --images 300 --channels 4",
    ),
    Lesson(
        "grad-cam",
        "seeing inside",
        "Grad-CAM: where the network looks",
        f"cnnlab show cam cifar {PHOTO} --class cat",
        "the heat map over the cat's face, not the background",
        RUNS,
        explorer="cnnlab serve: the Prediction and Grad-CAM panels",
    ),
    Lesson(
        "saliency",
        "seeing inside",
        "Saliency: which pixels matter",
        "cnnlab show saliency lenet test:2",
        "the gradient is large on the stroke",
        RUNS,
    ),
    Lesson(
        "robustness",
        "seeing inside",
        "Robustness to noise and distortion (LeNet's demo)",
        "cnnlab show robustness lenet test:0",
        "confidence falls slowly under noise and elastic distortion, fast under big shifts; "
        "the worst case's feature maps",
        RUNS + " --steps 3",
    ),
    Lesson(
        "translation",
        "seeing inside",
        "Translation equivariance, until pooling",
        "cnnlab show translation lenet test:0 --shift 2",
        "convolution maps shift by 2 (error 0), pooled ones by 1 cell; where the error jumps "
        "is where equivariance breaks; whether the prediction holds",
        RUNS,
    ),
    Lesson(
        "receptive-field-origin",
        "seeing inside",
        "Local receptive fields, from Hubel and Wiesel's cat to C3",
        "cnnlab trace lenet test:0 --step features.3 --at 0,5,5",
        "the unit reads a 5x5 window of S2 and, through C1 and S2, a 14x14 patch of the image: "
        "local, and larger with depth. Hubel and Wiesel found the same in the cat's visual "
        "cortex: simple cells (1959, 1962) answer to an edge at one orientation in a small "
        "patch of the retina, complex cells to such edges over a larger patch, and the 1968 "
        "monkey study extended the hierarchy; LeNet's local, shared filters are that idea",
        RUNS,
    ),
    Lesson(
        "position-matters",
        "seeing inside",
        "When translation invariance is not wanted",
        "cnnlab show translation lenet test:0 --shift 6",
        "convolutions shift with the digit, but LeNet's flatten and fully connected layers "
        "read each value at its place, so a 6-pixel shift can change the answer. On a chest "
        "X-ray (the heart on the left) or an ID photo (the face at a fixed place) position "
        "is meaningful: keep the flatten head (or add coordinates as input channels), and do "
        "not add global average pooling or shift augmentation, which teach the network to "
        "ignore where things are",
        RUNS,
    ),
    Lesson(
        "backprop-one-step",
        "seeing inside",
        "One real SGD step, layer by layer",
        "cnnlab backprop lenet test:0",
        "from the output down: the delta's size at each layer, max pooling sending it to one "
        "cell in four, each ReLU passing it only where z > 0, each filter rotated by 180 "
        "degrees, every rule against autograd (about 1e-8), the update's size relative to the "
        "weights (about 1e-3 of |W| and less), and the loss after the step",
        RUNS,
    ),
    # -------------------------------------------------------------- beyond the basics
    Lesson(
        "transfer-learning",
        "transfer and graphs",
        "Transfer learning",
        "cnnlab transfer --from lenet --dataset fashion-mnist --strategy feature-extract",
        "only the new head learns; accuracy well above chance after one epoch",
        "--runs-dir {runs} --epochs 1 --train-subset 600 --test-subset 200 --no-progress "
        "--name transfer-quick --overwrite",
    ),
    Lesson(
        "transfer-advisor",
        "transfer and graphs",
        "Which layers to retrain: the four-quadrant rule",
        "cnnlab transfer --from lenet --dataset fashion-mnist --strategy auto",
        "the rule's choice and its reason, printed before training: 6,000 images per class "
        "counts as large, so the later blocks retrain with the head; with --train-subset 600 "
        "(60 per class, small) it keeps the features and trains only the head",
        "--runs-dir {runs} --epochs 1 --train-subset 600 --test-subset 200 --no-progress "
        "--name advisor-quick --overwrite",
    ),
    Lesson(
        "graph-convolution",
        "transfer and graphs",
        "Graph convolution on the karate club",
        "cnnlab graph train --dataset karate",
        "two communities found from 34 nodes' links",
        "--epochs 5 --runs-dir {scratch} --no-progress",
    ),
    Lesson(
        "graph-readout",
        "transfer and graphs",
        "Graph readout: mean, sum or max",
        "cnnlab graph train --dataset mutag --readout sum",
        "how a graph's node vectors become one vector; mean is the course's choice",
        "--epochs 1 --runs-dir {scratch} --no-progress",
    ),
)
