"""`SummaryWriter`: TensorBoard event files, with `torch.utils.tensorboard`'s API.

    from phalanx.utils.tensorboard import SummaryWriter
    with SummaryWriter("runs/mlp") as writer:           # default: runs/<time>_<host><comment>
        writer.add_scalar("loss/train", loss.item(), step)
        writer.add_histogram("fc1.weight", model.fc1.weight, step)
    # tensorboard --logdir runs

Events are written by the `tensorboard` package's own event-file writer (install the
`tensorboard` extra: pip install "phalanx[tensorboard]"), so TensorBoard reads them as it reads
PyTorch's. In a data-parallel job, log from rank 0 only. Images are encoded as PNG here
(zlib), which needs no imaging library.
"""
import os
import socket
import struct
import time
import zlib
from datetime import datetime

import numpy as np

try:
    from tensorboard.compat.proto import event_pb2, summary_pb2, tensor_pb2, types_pb2
    from tensorboard.compat.proto.tensor_shape_pb2 import TensorShapeProto
    from tensorboard.plugins.hparams import api_pb2
    from tensorboard.plugins.hparams import plugin_data_pb2 as hparams_pb2
    from tensorboard.plugins.text import plugin_data_pb2 as text_pb2
    from tensorboard.summary.writer.event_file_writer import EventFileWriter
except ImportError as e:
    raise ImportError("phalanx.utils.tensorboard writes through the tensorboard package, which "
                      "is not installed: pip install tensorboard (or phalanx[tensorboard])") \
        from e

__all__ = ["SummaryWriter"]


def _numpy(value):
    """A NumPy array on the host from a Phalanx tensor, a CuPy or NumPy array, or numbers."""
    if hasattr(value, "detach"):
        value = value.detach()
        if hasattr(value, "cpu"):
            value = value.cpu()
        return value.numpy()
    if hasattr(value, "get") and type(value).__module__.startswith("cupy"):
        return value.get()
    return np.asarray(value)


def _scalar(value):
    array = _numpy(value)
    if array.size != 1:
        raise ValueError(f"add_scalar: scalar_value must hold one number, got shape "
                         f"{tuple(array.shape)}; log .mean() or one element")
    return array.reshape(()).item()


