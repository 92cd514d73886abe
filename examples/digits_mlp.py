"""Train a multilayer perceptron on scikit-learn's 8x8 handwritten digits.

    python examples/digits_mlp.py [--epochs 20] [--batch-size 32] [--lr 2e-3] [--hidden 128]
                                  [--workers 0] [--seed 0] [--checkpoint digits_mlp.ckpt]
                                  [--no-progress]

The data (1797 images, 10 classes) ships with scikit-learn, so nothing is downloaded
(pip install 'phalanx[examples]'); 20% of each class is held out as the test set. The network
is flatten - linear(64->hidden) - ReLU - linear(hidden->hidden) - ReLU - linear(hidden->10),
trained with Adam and a cosine learning-rate schedule. A tqdm bar shows the running loss; after
each epoch one line gives the loss and the train/test accuracy. It reaches about 96% test
accuracy in a few seconds (the CNN in digits_cnn.py does better). At the end, the model,
optimizer, scheduler and RNG state are saved with `px.save` (read them back with `px.load` and
`model.load_state_dict`).
"""
from digits_common import parser, train

from phalanx import nn


def build_model(hidden=128):
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(64, hidden), nn.ReLU(),
        nn.Linear(hidden, hidden), nn.ReLU(),
        nn.Linear(hidden, 10),
    )


def main(argv=None):
    p = parser(__doc__.split("\n\n")[0], epochs=20, checkpoint="digits_mlp.ckpt")
    p.add_argument("--hidden", type=int, default=128, help="hidden layer width")
    return train(lambda args: build_model(args.hidden), p.parse_args(argv))


if __name__ == "__main__":
    main()
