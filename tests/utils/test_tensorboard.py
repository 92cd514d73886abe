"""`phalanx.utils.tensorboard.SummaryWriter` writes event files that TensorBoard's own reader
(`EventAccumulator`) reads back with the values written."""
import os
import struct
import zlib

import numpy as np
import pytest

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

import phalanx as px  # noqa: E402
from phalanx.utils.tensorboard import SummaryWriter  # noqa: E402


def _read(log_dir):
    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "histograms": 0,
                                                        "images": 0, "tensors": 0})
    acc.Reload()
    return acc


def _decode_png(data):
    """(height, width, channels, pixels) of a PNG written without filters (filter byte 0)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat = 8, b""
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, color = struct.unpack(">IIBB", body[:10])
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    channels = {0: 1, 2: 3, 6: 4}[color]
    rows = np.frombuffer(zlib.decompress(idat), np.uint8).reshape(height, 1 + width * channels)
    assert (rows[:, 0] == 0).all() and depth == 8
    return rows[:, 1:].reshape(height, width, channels)


def test_scalars_text_and_context_manager(tmp_path):
    with SummaryWriter(tmp_path, filename_suffix=".phalanx") as writer:
        for step in range(5):
            writer.add_scalar("loss/train", px.tensor(1.0 / (step + 1)), step)
        writer.add_scalar("lr", np.float32(0.5), global_step=7, walltime=1234.5)
        writer.add_scalar("exact", 0.1, 1, new_style=True, double_precision=True)
        writer.add_text("notes", "**hello** phalanx", 3)
    assert all(name.endswith(".phalanx") for name in os.listdir(tmp_path))
    acc = _read(tmp_path)
    loss = acc.Scalars("loss/train")
    assert [e.step for e in loss] == list(range(5))
    np.testing.assert_allclose([e.value for e in loss], [1.0 / (s + 1) for s in range(5)],
                               rtol=1e-6)
    lr = acc.Scalars("lr")[0]
    assert (lr.step, lr.value, lr.wall_time) == (7, 0.5, 1234.5)
    exact = acc.Tensors("exact")[0]
    assert exact.tensor_proto.double_val[0] == 0.1          # float64, not rounded to float32
    text = acc.Tensors("notes/text_summary")[0]
    assert (text.step, text.tensor_proto.string_val[0]) == (3, b"**hello** phalanx")
    assert acc.SummaryMetadata("notes/text_summary").plugin_data.plugin_name == "text"


def test_add_scalars_writes_one_run_per_tag(tmp_path):
    writer = SummaryWriter(tmp_path)
    for step in range(3):
        writer.add_scalars("loss", {"train": step * 1.0, "val": step * 2.0}, step)
    writer.close()
    for tag, scale in (("train", 1.0), ("val", 2.0)):
        run = _read(tmp_path / f"loss_{tag}")
        assert [(e.step, e.value) for e in run.Scalars("loss")] == \
            [(s, s * scale) for s in range(3)]


def test_histogram_matches_numpy(tmp_path):
    rng = np.random.default_rng(0)
    values = rng.normal(size=(40, 25)).astype(np.float32)
    with SummaryWriter(tmp_path) as writer:
        writer.add_histogram("w", px.tensor(values), 0, bins=10)
        writer.add_histogram("w_tf", values, 1)                      # TensorFlow's buckets
        writer.add_histogram("w_few", values, 2, bins=30, max_bins=7)
    acc = _read(tmp_path)
    flat = values.astype(np.float64).ravel()
    counts, edges = np.histogram(flat, bins=10)
    h = acc.Histograms("w")[0].histogram_value
    assert (h.min, h.max, h.num) == (flat.min(), flat.max(), flat.size)
    assert h.sum == pytest.approx(flat.sum()) and h.sum_squares == pytest.approx(flat @ flat)
    np.testing.assert_array_equal(h.bucket, np.concatenate([[0], counts]))
    np.testing.assert_allclose(h.bucket_limit, edges)
    tf = acc.Histograms("w_tf")[0].histogram_value
    assert sum(tf.bucket) == flat.size and len(tf.bucket) == len(tf.bucket_limit)
    limits = np.array(tf.bucket_limit)
    assert limits[0] <= flat.min() and limits[-1] >= flat.max() and (np.diff(limits) > 0).all()
    # each value lies in its bucket (left edge exclusive is TensorFlow's; NumPy's is inclusive)
    idx = np.searchsorted(limits, flat, side="right") - 1
    np.testing.assert_array_equal(np.bincount(idx, minlength=len(limits))[:-1],
                                  np.array(tf.bucket)[1:])
    few = acc.Histograms("w_few")[0].histogram_value
    assert len(few.bucket) <= 8 and sum(few.bucket) == flat.size
    with pytest.raises(ValueError, match="empty"):
        SummaryWriter(tmp_path / "x").add_histogram("e", np.array([]), 0)


@pytest.mark.parametrize("dataformats", ["CHW", "HWC", "HW"])
def test_images_in_each_layout_round_trip(tmp_path, dataformats):
    rng = np.random.default_rng(1)
    hwc = rng.random((6, 5, 1 if dataformats == "HW" else 3))
    image = {"CHW": hwc.transpose(2, 0, 1), "HWC": hwc, "HW": hwc[..., 0]}[dataformats]
    with SummaryWriter(tmp_path) as writer:
        writer.add_image("img", px.tensor(image.astype(np.float32)), 4, dataformats=dataformats)
        writer.add_image("img_u8", (image * 255).astype(np.uint8), 5, dataformats=dataformats)
    acc = _read(tmp_path)
    event = acc.Images("img")[0]
    assert (event.step, event.height, event.width) == (4, 6, 5)
    expected = np.round(np.clip(hwc, 0, 1) * 255).astype(np.uint8)
    decoded = _decode_png(event.encoded_image_string)
    np.testing.assert_allclose(decoded.astype(int), expected.astype(int), atol=1)
    np.testing.assert_array_equal(_decode_png(acc.Images("img_u8")[0].encoded_image_string),
                                  (hwc * 255).astype(np.uint8))
    with pytest.raises(ValueError, match="dataformats"):
        SummaryWriter(tmp_path / "x").add_image("bad", image, 0, dataformats="NCHW")


def test_add_images_draws_a_grid_eight_per_row(tmp_path):
    batch = np.random.default_rng(2).random((10, 1, 3, 2)).astype(np.float32)   # NCHW, grey
    with SummaryWriter(tmp_path) as writer:
        writer.add_images("batch", px.tensor(batch), 0)
        writer.add_images("batch_nhwc", batch.transpose(0, 2, 3, 1), 0, dataformats="NHWC")
    acc = _read(tmp_path)
    grid = _decode_png(acc.Images("batch")[0].encoded_image_string)
    assert grid.shape == (2 * 3, 8 * 2, 3)                      # two rows of eight, as RGB
    u8 = np.round(batch[:, 0] * 255).astype(np.uint8)
    np.testing.assert_array_equal(grid[0:3, 2:4, 1], u8[1])     # row 0, column 1
    np.testing.assert_array_equal(grid[3:6, 2:4, 0], u8[9])     # row 1, column 1
    assert not grid[3:6, 4:].any()                              # the rest of row 1 is empty
    np.testing.assert_array_equal(
        _decode_png(acc.Images("batch_nhwc")[0].encoded_image_string), grid)


def test_purge_step_drops_a_crashed_runs_later_steps(tmp_path):
    with SummaryWriter(tmp_path, filename_suffix=".a") as first:
        for step in range(10):
            first.add_scalar("x", float(step), step)
    with SummaryWriter(tmp_path, purge_step=5, filename_suffix=".b") as resumed:
        for step in range(5, 8):
            resumed.add_scalar("x", 100.0 + step, step)
    values = [(e.step, e.value) for e in _read(tmp_path).Scalars("x")]
    assert values == [(s, float(s)) for s in range(5)] + [(s, 100.0 + s) for s in range(5, 8)]


def test_hparams_and_default_log_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with SummaryWriter(comment="_lr0.1") as writer:
        writer.add_hparams({"lr": 0.1, "opt": "sgd", "nesterov": True}, {"hparam/acc": 0.9},
                           run_name="trial")
        log_dir = writer.get_logdir()
    assert log_dir.startswith("runs" + os.sep) and log_dir.endswith("_lr0.1")
    acc = _read(os.path.join(log_dir, "trial"))
    assert acc.Scalars("hparam/acc")[0].value == pytest.approx(0.9)
    from tensorboard.plugins.hparams import metadata
    start = metadata.parse_session_start_info_plugin_data(
        acc.SummaryMetadata("_hparams_/session_start_info").plugin_data.content)
    assert start.hparams["lr"].number_value == 0.1
    assert start.hparams["opt"].string_value == "sgd" and start.hparams["nesterov"].bool_value
    experiment = metadata.parse_experiment_plugin_data(
        acc.SummaryMetadata("_hparams_/experiment").plugin_data.content)
    assert [m.name.tag for m in experiment.metric_infos] == ["hparam/acc"]
