"""`cnnlab backprop`: the course's derivation on real numbers, every option checked against torch
autograd, and the steps' numbers against the equations they name."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from cnnlab.cli import main
from cnnlab.errors import CnnlabError
from cnnlab.inspect.backprop_walk import ACTIVATIONS, COSTS, POOLS, correlate, example_network, walk


@pytest.mark.parametrize(
    "pool,activation,cost,size", list(itertools.product(POOLS, ACTIVATIONS, COSTS, (4, 6, 8)))
)
def test_every_option_matches_autograd(pool, activation, cost, size):
    for seed in range(3):
        net = example_network(size, 3, seed, activation, pool, cost, target=seed % 3)
        result = walk(net)
        names = {"C", "dC_dw_L", "dC_db_L", "dC_dw_l", "dC_db_l", "dC_da_input"}
        assert set(result.autograd_max_difference) == names
        assert max(result.autograd_max_difference.values()) < 1e-12


def test_the_steps_follow_the_course_equations():
    net = example_network(6, 2, seed=4, pool="mean")
    v = walk(net).values
    # eq. 4 at one position, by hand
    z01 = (
        sum(net.kernel[a, b] * net.image[0 + a, 1 + b] for a in range(3) for b in range(3))
        + net.bias
    )
    assert v["z_l"][0, 1] == pytest.approx(z01)
    # eq. 7: q = o'P + p' with P = 2
    assert v["a_flat"][1 * 2 + 0] == v["a_pool"][1, 0]
    # CBP1 with squared error and a sigmoid
    a = 1 / (1 + np.exp(-v["z_L"]))
    assert np.allclose(v["delta_L"], (a - v["y"]) * a * (1 - a))
    # BP4: dC/dw_rq = a~_q delta_r
    assert v["dC_dw_L"][1, 3] == pytest.approx(v["a_flat"][3] * v["delta_L"][1])
    # mean pooling spreads each delta evenly, a quarter to each input of its window
    assert np.allclose(v["dC_da_l"][2:4, 0:2], v["dC_da_pool"][1, 0] / 4)
    # the input gradient: the delta map, padded, correlated with the filter rotated by 180
    assert np.allclose(v["dC_da_input"], correlate(np.pad(v["delta_l"], 2), net.kernel[::-1, ::-1]))


def test_max_pooling_sends_each_delta_to_its_winner_only():
    net = example_network(6, 2, seed=2, pool="max")
    v = walk(net).values
    for o, p in itertools.product(range(2), range(2)):
        window = v["a_l"][2 * o : 2 * o + 2, 2 * p : 2 * p + 2]
        grads = v["dC_da_l"][2 * o : 2 * o + 2, 2 * p : 2 * p + 2]
        winner = np.unravel_index(window.argmax(), (2, 2))
        assert grads[winner] == pytest.approx(v["dC_da_pool"][o, p])
        assert np.count_nonzero(grads) <= 1


def test_command_prints_every_step_and_the_autograd_check(capsys):
    assert main(["backprop", "--pool", "max", "--cost", "cross-entropy"]) == 0
    out = capsys.readouterr().out
    steps = "step 0|(eq.4)|(eq.7)|step 1|(BP3)|(BP4)|step 3|step 4|(BP2)|step 5|torch autograd"
    for text in [*steps.split("|"), "rotated by 180 degrees"]:
        assert text in out, text


def test_command_takes_given_numbers_and_writes_json(capsys):
    image = ",".join(["1"] * 36)
    assert main(["backprop", "--input", image, "--filter", "1,0,0,0,1,0,0,0,1", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    bias = data["network"]["bias"]
    assert data["values"]["z_l"][0][0] == pytest.approx(3 + bias)  # the diagonal of ones
    assert max(data["autograd_max_difference"].values()) < 1e-12


@pytest.mark.parametrize(
    "args,message",
    [
        (["--size", "5"], "gives a 3x3 map"),
        (["--input", "1,2"], "--input has 2 values: expected 6x6 = 36"),
        (["--filter", "1,2,3"], "--filter has 3 values: expected 3x3 = 9"),
        (["--target", "5"], "target 5: expected a class 0..1"),
        (["--size", "1000"], "--size 1000: expected 4..32"),
        (["--seed", "-1"], "--seed -1: expected 0 <= seed < 2**32"),
    ],
)
def test_bad_requests_are_one_line_errors(args, message, capsys):
    assert main(["backprop", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err


def test_a_bad_network_is_refused_in_python_too():
    net = example_network()
    net.image = np.zeros((6, 5))
    with pytest.raises(CnnlabError, match="square"):
        net.__post_init__()
