import itertools
import pickle

import pytest

from segmentation.config import get_default_config
from segmentation.model.output_math import (
    OM_REGISTRY,
    OMCompositionError,
    OutputMath,
    build_output_math_class,
    compose,
    decoding_mixins,
    formulation_mismatch,
    register_om,
)
from segmentation.model.output_math.build import _names
from tests.model.output_math import toy  # noqa: F401  (registers the toy formulations)
from tests.model.output_math.toy import ToyBase, ToyOracle, ToyShift, batch

BASES = _names("base")
MIXINS = _names("mixin")


def test_last_mixin_listed_wins():
    a = compose("toy", ("toy-oracle", "toy-shift"))
    assert a.__mro__[1:4] == (ToyShift, ToyOracle, ToyBase)
    assert a(batch()).scaled_pred().tolist() == [3.0, 5.0]  # shift applied on top of the oracle
    assert a.__name__ == "ToyBase+ToyOracle+ToyShift"


def test_a_mixin_whose_override_can_never_run_is_refused():
    # the oracle (listed last, highest precedence) replaces scaled_pred without super(): the shift would be dead
    with pytest.raises(OMCompositionError, match=r"'toy-shift' has no effect .*'toy-oracle' overrides scaled_pred"):
        compose("toy", ("toy-shift", "toy-oracle"))


def test_learnable_centers_under_cpu_tensors_is_refused_in_either_order():
    for mixins in (("learnable-centers", "cpu-tensors"), ("cpu-tensors", "learnable-centers")):
        with pytest.raises(OMCompositionError, match=r"'learnable-centers' has no effect.*centroids_truth.*"
                                                     r"'cpu-tensors' overrides center_truth, offset_truth"):
            compose("panoptic-deeplab", mixins)


@register_om("toy-double", "mixin")
class ToyDouble(OutputMath):
    """Test mixin: overrides scaled_pred (ignoring super()) and adds another override that stays reachable."""

    def scaled_pred(self, factor: float = 2.0, *, offset: float | None = None):
        """Doubled truth."""
        return 2 * self.y_truth()

    def error_loss(self):
        """Squared error."""
        return (self.scaled_pred() - self.y_truth()).pow(2).mean()


def test_a_shadowed_override_of_a_still_useful_mixin_warns():
    with pytest.warns(UserWarning, match=r"'toy-oracle' overrides scaled_pred without calling super\(\): the "
                                          "override of 'toy-double' is never used"):
        compose("toy", ("toy-double", "toy-oracle"))


def test_composed_class_is_created_once_per_combination():
    assert compose("toy", ("toy-shift",)) is compose("toy", ("toy-shift",))
    assert compose("toy", ()) is not compose("toy", ("toy-shift",))


def test_unknown_names_list_the_registered_ones():
    with pytest.raises(OMCompositionError, match="toy-oracle"):
        compose("toy", ("toy-orcale",))
    with pytest.raises(OMCompositionError, match="Registered bases: .*toy"):
        compose("toy-shift")


def test_declared_incompatibility_fails_at_build_time():
    with pytest.raises(OMCompositionError, match="toy-refuses-oracle.*toy-oracle"):
        compose("toy", ("toy-oracle", "toy-refuses-oracle"))
    with pytest.raises(OMCompositionError, match="more than once"):
        compose("toy", ("toy-shift", "toy-shift"))


def test_non_linearisable_combination_names_the_classes():
    # ToyShiftTwice derives from ToyShift: listing it first would put ToyShift before its own subclass
    assert compose("toy", ("toy-shift", "toy-shift-twice"))(batch()).scaled_pred().tolist() == [4.0, 6.0]
    with pytest.raises(OMCompositionError, match="Cannot linearise.*ToyShift.*ToyShiftTwice"):
        compose("toy", ("toy-shift-twice", "toy-shift"))


def test_duplicate_registration_is_an_error():
    with pytest.raises(KeyError, match="already registered"):
        register_om("toy", "base")(type("Again", (ToyBase,), {}))


def test_config_path_and_om_base_alias():
    """OM.BASE is the loader's business (tests/config): it reaches the OM as OM.NAME."""
    from segmentation.config import load_config
    cfg = get_default_config()
    cfg.OM.NAME, cfg.OM.MIXINS = "toy", ("toy-shift",)
    assert build_output_math_class(cfg) is compose("toy", ("toy-shift",))
    with pytest.warns(DeprecationWarning):
        loaded = load_config(None, ["OM.BASE", "toy", "OM.MIXINS", "('toy-shift',)"])
    assert build_output_math_class(loaded) is compose("toy", ("toy-shift",))
    cfg.OM.NAME = ""
    with pytest.raises(OMCompositionError, match="OM.NAME is empty"):
        build_output_math_class(cfg)


