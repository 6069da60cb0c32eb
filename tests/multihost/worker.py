"""One process of the multi-process test job (started N times by launch/local.py).

It goes the way every CLI goes: the shared flags, init_distributed (rendezvous, jax.distributed, logging, a check
that flags agree), load_model (per-host loading). Then a forward pass and a greedy decode over the mesh that spans
all processes. Then the sweep layout: one model replica per process (--replicas), each writing its own record file
into a host-local folder, merged on process 0 by distributed.collect_files. Process 0 writes everything to --out.
"""
from __future__ import annotations

import json
import os

import jax
import numpy as np
from absl import app, flags

from gptoss_jax import distributed
from gptoss_jax.checkpoint.safetensors_io import ByteCounter
from gptoss_jax.cli import flags as common
from tests.multihost import common as mh

flags.DEFINE_string("out", None, "Folder for results (process 0 writes them; host<i>/ are the processes' own).")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    common.init_distributed()
    pid = jax.process_index()
    counter = ByteCounter()
    model = common.load_model(counter=counter)
    toks = mh.tokens(model.cfg.vocab_size)
    logits, greedy = mh.forward_and_decode(model, toks)
    mesh = model.mesh
    everyone = distributed.gather_json_to_main({"process": pid, "bytes_by_tensor": counter.by_tensor,
                                                "local_devices": jax.local_device_count()}, what="byte counts")

    # sweep layout: every process its own replica on its own devices; records per replica, merged on process 0
    FLAGS.replicas, FLAGS.mesh = jax.process_count(), f"1,{jax.local_device_count()},1"
    info = distributed.replica_info(FLAGS.replicas)
    replica = common.load_model()
    r_logits, r_greedy = mh.forward_and_decode(replica, toks)
    folder = os.path.join(FLAGS.out, f"host{pid}")  # as if the hosts shared no disk
    os.makedirs(folder, exist_ok=True)
    name = f"records.replica-{info.index}-of-{info.count}.jsonl"
    if info.is_leader:
        with open(os.path.join(folder, name), "w") as f:
            f.write(json.dumps({"replica": info.index, "greedy": r_greedy.tolist()}) + "\n")
    told = distributed.broadcast_json({"from": "process 0"} if distributed.is_main() else None, what="inputs")
    distributed.barrier("replicas done", timeout_s=120)
    written = distributed.collect_files(folder, [name] if info.is_leader else [])
    seen = distributed.allgather_json({"process": pid, "told": told, "replica": [info.index, info.count],
                                       "replica_devices": len(replica.mesh.devices.flat)}, what="replica report")
    print(f"process {pid}: this line is printed by process 0 only")
    if distributed.is_main():
        np.savez(os.path.join(FLAGS.out, "result.npz"), logits=logits, greedy=greedy, replica_logits=r_logits,
                 replica_greedy=r_greedy)
        with open(os.path.join(FLAGS.out, "report.json"), "w") as f:
            json.dump({"processes": everyone, "device_count": jax.device_count(), "mesh_shape": dict(mesh.shape),
                       "mesh_process": np.vectorize(lambda d: d.process_index)(mesh.devices).tolist(),
                       "replicas": seen, "collected": written}, f)


if __name__ == "__main__":
    app.run(main)
