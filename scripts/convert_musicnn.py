"""Convert musicnn's TF1 checkpoints (MTT_musicnn, MSD_musicnn, inside the `musicnn` wheel, ISC licence)
once to the safetensors files lmdm ships: src/lmdm/eval/musicnn_{mtt,msd}.safetensors.

Needs TensorFlow only for reading the checkpoints, and only while converting. Keep it out of the
main environment (transformers and basic-pitch change behaviour when TF is importable):
    pip install --no-deps musicnn
    pip install --target /tmp/tfenv tensorflow-cpu
    PYTHONPATH=/tmp/tfenv python scripts/convert_musicnn.py
Adam moments and optimizer counters are dropped; every other variable is stored under its TF name
(conv2d_N/kernel, batch_normalization_N/moving_mean, ...), as float32, unchanged.
"""
from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

OUT = Path(__file__).resolve().parents[1] / "src" / "lmdm" / "eval"


def main() -> int:
    import tensorflow as tf
    spec = importlib.util.find_spec("musicnn")
    if spec is None:
        sys.exit("convert_musicnn: install the musicnn wheel first (pip install --no-deps musicnn)")
    root = Path(spec.origin).parent
    for name, short in (("MTT_musicnn", "mtt"), ("MSD_musicnn", "msd")):
        reader = tf.compat.v1.train.NewCheckpointReader(str(root / name) + os.sep)
        keep = {k: np.ascontiguousarray(reader.get_tensor(k), dtype=np.float32)
                for k in sorted(reader.get_variable_to_shape_map())
                if "Adam" not in k and k not in ("beta1_power", "beta2_power")}
        save_file(keep, str(OUT / f"musicnn_{short}.safetensors"),
                  metadata={"source": f"musicnn 0.1.0 wheel, {name}/ checkpoint (TF1)", "licence": "ISC, see MUSICNN_LICENSE"})
        print(f"{name}: {len(keep)} tensors, {sum(v.size for v in keep.values())} parameters -> musicnn_{short}.safetensors")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