class SummaryWriter:
    """Writes event files to `log_dir` for TensorBoard.

    `log_dir` defaults to runs/CURRENT_DATETIME_HOSTNAME`comment`. `purge_step` makes TensorBoard
    drop the events at or after that step that an earlier (crashed) run left in `log_dir`.
    `max_queue` events are buffered and written at least every `flush_secs` seconds;
    `filename_suffix` ends the event file's name."""

    def __init__(self, log_dir=None, comment="", purge_step=None, max_queue=10, flush_secs=120,
                 filename_suffix=""):
        if not log_dir:
            stamp = datetime.now().strftime("%b%d_%H-%M-%S")
            log_dir = os.path.join("runs", f"{stamp}_{socket.gethostname()}{comment}")
        self.log_dir = str(log_dir)
        self.purge_step = purge_step
        self.max_queue, self.flush_secs = max_queue, flush_secs
        self.filename_suffix = filename_suffix
        self._writer = None
        self._scalars_writers = {}   # add_scalars: one run per (main tag, tag)
        self._file_writer()          # the event file exists from the start, as in PyTorch

    def _file_writer(self):
        if self._writer is None:
            self._writer = EventFileWriter(self.log_dir, self.max_queue, self.flush_secs,
                                           self.filename_suffix)
            if self.purge_step is not None:
                step = self.purge_step
                self._writer.add_event(event_pb2.Event(step=step, file_version="brain.Event:2"))
                self._writer.add_event(event_pb2.Event(
                    step=step, session_log=event_pb2.SessionLog(status=event_pb2.SessionLog.START)))
                self.purge_step = None
        return self._writer

    def get_logdir(self):
        return self.log_dir

    def _add(self, value, global_step, walltime, writer=None):
        if isinstance(global_step, (np.generic, np.ndarray)) or hasattr(global_step, "item"):
            global_step = int(_numpy(global_step).item())
        event = event_pb2.Event(summary=summary_pb2.Summary(value=[value]),
                                wall_time=time.time() if walltime is None else walltime)
        if global_step is not None:
            event.step = int(global_step)
        (writer or self._file_writer()).add_event(event)

    # ---- scalars ---------------------------------------------------------------------------
    def add_scalar(self, tag, scalar_value, global_step=None, walltime=None, new_style=False,
                   double_precision=False):
        """One number at a step. `new_style` writes it as a tensor summary of the scalars
        plugin (float64 with `double_precision`), as PyTorch does."""
        self._add(_scalar_value(tag, _scalar(scalar_value), new_style, double_precision),
                  global_step, walltime)

    def add_scalars(self, main_tag, tag_scalar_dict, global_step=None, walltime=None):
        """Several numbers on one chart: each tag is written to its own run,
        LOG_DIR/MAINTAG_TAG, under the tag `main_tag`."""
        walltime = time.time() if walltime is None else walltime
        for tag, value in tag_scalar_dict.items():
            run = os.path.join(self.log_dir, f"{main_tag.replace('/', '_')}_{tag}")
            writer = self._scalars_writers.get(run)
            if writer is None:
                writer = self._scalars_writers[run] = EventFileWriter(
                    run, self.max_queue, self.flush_secs, self.filename_suffix)
            self._add(_scalar_value(main_tag, _scalar(value)), global_step, walltime, writer)

    # ---- distributions ---------------------------------------------------------------------
    def add_histogram(self, tag, values, global_step=None, bins="tensorflow", walltime=None,
                      max_bins=None):
        """The distribution of `values`. `bins` is NumPy's (an int, edges, or a method name
        such as "auto"), or "tensorflow" for TensorFlow's exponential buckets; `max_bins`
        merges neighbouring bins until there are at most that many."""
        self._add(summary_pb2.Summary.Value(tag=tag, histo=histogram(values, bins, max_bins)),
                  global_step, walltime)

    # ---- images and text -------------------------------------------------------------------
    def add_image(self, tag, img_tensor, global_step=None, walltime=None, dataformats="CHW"):
        """One image, laid out as `dataformats` (CHW, HWC or HW) with 1, 3 or 4 channels:
        floats in [0, 1] (scaled by 255) or uint8."""
        self._add(_image_value(tag, to_hwc(_numpy(img_tensor), dataformats)), global_step,
                  walltime)

    def add_images(self, tag, img_tensor, global_step=None, walltime=None,
                   dataformats="NCHW"):
        """A batch of images (`dataformats` NCHW, NHWC, ... ) as one grid image, eight per
        row, as PyTorch draws it; grey images are shown as RGB."""
        layout = dataformats.upper()
        if len(layout) != 4 or sorted(layout) != sorted("NCHW"):
            raise ValueError(f"add_images: dataformats must be an order of N, C, H, W (e.g. "
                             f"NCHW or NHWC), got {dataformats!r}")
        images = _numpy(img_tensor)
        if images.ndim != 4:
            raise ValueError(f"add_images: expected a batch of 4 dimensions ({dataformats}), "
                             f"got shape {tuple(images.shape)}")
        nhwc = np.stack([to_hwc(im, layout.replace("N", "")) for im in
                         np.moveaxis(images, layout.index("N"), 0)])
        self._add(_image_value(tag, image_grid(nhwc)), global_step, walltime)

    def add_text(self, tag, text_string, global_step=None, walltime=None):
        """Text (markdown) under TAG/text_summary, as PyTorch writes it."""
        metadata = summary_pb2.SummaryMetadata(plugin_data=summary_pb2.SummaryMetadata.PluginData(
            plugin_name="text", content=text_pb2.TextPluginData(version=0).SerializeToString()))
        tensor = tensor_pb2.TensorProto(
            dtype=types_pb2.DT_STRING, string_val=[str(text_string).encode("utf-8")],
            tensor_shape=TensorShapeProto(dim=[TensorShapeProto.Dim(size=1)]))
        self._add(summary_pb2.Summary.Value(tag=f"{tag}/text_summary", metadata=metadata,
                                            tensor=tensor), global_step, walltime)

    # ---- hyperparameters -------------------------------------------------------------------
    def add_hparams(self, hparam_dict, metric_dict, hparam_domain_discrete=None, run_name=None,
                    global_step=None):
        """One trial for TensorBoard's HParams tab: its hyperparameters (bool, str, int, float)
        and final metrics, written to the run LOG_DIR/`run_name` (default: the time)."""
        if not isinstance(hparam_dict, dict) or not isinstance(metric_dict, dict):
            raise TypeError("add_hparams: hparam_dict and metric_dict must be dicts")
        if hparam_domain_discrete is not None:
            raise NotImplementedError("add_hparams(hparam_domain_discrete=...) is not "
                                      "supported; leave it None (the domain is then inferred "
                                      "by TensorBoard)")
        run = os.path.join(self.log_dir, run_name or str(time.time()))
        writer = EventFileWriter(run, self.max_queue, self.flush_secs, self.filename_suffix)
        try:
            for value in _hparams_values(hparam_dict, metric_dict):
                self._add(value, global_step, None, writer)
            for name, metric in metric_dict.items():
                self._add(_scalar_value(name, _scalar(metric)), global_step, None, writer)
        finally:
            writer.close()

    # ---- lifetime --------------------------------------------------------------------------
    def flush(self):
        """Write what is queued to disk."""
        for writer in [self._writer, *self._scalars_writers.values()]:
            if writer is not None:
                writer.flush()

    def close(self):
        """Flush and close the event files; a later add_* opens a new one."""
        for writer in [self._writer, *self._scalars_writers.values()]:
            if writer is not None:
                writer.flush()
                writer.close()
        self._writer = None
        self._scalars_writers = {}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def _scalar_value(tag, number, new_style=False, double_precision=False):
    if not new_style:
        return summary_pb2.Summary.Value(tag=tag, simple_value=number)
    tensor = tensor_pb2.TensorProto(dtype=types_pb2.DT_DOUBLE, double_val=[number]) \
        if double_precision else tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT,
                                                        float_val=[number])
    metadata = summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"))
    return summary_pb2.Summary.Value(tag=tag, tensor=tensor, metadata=metadata)