def _has_a_dead_mixin(parts, message):
    """The refusal names a mixin none of whose definitions runs for loss or panoptic_pred (checked here
    independently on the composition built without checks)."""
    from segmentation.model.output_math.build import ROOTS, _make_class
    from segmentation.model.output_math.graph import reached_definitions
    cls = _make_class(parts, None)
    reached = {c for _, c in reached_definitions(cls, ROOTS)}
    dead = [p for p in parts[1:] if p not in reached]
    return any(f"'{p.OM_NAME}' has no effect" in message for p in dead)


def _compose_or_refuse(base, mixins):
    try:
        return compose(base, mixins)
    except OMCompositionError as e:
        parts = [OM_REGISTRY.get(n) for n in (base, *mixins)]
        declared = any(b.OM_NAME in a.OM_INCOMPATIBLE for a in parts for b in parts)
        # a mixin listed before one of its own bases would precede its subclass in the MRO
        unordered = any(issubclass(parts[i], parts[j]) for i in range(1, len(parts)) for j in range(i + 1, len(parts)))
        assert declared or unordered or _has_a_dead_mixin(parts, str(e)), str(e)
        return None


@pytest.mark.parametrize("base", BASES)
@pytest.mark.parametrize("mixin", MIXINS)
def test_every_registered_mixin_composes_or_is_refused(base, mixin):
    cls = _compose_or_refuse(base, (mixin,))
    if cls is not None:
        assert cls.__mro__[1] is OM_REGISTRY.get(mixin)
        assert type(pickle.loads(pickle.dumps(cls({})))) is cls  # composed classes pickle by registry names


@pytest.mark.parametrize("base", BASES)
@pytest.mark.parametrize("pair", list(itertools.permutations(MIXINS, 2)), ids=lambda p: "+".join(p))
def test_every_ordered_pair_composes_or_is_refused(base, pair):
    cls = _compose_or_refuse(base, pair)
    if cls is not None:
        mro = cls.__mro__
        assert mro.index(OM_REGISTRY.get(pair[1])) < mro.index(OM_REGISTRY.get(pair[0]))


# the registered mixins that change how the network outputs are read at test time (focal-centers: a sigmoid of the
# centre head's output instead of the output itself); every other one changes a loss, a target or is an oracle
READS_OUTPUTS_OTHERWISE = {"focal-centers"}


@pytest.mark.parametrize("mixin", [m for m in MIXINS if OM_REGISTRY.get(m).__module__.startswith("segmentation.")])
def test_the_mixins_that_change_how_outputs_are_read(mixin):
    expected = {mixin} if mixin in READS_OUTPUTS_OTHERWISE else set()
    assert decoding_mixins("panoptic-deeplab", (mixin,)) == expected
    assert decoding_mixins("", (mixin,)) == set()  # a conventional model: the base formulation's reading


def test_formulation_mismatch_names_what_differs():
    focal = ("panoptic-deeplab", ("focal-centers",))
    assert formulation_mismatch(focal, focal) == []
    assert formulation_mismatch(focal, ("panoptic-deeplab", ("focal-centers", "oracle-offsets"))) == []
    assert formulation_mismatch(("", ()), ("panoptic-deeplab", ("oracle-centers",))) == []  # oracle studies
    assert formulation_mismatch(("panoptic-deeplab", ("push-pull",)), ("", ())) == []  # a loss mixin
    assert formulation_mismatch(focal, ("panoptic-deeplab", ())) == [
        "it was trained with the mixin 'focal-centers', which changes how the network outputs are read, and is "
        "evaluated without it"]
    assert formulation_mismatch(("", ()), focal) == [
        "it is evaluated with the mixin 'focal-centers', which changes how the network outputs are read, and was "
        "trained without it"]
    assert formulation_mismatch(("other-base", ()), focal) == [
        "it was trained with OM.NAME 'other-base', and is evaluated with 'panoptic-deeplab'"]
    (line,) = formulation_mismatch(("panoptic-deeplab", ("gone-mixin",)), ("panoptic-deeplab", ()))
    assert line.startswith("its training formulation cannot be built here (Unknown mixin 'gone-mixin'")
