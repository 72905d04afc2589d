"""The lessons from the convolution to training, in teaching order."""

from __future__ import annotations

from .lesson import CIFAR, PHOTO, RUNS, TRAIN, Lesson

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
        "learning-rate-gap",
        "training",
        "A large learning rate against overfitting (LeNet-5)",
        "cnnlab train --model lenet5 --dataset mnist --optimizer sgd --momentum 0 --lr 0.1 "
        "--schedule none --epochs 20 --train-subset 6000 --name lenet-lr-large",
        "then again with --lr 0.01 --name lenet-lr-small, and compare train and test "
        "accuracy in each run's log. Measured (benchmarks/results/lenet_lr_gap.json): at 0.1, "
        "99.04% train / 97.46% test after 20 epochs (gap 1.6 points); at 0.01, 89.05% / 89.97% "
        "after 20 (no gap: it has not fitted yet) and 99.09% / 97.30% after 150 (gap 1.8). At "
        "equal training accuracy the large rate leaves a slightly smaller gap and gets there "
        "7.5 times sooner: the course's claim holds, but by 0.2 points on one seed",
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
        "init-and-depth",
        "training",
        "Where the weights start, in a deep plain stack (the course's E4)",
        "cnnlab show gradflow cifar_plain7:init=torch cifar_plain7:init=keras --optimizer adam "
        "--lr 0.001 --adam-eps 1e-7 --input-scaling unit --steps 60",
        "E4's seven plain convolutions after 60 of the course's Adam steps from PyTorch's and "
        "from Keras' initial weights: the gradient norms of every layer, and the share of each "
        "ReLU layer's units that output 0 for every image. That share climbs with depth; a "
        "layer at 100% passes no gradient: every layer below it gets exactly 0, the layers "
        "above it see the same input for every image, and the network can learn no more than "
        "how often each class occurs (the loss stays at ln 10 = 2.303). E4 trained "
        "with --init keras --seed 0 on 10,000 images ended so: 10% for 5 epochs, its last "
        "convolution 100% dead (benchmarks/results/reproduce-e4-e6-10k.md). Over four seeds "
        "of one epoch, one cnnlab run from Keras' start, two runs of the course's own Keras "
        "code and none from PyTorch's start stayed at chance (benchmarks/results/init_e4.json)."
        " About 2 min on two CPU cores",
        "--steps 2 --batch-size 8 --variant subset",
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
)
