"""The seed question's application, built on the library: its data, its configuration, its
training loop, the run directories and the `jaxseq` command line (`jaxseq.app.cli`).

- `config`: `TrainConfig`, one frozen dataclass of a run's options (no framework imported);
- `task`, `data`: the built-in tasks and the user's files (CSV, .npy, .npz) as `Sequences`;
- `training`, `sweep`, `compare`: one run, a grid of runs in one program, the run in both frameworks;
- `checkpoint`, `crossing`: a run's state on disk, and the same state in the other framework;
- `devices`: the devices (and hosts) a run is laid out over;
- `outputs`, `runs`, `options`, `cli`: the files a run writes, the run around the trainers
  (shared with `torchseq`), the options, and the command.

Nothing here imports JAX or torch at module import time except `training`, `sweep` and `devices`.
"""
