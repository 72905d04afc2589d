"""The lesson index: every concept of the course, in teaching order, with the one command that
shows it and what to look for in the result. The one source of ``cnnlab lessons`` and of
``docs/lessons.md`` (written by ``cnnlab lessons --markdown``, :mod:`cnnlab.cli.lessons`; a
test checks it is current and runs every command at small sizes, so the index cannot rot).

Commands name the runs the training lessons make: ``lenet`` (LeNet-5 on MNIST) and ``cifar``
(a residual CNN on CIFAR-10), and read photos from ``$CNNLAB_DATA/photos``.
"""

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

LESSONS = (
    # ------------------------------------------------------------------ the convolution
    Lesson(
        "image-as-matrix",
        "convolution",
        "An image is a matrix of numbers",
        "cnnlab show pixels mnist:1 --crop 4,4,20,20",
        "a handwritten 2 as values 0 (black) .. 255 (white); the stroke is the large numbers",
    ),
    Lesson(
        "convolution-arithmetic",
        "convolution",
        "Correlation: a kernel slides over the image",
        "cnnlab example correlation",
        "each output is the sum of the kernel times the window under it, worked out",
    ),
    Lesson(
        "classic-filters",
        "convolution",
        "Classic filters: Sobel, Gaussian, Laplacian",
        f"cnnlab filter {PHOTO} --kernel sobel-x --side-by-side --out sobel-x.png",
        "vertical edges light up; the border follows OpenCV's filter2D (reflect-101)",
    ),
    Lesson(
        "output-size",
        "convolution",
        "Output size: (n + 2p - k) / s + 1",
        'cnnlab shapes "conv(6,5) relu pool(2) conv(16,5) relu pool(2) flatten fc(120) '
        'fc(84) fc(10)" --input 1x32x32',
        "the formula filled in for every layer, and LeNet-5's 16x5x5 before the flatten",
    ),
    Lesson(
        "padding-stride",
        "convolution",
        "Padding and stride",
        "cnnlab example padding-stride",
        "padding 1 keeps the border pixels in play; stride 2 halves the output side",
        explorer="cnnlab serve: the Arithmetic playground",
    ),
    Lesson(
        "channels",
        "convolution",
        "Channels: a filter spans every input channel",
        "cnnlab example parameters",
        "10 filters of 5x5x3 hold 10 x (5 x 5 x 3 + 1) = 760 parameters",
    ),
    Lesson(
        "stacked-small-filters",
        "convolution",
        "Two 3x3 convolutions against one 5x5",
        'cnnlab shapes --compare "conv(64,3) relu conv(64,3)" --compare "conv(64,5)" '
        "--input 64x32x32",
        "the same 5x5 receptive field with fewer parameters and one more non-linearity",
    ),
    Lesson(
        "grayscale",
        "convolution",
        "Grayscale input to save computation",
        "cnnlab train --model cifar_four --dataset cifar10 --image-channels 1 "
        "--image-size 32 --name cifar-gray",
        "the first layer's parameters and multiply-adds fall to a third; accuracy a little "
        "(30 epochs on 50,000 images: about 20 minutes on two CPU cores)",
        CIFAR,
    ),
    # ----------------------------------------------------------------------- pooling
    Lesson(
        "pooling",
        "pooling",
        "Max, average and min pooling",
        "cnnlab example pooling",
        "each 2x2 window becomes one number: its max, mean or min",
    ),
    Lesson(
        "pooling-on-a-photo",
        "pooling",
        "Pooling a real picture, and a strided convolution",
        f"cnnlab show pooling {PHOTO} --size 4",
        "max keeps bright details, min dark ones; average pooling equals a box-weight "
        "stride-4 convolution (difference 0)",
    ),
    Lesson(
        "l2-pooling",
        "pooling",
        "L2-norm pooling",
        'cnnlab shapes "conv(6,5) lppool(2,norm=2)" --input 1x28x28',
        "sqrt of the sum of squares per window: between average and max, no parameters",
    ),
    Lesson(
        "pool-or-stride",
        "pooling",
        "Pooling or a strided convolution",
        "cnnlab summary mnist_cnn -O downsample=stride",
        "the learned 2x2 stride-2 convolution adds parameters where max pooling has none",
    ),
    # ---------------------------------------------------------- activations and the head
    Lesson(
        "activations",
        "activations and dense layers",
        "Activation functions",
        "cnnlab show activations",
        "sigmoid's slope is at most 0.25, so 10 layers keep at most 9.5e-07 of a gradient; "
        "ReLU's slope is 1 where it is active",
    ),
    Lesson(
        "flatten-dense",
        "activations and dense layers",
        "Flatten and fully connected layers",
        "cnnlab summary lenet5",
        "C5 is a 5x5 convolution over the 16x5x5 maps (16*5*5 = 400 inputs per unit), so the "
        "flatten after it passes 120 values; C5 holds 48,120 of the 61,706 parameters, the two "
        "fully connected layers 11,014",
    ),
    Lesson(
        "gap-or-flatten",
        "activations and dense layers",
        "Global average pooling or flatten",
        "cnnlab summary mnist_cnn -O head=gap",
        "the fc layer shrinks from 9,216 x 128 inputs to 64: most parameters disappear",
    ),
    Lesson(
        "softmax-or-sigmoid",
        "activations and dense layers",
        "Softmax for many classes, a sigmoid for two",
        "cnnlab train --model cifar_four --dataset cifar10 --classes cat,dog -O binary=true "
        "--name cats-dogs",
        "one output logit instead of two: half the output parameters, the same accuracy "
        "(about 4 minutes on two CPU cores)",
        CIFAR,
    ),
    Lesson(
        "backprop-by-hand",
        "activations and dense layers",
        "Backpropagation step by step, on numbers",
        "cnnlab backprop --pool max",
        "the forward pass, then CBP1 at the output, BP3/BP4 for its weights, the delta "
        "up-sampled through the pooling (all of it to each window's winner), BP2 at the "
        "convolution, and its input gradient as the deltas convolved with the filter rotated "
        "by 180 degrees; the last line: autograd agrees to about 1e-17",
    ),
    Lesson(
        "backpropagation",
        "activations and dense layers",
        "Backpropagation and its gradients",
        "cnnlab show gradflow",
        "every weight's gradient norm, input to output: in the plain 18-layer stack the first "
        "layers get far less than the last",
        "cifar_residual:pairs=2,skip=false cifar_residual:pairs=2 --steps 1 --batch-size 8 "
        "--variant subset",
    ),
    # ---------------------------------------------------------------- the architectures
    Lesson(
        "lenet",
        "architectures",
        "LeNet-5 (1998)",
        "cnnlab summary lenet5",
        "two 5x5 conv + subsampling stages, C5, F6: 61,706 parameters",
    ),
    Lesson(
        "lenet1",
        "architectures",
        "LeNet-1 (1989), 4 and 12 feature maps",
        "cnnlab summary lenet1",
        "3,246 parameters against LeNet-5's 61,706",
    ),
    Lesson(
        "alexnet",
        "architectures",
        "AlexNet (2012)",
        "cnnlab summary alexnet2012",
        "11x11 stride-4 first layer, 227x227 input, 61M parameters mostly in the fc layers",
    ),
    Lesson(
        "alexnet-augmentation",
        "architectures",
        "AlexNet's augmentation",
        f"cnnlab show augmentations {PHOTO} --n 8",
        "random 224 crops of the 256 resize, flips, and fancy PCA colour shifts of one photo",
    ),
    Lesson(
        "vgg",
        "architectures",
        "VGG (2014): only 3x3 convolutions",
        "cnnlab summary vgg16",
        "five stages of 3x3 convolutions; 138M parameters, 102M of them in the first fc",
    ),
    Lesson(
        "inception",
        "architectures",
        "GoogLeNet: naive against 1x1-reduced Inception",
        "cnnlab summary inception_small -O block=naive",
        "compare with -O block=reduced: the 1x1 reductions cut the 5x5 branch's "
        "multiply-adds ~10x, the whole model's ~2.4x",
    ),
    Lesson(
        "inception-arithmetic",
        "architectures",
        "Inception's 5x5 branch, by hand",
        "cnnlab example inception-5x5",
        "120,422,400 multiply-adds straight from 192 channels, 12,443,648 through a 1x1 "
        "reduction to 16: 9.7x fewer for the same 32x28x28 output, every number derived",
    ),
    Lesson(
        "resnet",
        "architectures",
        "ResNet: identity and projection blocks",
        "cnnlab summary resnet_blocks",
        "block1 adds x unchanged (no parameters); block2 changes size and channels, so its "
        "shortcut is a 1x1 stride-2 projection",
    ),
    Lesson(
        "trace-residual",
        "architectures",
        "One number through a residual add",
        f"cnnlab trace torchvision:resnet18 {PHOTO} --step layer1.0.add --at 0,20,20",
        "the add's two terms, the convolution branch (layer1.0.bn2) and the identity "
        "(maxpool), and their sum; the receptive field of 27x27 pixels covers both branches; "
        "without --step, every step in order with its 8 residual adds marked",
        "--input 3x64x64 --at 0,5,5",
    ),
    # ------------------------------------------------------------------------ training
    Lesson(
        "look-at-the-data",
        "training",
        "A look at the data",
        "cnnlab show samples fashion-mnist --per-class 6",
        "one row per class, titled with its name; how alike shirts and T-shirts are",
    ),
    Lesson(
        "train-mnist",
        "training",
        "Training LeNet-5 on MNIST",
        "cnnlab train --model lenet5 -O modern=true --dataset mnist --epochs 5 --name lenet",
        "test accuracy near 99% after a few epochs (about half a minute on two CPU cores)",
        TRAIN,
    ),
    Lesson(
        "train-fashion",
        "training",
        "The course's Fashion-MNIST CNN",
        "cnnlab train --model fashion_cnn -O course=true --dataset fashion-mnist --epochs 5 "
        "--name fashion",
        "the course's form: no activation between the fc layers (about 2 min on two CPU cores)",
        TRAIN,
    ),
    Lesson(
        "train-cifar",
        "training",
        "Training on CIFAR-10",
        "cnnlab train --model cifar_residual_pool --dataset cifar10 --epochs 10 --name cifar",
        "photos are harder than digits: a lower accuracy, and a gap between train and test. "
        "It takes 2-3 hours on two CPU cores (about 50 images/s); add --train-subset 5000 for "
        "a first look in about 15-20 minutes",
        CIFAR,
    ),
    Lesson(
        "reproduce",
        "training",
        "The course's experiments beside its logged numbers",
        "cnnlab reproduce --quick --only e7-fashion-dnn",
        "the course's figure, cnnlab's and the difference, with the reason for it; without "
        "--quick every experiment runs its full recipe (hours on two CPU cores; the report "
        "says how long first)",
        "--runs-dir {scratch} --out reproduce.md",
    ),
    Lesson(
        "curves",
        "training",
        "Learning curves",
        "cnnlab show curves lenet",
        "train and test loss per epoch; test rising while train falls is overfitting",
        RUNS,
        explorer="cnnlab serve: 'How the run trained'",
    ),
    Lesson(
        "confusion",
        "training",
        "The confusion matrix",
        "cnnlab show confusion lenet",
        "which digits are taken for which: 4 against 9, 3 against 5",
        RUNS,
    ),
    Lesson(
        "mistakes",
        "training",
        "The most confident mistakes",
        "cnnlab show mistakes lenet",
        "wrong answers given with high probability; some labels are doubtful",
        RUNS,
    ),
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
