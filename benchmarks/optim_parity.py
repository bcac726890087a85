"""How close `jaxseq.optim` follows torch.optim: the largest differences the optimizer tests allow for.

    python benchmarks/optim_parity.py

Runs the cases of `parity_tests/test_optim.py` (the same models, grids and schedules; the tests
assert the tolerances, this prints the measured maxima): for each optimizer, its grid of options
with and without schedules and clipping, 200 steps from the same weights, the largest relative
loss difference at any step and the largest absolute final parameter difference; for the
schedules, the largest relative learning-rate difference over 1000 steps. float64 on the CPU,
torch on one thread. Writes benchmarks/results/optim.md.
"""

from __future__ import annotations

import datetime
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    import numpy as np
    import torch

    torch.set_num_threads(1)
    from jaxseq import optim
    from parity_tests import test_optim as t

    worst = defaultdict(lambda: [0.0, 0.0])  # optimizer -> [loss rel, params abs]
    for name, lr, options, schedule, clip, spe in t.TRAJECTORIES:
        sign = -1.0 if options.get("maximize") else 1.0
        t_model = t.torch_model()
        graphdef, params = t.jax_twin(t_model)
        t_opt = optim.torch_optimizer(name, t_model.parameters(), lr, **options)
        t_sched = None if schedule is None else optim.torch_scheduler(schedule, t_opt)
        tx = optim.build(name, lr, **options, schedule=schedule, steps_per_epoch=spe, **clip)
        t_losses, t_weights = t.run_torch(t_model, t_opt, t_sched, sign=sign, clip=clip, steps_per_epoch=spe)
        j_losses, j_weights, _ = t.run_jax(graphdef, params, tx, sign=sign)
        rel = float(np.max(np.abs(j_losses - t_losses) / np.abs(t_losses)))
        param = max(float(np.max(np.abs(j_weights[k] - t_weights[k]))) for k in t_weights)
        worst[name] = [max(worst[name][0], rel), max(worst[name][1], param)]
    lr_rel = 0.0
    for spec in t.SCHEDULES:
        for spe in (1, 3):
            name = "adam" if isinstance(spec, optim.OneCycleLR) and spec.anneal_strategy == "linear" else "sgd"
            rates, _ = t.torch_rates(spec, name, spe)
            fn = optim.schedule_fn(spec, 0.1, steps_per_epoch=spe)
            ours = np.asarray(jax.jit(jax.vmap(fn))(jnp.arange(t.SCHEDULE_STEPS)))
            lr_rel = max(lr_rel, float(np.max(np.abs(ours - rates[:, 0]) / np.abs(rates[:, 0]))))

    lines = [
        f"# jaxseq.optim against torch.optim, {datetime.date.today().isoformat()}",
        "",
        "`python benchmarks/optim_parity.py`: the cases of `parity_tests/test_optim.py`, float64, CPU.",
        f"Tolerances the tests assert: loss rel {t.LOSS_RTOL:g}, parameters abs {t.PARAM_ATOL:g}, "
        f"lr rel {t.LR_RTOL:g}.",
        "",
        "| optimizer | grid cases | largest loss difference (rel) | largest final parameter difference (abs) |",
        "|---|---:|---:|---:|",
    ]
    counts = defaultdict(int)
    for case in t.TRAJECTORIES:
        counts[case[0]] += 1
    lines += [f"| {name} | {counts[name]} | {rel:.2g} | {param:.2g} |" for name, (rel, param) in worst.items()]
    lines += ["", f"Schedules ({len(t.SCHEDULES)} specs x steps_per_epoch 1 and 3, 1000 steps): lr rel {lr_rel:.2g}."]
    text = "\n".join(lines) + "\n"
    print(text)
    (ROOT / "benchmarks" / "results" / "optim.md").write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
