import gc
import inspect
import pickle
import weakref

import pytest
import torch

from segmentation.model.output_math import OMCycleError, compose
from tests.model.output_math import toy
from tests.model.output_math.toy import CALLS, ToyBase, batch


@pytest.fixture(autouse=True)
def _clear_calls():
    CALLS.clear()


def test_public_methods_are_computed_once_per_instance():
    om = ToyBase(batch())
    assert om.x_pred() is om.x_pred()
    assert CALLS == ["x_pred"]
    ToyBase(batch()).x_pred()
    assert CALLS == ["x_pred", "x_pred"]  # a new batch, a new cache


def test_defaults_and_positional_names_share_one_entry():
    om = ToyBase(batch())
    a = om.scaled_pred()
    assert om.scaled_pred(2.0) is a and om.scaled_pred(factor=2.0) is a
    assert om.scaled_pred(3.0) is not a
    assert [c for c in CALLS if c[0] == "scaled_pred"] == [("scaled_pred", 2.0, None), ("scaled_pred", 3.0, None)]


def test_keyword_only_argument_bypasses_the_cache():
    om = ToyBase(batch())
    a = om.scaled_pred(offset=1.0)
    b = om.scaled_pred(offset=1.0)
    assert torch.equal(a, b) and a is not b
    assert CALLS.count(("scaled_pred", 2.0, 1.0)) == 2
    assert "scaled_pred" not in om.cached()


def test_underscore_helpers_and_no_cache_are_never_cached():
    om = ToyBase(batch())
    om._diff()
    om._diff()
    assert CALLS.count("_diff") == 2
    assert om.fresh() is not om.fresh()
    assert "fresh" not in ToyBase.variables() and "_diff" not in ToyBase.variables()


def test_no_cache_condition_receives_bound_arguments():
    om = ToyBase(batch())
    assert om.maybe() is om.maybe() is om.maybe(None, 1)  # condition false: cached
    assert om.maybe(3) is not om.maybe(3)  # condition true: not cached
    assert om.maybe(b=2) is om.maybe(None, 2)


def test_var_args_are_part_of_the_key():
    om = ToyBase(batch())
    assert om.many(1, 2) == 3 and om.many(1, 2) == 3 and om.many(1, 2, 3) == 6
    assert CALLS == [("many", (1, 2)), ("many", (1, 2, 3))]


def test_signatures_and_docstrings_survive_for_help():
    sig = inspect.signature(ToyBase.scaled_pred)
    assert list(sig.parameters) == ["self", "factor", "offset"]
    assert sig.parameters["factor"].annotation is float
    assert ToyBase.scaled_pred.__doc__.startswith("[N] float")


def test_getitem_setitem():
    om = ToyBase(batch())
    assert om["scaled_pred"] is om.scaled_pred()
    assert om["scaled_pred", 3.0] is om.scaled_pred(3.0)
    om["mode_pred"] = "injected"
    assert om.mode_pred() == "injected" and om.mode_pred("a") == "injected" and om.mode_pred("b") == "b"
    om["y_truth"] = torch.tensor([1.0, 2.0])
    assert om.error_loss().item() == pytest.approx(1.5)  # scaled [2, 4] against the injected [1, 2]
    with pytest.raises(KeyError, match="scaled_pred"):
        om["scaled_prd"]


def test_instance_pickles_with_its_cache():
    om = ToyBase(batch())
    om.scaled_pred()
    clone = pickle.loads(pickle.dumps(om))
    assert type(clone) is ToyBase and torch.equal(clone.scaled_pred(), om.scaled_pred())
    composed = compose("toy", ("toy-shift",))(batch())
    assert torch.equal(pickle.loads(pickle.dumps(composed)).scaled_pred(), composed.scaled_pred())


def test_dropping_the_instance_frees_every_cached_tensor_at_once():
    om = ToyBase({"x_pred": torch.ones(1000), "y_truth": torch.zeros(1000)})
    om.loss()
    refs = [weakref.ref(v) for per in om.cached().values() for v in per.values() if isinstance(v, torch.Tensor)]
    assert len(refs) >= 3
    gc.disable()  # freed by reference counting alone: no reference cycle
    try:
        del om
        assert all(r() is None for r in refs)
    finally:
        gc.enable()


def test_stats_count_hits_misses_time_and_bytes():
    om = ToyBase(batch())
    om.loss()
    om.loss()
    stats = om.stats()
    assert stats["loss"]["misses"] == 1 and stats["loss"]["hits"] == 1
    assert stats["x_pred"]["bytes"] == 8 and stats["scaled_pred"]["misses"] == 1
    assert all(r["time_s"] >= 0 for r in stats.values())
    assert "loss" in str(stats) and "misses" in str(stats)


def test_recorded_edges_include_arguments():
    om = ToyBase(batch())
    om.loss()
    edges = om.recorded_edges()
    assert (("loss",), ("error_loss",)) in edges
    assert (("error_loss",), ("scaled_pred", 2.0)) in edges  # through the transparent _diff helper
    assert (("loss",), ("y_truth",)) in edges  # dict-style read


def test_super_call_inside_an_override_is_not_cached_twice():
    om = compose("toy", ("toy-shift",))(batch())
    assert om.scaled_pred().tolist() == [3.0, 5.0]
    assert om.stats()["scaled_pred"]["misses"] == 1


def test_cycle_is_an_error_naming_the_variables():
    om = compose("toy", ("toy-loop-a", "toy-loop-b"))(batch())
    with pytest.raises(OMCycleError, match="x_pred.*y_truth.*x_pred"):
        om.x_pred()


def test_release_policy_lowers_peak_memory_with_identical_results():
    class Big(toy.Toy):
        def a_pred(self):
            return torch.ones(250_000) * self.x_pred().sum()

        def b_pred(self):
            return self.a_pred() * 2

        def c_pred(self):
            return self.b_pred() + 1

        def d_pred(self):
            value = self.c_pred().sum()
            HELD.append(sum(r["bytes"] for r in self.stats().values()))  # cache size when the peak is reached
            return value

    HELD = []

    def run(release):
        om = Big(batch(), release=release)
        (value,) = om.request("d_pred")
        return value, HELD[-1], set(om.cached())

    v_off, peak_off, kept_off = run(False)
    v_on, peak_on, kept_on = run(True)
    assert torch.equal(v_off, v_on)
    assert peak_on < peak_off
    assert kept_on == {"d_pred"} and {"a_pred", "b_pred", "c_pred"} <= kept_off