def _tensorflow_bins():
    """TensorFlow's default histogram edges: ±1e-12 growing by 10% up to ±1e20, and 0."""
    positive = 1e-12 * 1.1 ** np.arange(int(np.ceil(np.log(1e32) / np.log(1.1))))
    positive = positive[positive < 1e20]
    return np.concatenate([-positive[::-1], [0.0], positive])


def histogram(values, bins="tensorflow", max_bins=None):
    """A HistogramProto of `values`: min, max, count, sum, sum of squares, and the non-empty
    range of bins as right edges (`bucket_limit`) and counts, after one empty bin that gives
    the left edge of the first."""
    flat = _numpy(values).astype(np.float64).reshape(-1)
    if flat.size == 0:
        raise ValueError("add_histogram: values is empty; there is nothing to bin")
    if not np.isfinite(flat).all():
        raise ValueError("add_histogram: values hold NaN or infinity; filter them first")
    if isinstance(bins, str) and bins == "tensorflow":
        bins = _tensorflow_bins()
    counts, edges = np.histogram(flat, bins=bins)
    if max_bins is not None and len(counts) > max_bins:   # merge groups of neighbours
        group = -(-len(counts) // max_bins)
        merged = np.zeros(-(-len(counts) // group), counts.dtype)
        np.add.at(merged, np.arange(len(counts)) // group, counts)
        counts, edges = merged, np.append(edges[:len(edges) - 1:group], edges[-1])
    nonzero = np.flatnonzero(counts)
    first, last = nonzero[0], nonzero[-1]
    return summary_pb2.HistogramProto(
        min=flat.min(), max=flat.max(), num=flat.size, sum=flat.sum(),
        sum_squares=flat.dot(flat), bucket_limit=edges[first:last + 2].tolist(),
        bucket=[0.0] + counts[first:last + 1].astype(np.float64).tolist())


def to_hwc(image, dataformats):
    """`image` (laid out as `dataformats`) as height × width × channels uint8."""
    layout = dataformats.upper()
    if sorted(layout) not in (sorted("CHW"), sorted("HW")) or len(set(layout)) != len(layout):
        raise ValueError(f"add_image: dataformats must be CHW, HWC or HW (any order of those "
                         f"letters), got {dataformats!r}")
    if image.ndim != len(layout):
        raise ValueError(f"add_image: an image of shape {tuple(image.shape)} does not match "
                         f"dataformats={dataformats!r}; pass the layout it has")
    if "C" not in layout:
        image, layout = image[..., None], layout + "C"
    image = np.transpose(image, [layout.index(c) for c in "HWC"])
    if image.shape[2] not in (1, 3, 4):
        raise ValueError(f"add_image: an image needs 1, 3 or 4 channels, got "
                         f"{image.shape[2]} (shape HWC {tuple(image.shape)})")
    if image.dtype != np.uint8:
        image = np.clip(image.astype(np.float64) * 255.0, 0, 255).round().astype(np.uint8)
    return np.ascontiguousarray(image)


def _image_value(tag, hwc):
    height, width, channels = hwc.shape
    image = summary_pb2.Summary.Image(height=height, width=width, colorspace=channels,
                                      encoded_image_string=encode_png(hwc))
    return summary_pb2.Summary.Value(tag=tag, image=image)


def image_grid(nhwc, per_row=8):
    """N images (uint8, N×H×W×C) side by side, `per_row` to a row, on black; grey as RGB."""
    n, height, width, channels = nhwc.shape
    if channels == 1:
        nhwc, channels = np.repeat(nhwc, 3, axis=3), 3
    cols = min(n, per_row)
    rows = -(-n // cols)
    grid = np.zeros((rows * height, cols * width, channels), np.uint8)
    for i, image in enumerate(nhwc):
        r, c = divmod(i, cols)
        grid[r * height:(r + 1) * height, c * width:(c + 1) * width] = image
    return grid


def encode_png(hwc):
    """8-bit grey (1), RGB (3) or RGBA (4) PNG of an H×W×C uint8 array."""
    height, width, channels = hwc.shape
    color_type = {1: 0, 3: 2, 4: 6}[channels]
    rows = np.concatenate([np.zeros((height, 1), np.uint8), hwc.reshape(height, -1)], axis=1)

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + \
            struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    header = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) +
            chunk(b"IDAT", zlib.compress(rows.tobytes(), 6)) + chunk(b"IEND", b""))


def _hparams_values(hparam_dict, metric_dict):
    """The three summaries of TensorBoard's HParams plugin: the experiment (its hparams and
    metrics), this session's start (its values) and end."""
    infos, values = [], {}
    for name, value in hparam_dict.items():
        if isinstance(value, bool):
            kind, v = api_pb2.DATA_TYPE_BOOL, {"bool_value": value}
        elif isinstance(value, (int, float, np.integer, np.floating)):
            kind, v = api_pb2.DATA_TYPE_FLOAT64, {"number_value": float(value)}
        elif isinstance(value, str):
            kind, v = api_pb2.DATA_TYPE_STRING, {"string_value": value}
        elif hasattr(value, "shape") and int(np.prod(value.shape)) == 1:   # a tensor
            kind, v = api_pb2.DATA_TYPE_FLOAT64, {"number_value": _scalar(value)}
        else:
            raise ValueError(f"add_hparams: hyperparameter {name!r} is a "
                             f"{type(value).__name__}; use a bool, str, int, float or a "
                             f"one-element tensor")
        infos.append(api_pb2.HParamInfo(name=name, type=kind))
        values[name] = v
    metrics = [api_pb2.MetricInfo(name=api_pb2.MetricName(tag=name)) for name in metric_dict]
    start = hparams_pb2.SessionStartInfo(start_time_secs=time.time())
    for name, v in values.items():
        for field, x in v.items():
            setattr(start.hparams[name], field, x)
    end = hparams_pb2.SessionEndInfo(status=api_pb2.STATUS_SUCCESS, end_time_secs=time.time())
    for tag, data in (
            ("_hparams_/experiment", hparams_pb2.HParamsPluginData(
                version=0, experiment=api_pb2.Experiment(hparam_infos=infos,
                                                         metric_infos=metrics))),
            ("_hparams_/session_start_info", hparams_pb2.HParamsPluginData(
                version=0, session_start_info=start)),
            ("_hparams_/session_end_info", hparams_pb2.HParamsPluginData(
                version=0, session_end_info=end))):
        metadata = summary_pb2.SummaryMetadata(plugin_data=summary_pb2.SummaryMetadata.PluginData(
            plugin_name="hparams", content=data.SerializeToString()))
        yield summary_pb2.Summary.Value(tag=tag, metadata=metadata)
