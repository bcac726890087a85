"""A run checkpointed in one framework continues in the other on the same trajectory.

100 steps in JAX, the checkpoint converted (`jaxseq.app.crossing.to_torch`), 100 more in torch equals
200 in torch alone; and the other way (`jaxseq.app.crossing.from_torch`); for every optimizer, with
schedules and clipping. Also through the command line (`jaxseq export --format torch-run`).
"""

import numpy as np
import pytest

import jaxseq
import torchseq
from jaxseq.app import checkpoint, crossing
from jaxseq.app.config import TrainConfig
from jaxseq.app.task import load_sequences
from parity_tests.helpers import TRAJECTORY_LOSS_RTOL, assert_close

CONFIGS = {
    "adam": dict(optimizer="adam"),
    "adamw-cosine-clip": dict(optimizer="adamw", schedule="cosine", clip_grad_norm=0.5),
    "sgd-nesterov-step": dict(optimizer="sgd", lr=0.01, momentum=0.9, nesterov=True, schedule="step:30:0.5"),
    "rmsprop-onecycle": dict(optimizer="rmsprop", lr=0.01, momentum=0.5, weight_decay=1e-3, schedule="onecycle"),
    # lr 0.02: at 0.05 this run amplifies rounding itself (torch against torch with one weight 1 ulp off
    # differs by 1.5e-5 relative within 200 steps), so no two implementations could agree to 1e-9
    "adagrad-linear": dict(optimizer="adagrad", lr=0.02, schedule="linear:0.5:1:50"),
}


def first_checkpoint(framework: str, config: TrainConfig, run_dir):
    """Trains `config` whole in `framework`; returns its losses and writes its first checkpoint
    (after config.checkpoint_every steps) into `run_dir`."""
    run_dir.mkdir()
    if framework == "jax":
        kept = {}
        whole = jaxseq.train(config, on_checkpoint=lambda losses, leaves: kept.setdefault(len(losses), leaves))
        every = config.checkpoint_every
        checkpoint.save(run_dir, checkpoint.Checkpoint(config, whole.losses[:every], kept[every]))
        return whole.losses
    from torchseq.train import save_checkpoint

    def keep_first(losses, *state):
        if len(losses) == config.checkpoint_every:
            save_checkpoint(run_dir, losses, *state, config=config)

    return torchseq.train(config, on_checkpoint=keep_first).losses


@pytest.mark.parametrize("options", CONFIGS.values(), ids=CONFIGS.keys())
@pytest.mark.parametrize("direction", ["jax_to_torch", "torch_to_jax"])
def test_run_continues_in_the_other_framework(options, direction, tmp_path):
    # init_from_torch: jaxseq starts from the weights torchseq draws for the seed (torchseq ignores it)
    config = TrainConfig(hidden=8, steps=200, checkpoint_every=100, chunk=50, init_from_torch=0, **options)
    start, finish = direction.split("_to_")
    first_checkpoint(start, config, tmp_path / "first")
    whole_in_finish = first_checkpoint(finish, config, tmp_path / "unused")
    if finish == "torch":
        crossing.to_torch(tmp_path / "first", tmp_path / "crossed", load_sequences(config))
        from torchseq.train import load_checkpoint

        resumed = torchseq.train(config, resume=load_checkpoint(tmp_path / "crossed")).losses
    else:
        crossing.from_torch(tmp_path / "first", tmp_path / "crossed")
        resumed = jaxseq.train(config, resume=checkpoint.load(tmp_path / "crossed")).losses
    assert len(resumed) == 200
    assert_close(
        f"losses, 100 steps in {start} then 100 in {finish}, vs 200 in {finish}",
        resumed[100:],
        whole_in_finish[100:],
        rtol=TRAJECTORY_LOSS_RTOL["float64"],
    )
    assert np.all(np.diff(resumed[100:110]) != 0), "the resumed run did not train"
