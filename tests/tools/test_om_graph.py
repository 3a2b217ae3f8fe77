import glob
import os

import pytest

from tests.conftest import ROOT

OM_CONFIGS = sorted(glob.glob(os.path.join(ROOT, "configs", "synthetic", "om_*.yaml")))
TEXT_OUTPUTS = ("graph.dot", "graph.mmd", "graph_variables.md", "graph_mixins.md")


@pytest.mark.parametrize("path", OM_CONFIGS, ids=os.path.basename)
def test_committed_docs_are_up_to_date(path, tmp_path):
    """docs/om/<config>/ is what tools/om_graph.py writes today; regenerate with the command in docs/om/README.md."""
    import om_graph
    om_graph.main(["--cfg", path, "--out", str(tmp_path)])
    committed = os.path.join(ROOT, "docs", "om", os.path.basename(path)[:-5])
    for name in TEXT_OUTPUTS:
        with open(os.path.join(committed, name)) as f, open(tmp_path / name) as g:
            assert f.read() == g.read(), f"docs/om/{os.path.basename(committed)}/{name} is stale"


def test_recorded_graph_runs_a_batch(tmp_path):
    import om_graph
    om_graph.main(["--cfg", os.path.join(ROOT, "configs/synthetic/om_learnable_centers.yaml"), "--recorded",
                   "--out", str(tmp_path), "DATASET.SYNTHETIC.IMAGE_SIZE", "(64, 96)", "DATASET.CROP_SIZE",
                   "(64, 96)"])
    dot = (tmp_path / "graph.dot").read_text()
    assert '"votes_pred" -> "centroids_truth"' in dot and "(recorded)" in dot
