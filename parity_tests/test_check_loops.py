"""`jaxseq.parity.check` on the training loops people write: a loss module with options, a frozen
embedding, a DataLoader, a hidden state carried across batches, LBFGS, ReduceLROnPlateau, LambdaLR.
Each passes within the float64 tolerances (TOLERANCES), which the report names when it fails."""

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from jaxseq import parity

V, H, B, T = 11, 8, 3, 6


class Tagger(nn.Module):
    def __init__(self, frozen_embedding: bool = False):
        super().__init__()
        self.embed = nn.Embedding(V, H)
        self.embed.weight.requires_grad_(not frozen_embedding)
        self.lstm = nn.LSTM(H, H, batch_first=True)
        self.head = nn.Linear(H, V)

    def forward(self, ids):
        return self.head(self.lstm(self.embed(ids))[0]).flatten(0, 1)


class CarriedLM(nn.Module):
    """A language model whose loop carries (h, c) from batch to batch, detached (time-major)."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(V, H)
        self.lstm = nn.LSTM(H, H, num_layers=2)
        self.head = nn.Linear(H, V)

    def forward(self, ids, hidden):
        out, hidden = self.lstm(self.embed(ids), hidden)
        return self.head(out).view(-1, V), hidden

    def init_hidden(self, batch):
        weight = next(self.parameters())
        return weight.new_zeros(2, batch, H), weight.new_zeros(2, batch, H)


def batches(count=4, seed=0, time_major=False):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(count):
        ids = torch.randint(0, V, (T, B) if time_major else (B, T), generator=g)
        out.append((ids, torch.roll(ids, -1, 0 if time_major else 1).flatten()))
    return out


def assert_ok(report):
    assert report.ok, f"{report.problem}\n{report.table()}"


def tagger(**kwargs):
    torch.manual_seed(0)
    return Tagger(**kwargs).double()


def test_loss_module_with_options():
    model = tagger()
    loss = nn.CrossEntropyLoss(ignore_index=0, label_smoothing=0.1)
    report = parity.check(model, batches(), optimizer=torch.optim.Adam(model.parameters(), 1e-2), loss=loss, steps=6)
    assert_ok(report)
    assert "CrossEntropyLoss" in report.setup


def test_loss_function():
    model = tagger()
    report = parity.check(model, batches(), optimizer=torch.optim.SGD(model.parameters(), 0.5),
                          loss=nn.functional.cross_entropy, steps=4)
    assert_ok(report)


def test_frozen_embedding_stays_and_is_compared():
    model = tagger(frozen_embedding=True)
    before = model.embed.weight.detach().clone()
    params = [p for p in model.parameters() if p.requires_grad]
    report = parity.check(model, batches(), optimizer=torch.optim.Adam(params, 1e-2), loss="cross_entropy", steps=4)
    assert_ok(report)
    assert torch.equal(before, model.embed.weight), "torch trained the frozen embedding"
    assert "embed.weight" in report.untrained and report.param_diffs["embed.weight"] == 0


def test_data_loader():
    model = tagger()
    ids = torch.randint(0, V, (8, T), generator=torch.Generator().manual_seed(1))
    loader = DataLoader(TensorDataset(ids, torch.roll(ids, -1, 1)), batch_size=4)

    def flat(batch):
        x, y = batch
        return x, y.flatten()

    report = parity.check(model, [flat(b) for b in loader], optimizer=torch.optim.Adam(model.parameters(), 1e-2),
                          loss="cross_entropy")
    assert_ok(report)
    assert report.steps == 2


def test_data_loader_as_it_is():
    class Flat(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = tagger()

        def forward(self, ids):
            return self.inner(ids)

    model = Flat()
    ids = torch.randint(0, V, (8, T), generator=torch.Generator().manual_seed(1))
    loader = DataLoader(TensorDataset(ids, torch.roll(ids, -1, 1).reshape(8, T)), batch_size=4)
    loss = lambda out, y: nn.functional.cross_entropy(out, y.flatten())  # noqa: E731
    report = parity.check(model, loader, optimizer=torch.optim.Adam(model.parameters(), 1e-2), loss=loss)
    assert_ok(report)
    assert report.steps == 2


def test_carried_hidden_state_word_language_model_loop():
    """pytorch/examples' word language model loop: SGD lr 20, clip 0.25, hidden carried detached."""
    torch.manual_seed(0)
    model = CarriedLM().double()
    report = parity.check(model, batches(5, time_major=True), optimizer=torch.optim.SGD(model.parameters(), lr=20),
                          loss="cross_entropy", clip_grad_norm=0.25, hidden=model.init_hidden(B))
    assert_ok(report)
    assert "hidden state carried" in report.setup


def test_one_step_check_says_so():
    model = tagger()
    report = parity.check(model, batches(1), optimizer=torch.optim.Adam(model.parameters()), loss="cross_entropy")
    assert "one step shows the gradients, not training" in report.table()


def test_compiles_are_counted_apart():
    model = tagger()
    shapes = [batches(1)[0], (torch.randint(0, V, (2, T + 1)), torch.randint(0, V, (2 * (T + 1),)))]
    report = parity.check(model, shapes * 2, optimizer=torch.optim.Adam(model.parameters()), loss="cross_entropy")
    assert_ok(report)
    assert report.jax_compiles == 2, report.jax_compiles


@pytest.mark.parametrize(
    "make_optimizer",
    [lambda p: torch.optim.LBFGS(p, lr=0.8), lambda p: torch.optim.LBFGS(p, history_size=4, line_search_fn="strong_wolfe")],
    ids=["LBFGS", "LBFGS-strong-wolfe"],
)
def test_lbfgs(make_optimizer):
    """LBFGS re-evaluates the loss inside the jitted step. On a least-squares fit: on a network its
    20 inner iterations amplify rounding in torch alone (a 1e-13 change of one weight moves torch's
    own loss by 1e-2 within 10 steps on an LSTM, and a two-layer tanh net parts from itself at step
    3-4), so no two runs agree there; test_optim_lbfgs.py checks it step by step from torch's state."""
    torch.manual_seed(0)
    model = nn.Linear(4, 1).double()
    x = torch.randn(32, 4, dtype=torch.float64)
    y = x[:, :1] * 0.5 - x[:, 1:2] ** 2
    report = parity.check(model, (x, y), optimizer=make_optimizer(model.parameters()), loss="mse", steps=8)
    assert_ok(report)


@pytest.mark.parametrize(
    "make_optimizer,make_scheduler",
    [
        (lambda p: torch.optim.SGD(p, lr=0.5), lambda o: torch.optim.lr_scheduler.ReduceLROnPlateau(o, patience=0)),
        (lambda p: torch.optim.Adam(p, lr=1e-2),
         lambda o: torch.optim.lr_scheduler.LambdaLR(o, lambda epoch: 0.9**epoch)),
        (lambda p: torch.optim.NAdam(p, lr=1e-2, decoupled_weight_decay=True, weight_decay=0.1), None),
    ],
    ids=["ReduceLROnPlateau", "LambdaLR", "NAdamW"],
)
def test_optimizers_and_schedulers_people_use(make_optimizer, make_scheduler):
    model = tagger()
    optimizer = make_optimizer(model.parameters())
    scheduler = make_scheduler(optimizer) if make_scheduler else None
    report = parity.check(model, batches(), optimizer=optimizer, scheduler=scheduler, loss="cross_entropy", steps=6)
    assert_ok(report)
