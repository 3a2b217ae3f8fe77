import shutil

import pytest

from segmentation.model.output_math import OM_REGISTRY, compose, recorded_graph, static_graph, write_graph_outputs
from tests.model.output_math import toy  # noqa: F401
from tests.model.output_math.toy import batch


def test_static_graph_reads_calls_subscripts_helpers_and_super():
    g = static_graph(compose("toy", ("toy-shift",)))
    assert g.dependencies("loss") == {"error_loss", "y_truth"}  # call and self["y_truth"]
    assert g.dependencies("error_loss") == {"scaled_pred", "y_truth"}  # through the _diff helper
    assert g.dependencies("scaled_pred") == {"x_pred"}  # ToyShift calls super(): the base's requests count
    assert g.nodes["scaled_pred"].overridden_by == ("ToyShift",)
    assert g.nodes["scaled_pred"].defined_in == "ToyBase" or g.nodes["scaled_pred"].defined_in == "Toy"
    assert g.nodes["x_pred"].kind == "input" and g.nodes["loss"].kind == "loss"
    assert g.nodes["error_loss"].kind == "loss" and g.nodes["mode_pred"].kind == "pred"


def test_oracle_mixin_changes_the_edges():
    g = static_graph(compose("toy", ("toy-oracle",)))
    assert g.dependencies("scaled_pred") == {"y_truth"}


def test_queries():
    g = static_graph(compose("toy", ()))
    assert g.upstream("loss") == {"error_loss", "scaled_pred", "x_pred", "y_truth"}
    assert g.downstream("x_pred") == {"scaled_pred", "error_loss", "loss"}
    assert g.path("x_pred", "loss") == ["x_pred", "scaled_pred", "error_loss", "loss"]
    assert g.path("loss", "x_pred") is None
    with pytest.raises(KeyError, match="Nodes:"):
        g.upstream("nothing")


def test_recorded_graph_has_argument_nodes():
    om = compose("toy", ())(batch())
    om.loss()
    om.scaled_pred(3.0)
    g = recorded_graph(om)
    assert ("error_loss", "scaled_pred(2.0)") in g.edges
    assert "scaled_pred(3.0)" in g.nodes and g.nodes["scaled_pred(2.0)"].kind == "pred"


def test_dot_and_mermaid_as_sets_of_lines():
    g = static_graph(compose("toy", ("toy-shift",)))
    dot = set(g.to_dot().splitlines())
    assert '  "x_pred" -> "scaled_pred";' in dot
    assert any(line.startswith('  "scaled_pred" [label="scaled_pred\\n(overridden by ToyShift)"') for line in dot)
    mmd = g.to_mermaid()
    assert mmd.startswith("flowchart LR") and "overridden by ToyShift" in mmd and "classDef loss" in mmd


def test_figure7_tables():
    g = static_graph(compose("toy", ("toy-oracle",)))
    table = g.variables_table()
    assert "| Toy | `x_pred` | `x_pred()` | [N] float: the raw network output. |  |" in table
    assert "| ToyOracle | overrides | `scaled_pred` | The truth, whatever the factor. |" in g.mixins_table()


def test_write_outputs_with_or_without_graphviz(tmp_path):
    notes = write_graph_outputs(static_graph(compose("toy", ())), str(tmp_path))
    assert (tmp_path / "graph.dot").exists() and (tmp_path / "graph_variables.md").exists()
    if shutil.which("dot"):
        assert (tmp_path / "graph.png").exists()
    else:
        assert any("apt-get install graphviz" in n for n in notes)


@pytest.mark.parametrize("name", OM_REGISTRY.names())
def test_every_registered_variable_has_a_declared_role(name):
    """No node of a registered formulation is drawn as 'other': its role is in its name or declared (@role)."""
    from segmentation.model.output_math import variable_role
    cls = OM_REGISTRY.get(name)
    assert [v for v in cls.variables() if variable_role(cls, v) is None] == []
    if cls.OM_KIND == "mixin" and not name.startswith("toy"):
        cls = compose("panoptic-deeplab", (name,))
    assert [n for n, node in static_graph(cls).nodes.items() if node.kind == "other"] == []


def test_a_variable_without_a_role_cannot_be_registered():
    from segmentation.model.output_math import OutputMath, register_om

    class NoRole(OutputMath):
        def table(self):
            """[2] long: something."""
            return None
    with pytest.raises(TypeError, match=r"role of table is not declared.*@role\('intermediate'\)"):
        register_om("no-role", "mixin")(NoRole)


def test_renamed_variables_still_answer_to_their_old_names():
    import torch

    from segmentation.config import get_default_config
    from segmentation.data.datasets import SYNTHETIC_METADATA
    pan = torch.full((1, 4, 5), 1000)
    pan[0, :2, :2] = 4001
    om = compose("panoptic-deeplab")({"panoptic_truth": pan}, config=get_default_config(),
                                     metadata=SYNTHETIC_METADATA)
    with pytest.warns(DeprecationWarning, match="'center_weights' is now 'center_weights_truth'"):
        old = om.center_weights()
    assert torch.equal(old, om.center_weights_truth())
    with pytest.warns(DeprecationWarning):
        (weights,) = om.request("semantic_weights")
    assert torch.equal(weights, om.semantic_weights_truth())
