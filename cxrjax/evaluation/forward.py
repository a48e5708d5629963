"""The jitted forward over a split: fixed-size padded batches in, probabilities per record out, gathered on the host.

The step is compiled once per (model, batch shape): padding the last batch and carrying a mask keeps the shape fixed
for the whole split. Training's validation, `cxrjax eval`, TTA and ensembles all predict through `predict_split`.
"""

from __future__ import annotations

import grain
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from cxrjax.data import pipeline, shard_format
from cxrjax.data.progress import progress
from cxrjax.models.preprocess import normalize
from cxrjax.runtime import sharding

TTA_MODES = ("flip", "tencrop")


def tta_views(images, tta: str | None, crop: int):
    """The views test-time augmentation averages over, stacked on a new leading axis.

    flip: the image and its mirror. tencrop (CheXNet): the four corner and the centre `crop`² windows of the full
    image, and their mirrors. Static slices, so all views go through one compiled forward pass.
    """
    if tta is None:
        return images[None]
    if tta == "flip":
        return jnp.stack([images, images[:, :, ::-1]])
    if tta == "tencrop":
        height, width = images.shape[1:3]
        corners = [(0, 0), (0, width - crop), (height - crop, 0), (height - crop, width - crop),
                   ((height - crop) // 2, (width - crop) // 2)]
        crops = [images[:, top:top + crop, left:left + crop] for top, left in corners]
        return jnp.stack(crops + [c[:, :, ::-1] for c in crops])
    raise ValueError(f"unknown test-time augmentation {tta!r}; choose one of {TTA_MODES}")


def make_predict_step(model, dtype, predict_head: str = "logits", *, tta: str | None = None, crop: int | None = None,
                      input_scaling: str = "imagenet"):
    """`step(variables, images uint8, metadata=None) -> probabilities float32`, jitted, batch sharded along "data".

    `input_scaling`: how the model takes its pixels (`config.model.input`, `models.preprocess.INPUTS`).
    With `tta`, probabilities are averaged over `tta_views` (for tencrop the images are the uncropped ones).
    `metadata` (age, sex, view arrays) is needed by the metadata-fusion model only.
    """

    @jax.jit
    def step(variables, images, metadata=None):
        views = tta_views(images, tta, crop)
        num_views = views.shape[0]
        # Image-major (image n's views at rows n·V ... n·V + V − 1): the rows of the images a device holds stay on
        # that device, so the batch sharding carries through. View-major rows would interleave the devices' images,
        # which XLA resolves by gathering the batch (ten-crop ran 8x slower so on 8 CPU devices).
        batch = jnp.swapaxes(views, 0, 1).reshape((-1, *views.shape[2:]))
        if metadata is not None:
            metadata = jax.tree.map(lambda values: jnp.repeat(values, num_views, axis=0), metadata)
        outputs = model.apply(variables, normalize(batch, dtype, input_scaling), metadata=metadata, train=False)
        probabilities = jax.nn.sigmoid(outputs[predict_head].astype(jnp.float32))
        return probabilities.reshape((images.shape[0], num_views, -1)).mean(axis=1)

    return step


def predict_records(predict_step, variables, shards, records, *, global_batch: int, crop: int, mesh,
                    num_threads: int = 4, workers: int = 0, desc: str = "predicting"):
    """Probabilities (len(records), 14) for the given record numbers, in that order; `desc` names the bar of the
    images done (process 0 shows it)."""
    block, num_blocks = sharding.process_block(mesh, global_batch)
    dataset = pipeline.eval_dataset(shards, records, global_batch=global_batch, crop=crop,
                                     process_index=block, process_count=num_blocks,
                                     read_options=grain.ReadOptions(num_threads=num_threads,
                                                                    prefetch_buffer_size=num_threads),
                                     workers=workers)
    probabilities, order, mask = [], [], []
    bar = progress(total=len(records), desc=desc, unit="img", disable=jax.process_index() != 0)
    for batch in dataset:
        inputs = sharding.to_global({name: batch[name] for name in ("image", *shard_format.METADATA_FIELDS)}, mesh)
        metadata = {name: inputs[name] for name in shard_format.METADATA_FIELDS}
        probabilities.append(sharding.to_host(predict_step(variables, inputs["image"], metadata)))
        local = sharding.to_global({"record": batch["record"], "mask": batch["mask"]}, mesh)
        order.append(sharding.to_host(local["record"]))
        mask.append(sharding.to_host(local["mask"]))
        bar.update(min(global_batch, len(records) - global_batch * (len(order) - 1)))  # all full but the padded last
    bar.close()
    probabilities, order, mask = (np.concatenate(a) for a in (probabilities, order, mask))
    keep = mask.astype(bool)
    by_record = dict(zip(order[keep].tolist(), probabilities[keep]))
    return np.stack([by_record[int(r)] for r in records])



def predict_split(predict_step, variables, shards, records, config: ml_collections.ConfigDict, mesh, *,
                  crop: int | None = None, desc: str = "predicting") -> np.ndarray:
    """`predict_records` with the batch and readers of a run's config (`eval_batch_size`, `data.crop`,
    `data.num_threads`, `data.num_workers`), so validation and evaluation read a split the same way. `crop`: the side
    of the windows read when it is not the model's input (ten-crop cuts its views from the uncropped shards)."""
    if config.eval_batch_size % mesh.size:
        raise ValueError(f"eval_batch_size {config.eval_batch_size} is not divisible by the {mesh.size} devices of "
                         "the mesh")
    return predict_records(predict_step, variables, shards, records, global_batch=config.eval_batch_size,
                           crop=crop or config.data.crop, mesh=mesh, num_threads=config.data.num_threads,
                           workers=config.data.num_workers, desc=desc)
