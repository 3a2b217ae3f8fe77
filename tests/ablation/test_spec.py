"""The grid file and the command line's grid: variants, names, overrides as yacs reads them, clear errors."""
import pytest
import yaml

from segmentation.ablation import SpecError, load_spec
from segmentation.ablation.jobs import run_jobs_for_spec
from segmentation.ablation.spec import folder_name, format_value
from segmentation.config import load_config
from tests.conftest import ROOT

BASE = f"{ROOT}/configs/synthetic/om_panoptic_deeplab_mbv2_synthetic.yaml"


def _grid(tmp_path, **data):
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump({"base": BASE, **data}))
    return str(path)


def test_named_variants_crossed_with_the_grid_and_the_command_line(tmp_path):
    path = _grid(tmp_path, seeds=2, opts={"TRAIN.MAX_ITER": 8},
                 variants={"base": {}, "pp": {"OM.MIXINS": ["push-pull"]}}, grid={"LOSS.OFFSET.WEIGHT": [0.01, 0.02]})
    spec = load_spec(path, vary=[["LOSS.CENTER.WEIGHT", "100", "200"]], opts=["SOLVER.BASE_LR", "0.002"])
    names = [v.name for v in spec.variants]
    assert len(names) == 8 and names[0] == "base__LOSS.OFFSET.WEIGHT=0.01__LOSS.CENTER.WEIGHT=100"
    assert spec.variants[-1].overrides == {"OM.MIXINS": ["push-pull"], "LOSS.OFFSET.WEIGHT": 0.02,
                                           "LOSS.CENTER.WEIGHT": 200}
    assert spec.opts == {"TRAIN.MAX_ITER": 8, "SOLVER.BASE_LR": 0.002} and spec.seeds == 2
    jobs = run_jobs_for_spec(spec, str(tmp_path / "out"))
    assert len(jobs) == 16 and jobs[1].folder.endswith("seed1")
    cfg = load_config(jobs[-1].config, jobs[-1].opts)
    assert cfg.OM.MIXINS == ("push-pull",) and cfg.LOSS.OFFSET.WEIGHT == 0.02 and cfg.SEED == 1
    assert cfg.TRAIN.MAX_ITER == 8 and cfg.SOLVER.BASE_LR == 0.002 and cfg.LOSS.CENTER.WEIGHT == 200


def test_a_pure_grid_names_folders_from_its_overrides(tmp_path):
    spec = load_spec(base=BASE, vary=[["OM.MIXINS", "()", "(push-pull, huber-offsets)"]])
    assert [v.name for v in spec.variants] == ["OM.MIXINS=none", "OM.MIXINS=push-pull+huber-offsets"]
    assert spec.reference_variant() == "OM.MIXINS=none" and spec.seeds == 1 and spec.metric == "PQ"


@pytest.mark.parametrize("value, text, key, expected", [
    (["push-pull"], "('push-pull',)", "OM.MIXINS", ("push-pull",)), ([], "()", "OM.MIXINS", ()),
    (0.02, "0.02", "LOSS.OFFSET.WEIGHT", 0.02), (False, "False", "DATASET.PAN_ONLY", False),
    ("sgd", "'sgd'", "SOLVER.OPTIMIZER", "sgd"), ([64, 96], "(64, 96,)", "DATASET.CROP_SIZE", (64, 96))])
def test_values_are_written_as_overrides_yacs_reads_back(value, text, key, expected):
    assert format_value(value) == text
    cfg = load_config(BASE, [key, text])
    node = cfg
    for part in key.split("."):
        node = node[part]
    assert node == expected


def test_folder_names_are_safe_and_short():
    assert folder_name({}) == "base"
    assert folder_name({"OM.MIXINS": ["a/b"]}) == "OM.MIXINS=a-b"
    long = folder_name({"OM.MIXINS": ["learnable-centers"] * 20})
    assert len(long) == 99 and long != folder_name({"OM.MIXINS": ["learnable-centers"] * 21})


@pytest.mark.parametrize("data, message", [
    ({"variant": {}}, "unknown key.*variant.*valid keys: base, opts"),
    ({"variants": {"a": {"OM.MIXIN": ["x"]}}}, "variants: a: 'OM.MIXIN' is not a config key"),
    ({"grid": {"LOSS.OFFSET.WEIGHT": 0.01}}, "grid: 'LOSS.OFFSET.WEIGHT' needs a non-empty list"),
    ({"variants": {"a b": {}}}, "'a b' cannot be a folder name"),
    ({"variants": {"a": {}}, "reference": "b"}, "reference: 'b' is not a variant; variants: a"),
    ({"seeds": 0}, "seeds must be at least 1"),
])
def test_errors_say_what_is_wrong(tmp_path, data, message):
    with pytest.raises(SpecError, match=message):
        load_spec(_grid(tmp_path, **data))


def test_the_shipped_zoo_grid_reads():
    spec = load_spec(f"{ROOT}/configs/ablations/formulations.yaml")
    assert spec.reference_variant() == "base" and spec.seeds == 3
    for variant in spec.variants:  # every variant's config loads and composes
        from segmentation.model.output_math import build_output_math_class
        cfg = load_config(spec.base, [*spec.shared_opts(), *[x for k, v in variant.overrides.items()
                                                             for x in (k, format_value(v))]])
        build_output_math_class(cfg)


def test_command_line_values_and_yaml_numbers_become_config_values(tmp_path):
    spec = load_spec(_grid(tmp_path, grid={"SOLVER.BASE_LR": ["1e-3", 2]}),
                     vary=[["OM.MIXINS", "()", "(push-pull, huber-offsets)", "('push-pull',)"],
                           ["LOSS.OFFSET.WEIGHT", "1e-2"]])
    values = [(v.overrides["SOLVER.BASE_LR"], v.overrides["OM.MIXINS"], v.overrides["LOSS.OFFSET.WEIGHT"])
              for v in spec.variants]
    assert values[:3] == [(0.001, [], 0.01), (0.001, ["push-pull", "huber-offsets"], 0.01),
                          (0.001, ["push-pull"], 0.01)]
    assert values[3][0] == 2.0 and isinstance(values[3][0], float)
    with pytest.raises(SpecError, match="'SOLVER.BASE_LR' takes a number, got 'fast'"):
        load_spec(base=BASE, vary=[["SOLVER.BASE_LR", "fast"]])


def test_vary_values_end_at_the_next_option_or_config_key():
    import ablate
    rest, groups = ablate.split_vary(["--cfg", "x", "--vary", "OM.MIXINS", "()", "(push-pull,)", "--vary",
                                      "SOLVER.BASE_LR", "-1e-3", "1e-3", "TRAIN.MAX_ITER", "200", "--jobs", "2"])
    assert rest == ["--cfg", "x", "TRAIN.MAX_ITER", "200", "--jobs", "2"]
    assert groups == [["OM.MIXINS", "()", "(push-pull,)"], ["SOLVER.BASE_LR", "-1e-3", "1e-3"]]
