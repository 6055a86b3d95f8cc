"""DOT's optimizer: two steps against the momentum formulas written out by hand."""
import pytest
import torch

from mdistiller.engine.dot import DistillationOrientedSGD

LR, MU, DELTA, WD = 0.1, 0.9, 0.075, 0.01


def test_two_steps_match_the_formulas():
    both, task_only, kd_only = (torch.nn.Parameter(torch.tensor([1.0, -2.0])) for _ in range(3))
    opt = DistillationOrientedSGD([both, task_only, kd_only], lr=LR, momentum=MU, delta=DELTA, weight_decay=WD)
    kd_grads = [{both: torch.tensor([0.5, 0.25]), kd_only: torch.tensor([1.0, 2.0])},
                {both: torch.tensor([-1.0, 0.5]), kd_only: torch.tensor([0.5, -0.5])}]
    task_grads = [{both: torch.tensor([2.0, 1.0]), task_only: torch.tensor([-1.0, 3.0])},
                  {both: torch.tensor([0.0, -1.0]), task_only: torch.tensor([1.0, 1.0])}]

    # by hand
    theta = {name: torch.tensor([1.0, -2.0], dtype=torch.float64) for name in ("both", "task", "kd")}
    names = {both: "both", task_only: "task", kd_only: "kd"}
    task_buf, kd_buf = {}, {}
    m_task, m_kd, m_mean = MU - DELTA, MU + DELTA, MU
    for step in range(2):
        for p, g in task_grads[step].items():
            n = names[p]
            d = g.double() + WD * theta[n]
            task_buf[n] = d.clone() if n not in task_buf else (m_task if p in kd_grads[step] else m_mean) * task_buf[n] + d
            theta[n] = theta[n] - LR * task_buf[n]
        for p, g in kd_grads[step].items():
            n = names[p]
            if n not in kd_buf:
                kd_buf[n] = g.double().clone()
            elif p in task_grads[step]:
                kd_buf[n] = m_kd * kd_buf[n] + g.double()
            else:
                kd_buf[n] = m_mean * kd_buf[n] + g.double() + WD * theta[n]
            theta[n] = theta[n] - LR * kd_buf[n]

        # the optimizer: distillation gradients first, then the task gradients
        opt.zero_grad(set_to_none=True)
        for p, g in kd_grads[step].items():
            p.grad = g.clone()
        opt.step_kd()
        opt.zero_grad(set_to_none=True)
        for p, g in task_grads[step].items():
            p.grad = g.clone()
        opt.step()

    for p, n in names.items():
        torch.testing.assert_close(p.detach().double(), theta[n], rtol=1e-6, atol=1e-7)
    # both buffers live in the optimizer state (so they are checkpointed)
    state = opt.state_dict()["state"]
    assert set(state[0]) == {"momentum_buffer", "momentum_kd_buffer"}
    assert set(state[1]) == {"momentum_buffer"} and set(state[2]) == {"momentum_kd_buffer"}


def test_state_dict_round_trip_continues_identically():
    def run(split):
        torch.manual_seed(0)
        p = torch.nn.Parameter(torch.randn(4))
        opt = DistillationOrientedSGD([p], lr=LR, momentum=MU, delta=DELTA, weight_decay=WD)
        for step in range(4):
            if step == split:
                saved = opt.state_dict()
                opt = DistillationOrientedSGD([p], lr=LR, momentum=MU, delta=DELTA, weight_decay=WD)
                opt.load_state_dict(saved)
            p.grad = torch.full((4,), 0.1 * (step + 1))
            opt.step_kd()
            p.grad = torch.full((4,), -0.2 * step)
            opt.step()
        return p.detach().clone()

    torch.testing.assert_close(run(split=2), run(split=-1), rtol=0, atol=0)


def test_step_without_step_kd_and_bad_delta_fail():
    p = torch.nn.Parameter(torch.zeros(1))
    with pytest.raises(ValueError, match="DELTA"):
        DistillationOrientedSGD([p], lr=LR, momentum=0.9, delta=0.2)
    opt = DistillationOrientedSGD([p], lr=LR, momentum=MU, delta=DELTA)
    p.grad = torch.ones(1)
    with pytest.raises(RuntimeError, match="step_kd"):
        opt.step()
