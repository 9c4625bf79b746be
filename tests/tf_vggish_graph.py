"""Build VGGish in TensorFlow with random weights, save a checkpoint, convert it (run as a subprocess).

    python tests/tf_vggish_graph.py OUT_DIR

Reads ``OUT_DIR/examples.npy`` [N, 96, 64], writes ``vggish_model.ckpt*``, ``expected.npy`` (the
TensorFlow embeddings) and ``got.npy`` (our VGGish with the converted weights). It runs in its own
process because importing torchvision's triton-backed ops after TensorFlow crashes the interpreter.
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import tensorflow as tf
import torch

from feat_script.vggish import VGGish
from feat_script.vggish.convert import convert


def tf_vggish(features):
    """The slim graph of vggish_slim.py written with plain tf.compat.v1 ops and the same variable names."""
    v1 = tf.compat.v1

    def variable(name, shape, scale):
        init = v1.random_normal_initializer(stddev=scale, seed=len(name))
        return v1.get_variable(name, shape, initializer=init)

    def conv(net, scope, cout):
        with v1.variable_scope(scope):
            cin = int(net.shape[-1])
            w = variable("weights", (3, 3, cin, cout), math.sqrt(2.0 / (9 * cin)))
            b = variable("biases", (cout,), 0.05)
        return tf.nn.relu(tf.nn.conv2d(net, w, strides=1, padding="SAME") + b)

    def dense(net, scope, fout):
        with v1.variable_scope(scope):
            fin = int(net.shape[-1])
            w = variable("weights", (fin, fout), math.sqrt(2.0 / fin))
            b = variable("biases", (fout,), 0.05)
        return tf.nn.relu(tf.matmul(net, w) + b)

    def pool(net):
        return tf.nn.max_pool2d(net, ksize=2, strides=2, padding="SAME")

    with v1.variable_scope("vggish"):
        net = tf.reshape(features, [-1, 96, 64, 1])
        net = pool(conv(net, "conv1", 64))
        net = pool(conv(net, "conv2", 128))
        with v1.variable_scope("conv3"):
            net = pool(conv(conv(net, "conv3_1", 256), "conv3_2", 256))
        with v1.variable_scope("conv4"):
            net = pool(conv(conv(net, "conv4_1", 512), "conv4_2", 512))
        net = tf.reshape(net, [-1, 6 * 4 * 512])
        with v1.variable_scope("fc1"):
            net = dense(dense(net, "fc1_1", 4096), "fc1_2", 4096)
        return dense(net, "fc2", 128)


def main(out: Path) -> int:
    examples = np.load(out / "examples.npy")
    ckpt = out / "vggish_model.ckpt"
    with tf.Graph().as_default(), tf.compat.v1.Session() as sess:
        features = tf.compat.v1.placeholder(tf.float32, (None, 96, 64), name="input_features")
        embedding = tf_vggish(features)
        sess.run(tf.compat.v1.global_variables_initializer())
        np.save(out / "expected.npy", sess.run(embedding, feed_dict={features: examples}))
        tf.compat.v1.train.Saver().save(sess, str(ckpt))
    model = VGGish().eval()
    model.load_state_dict(convert(ckpt))
    with torch.no_grad():
        np.save(out / "got.npy", model(torch.from_numpy(examples)).numpy())
    return 0


if __name__ == "__main__":
    raise SystemExit(main(Path(sys.argv[1])))
