"""Draw the dataflow graph of the configured output mathematics (the ModulOM paper's appendix A and Figure 7).

    python tools/om_graph.py --cfg FILE --out DIR [--recorded]

Writes DIR/graph.dot, graph.mmd (Mermaid), graph_variables.md (every variable: defining block, signature, meaning,
overriding mixins), graph_mixins.md (what each mixin changes) and, when Graphviz's ``dot`` is installed,
graph.png / graph.svg. ``--recorded`` runs one training batch of the configured dataset through a randomly
initialised model, then decodes it, and draws the requests recorded at run time (nodes carry their arguments).
"""
import sys

from _common import parse_config, run

from segmentation.model.output_math import build_output_math_class, recorded_graph, static_graph, write_graph_outputs


def _recorded(cfg):
    import torch

    from segmentation.data import build_dataset, collate
    from segmentation.model import build_model
    cfg.defrost()
    cfg.MODEL.BACKBONE.PRETRAINED = False
    cfg.MODEL.WEIGHTS = ""
    cfg.freeze()
    torch.manual_seed(0)
    model = build_model(cfg)
    dataset = build_dataset(cfg, cfg.DATASET.TRAIN_SPLIT, is_train=True)
    batch = collate([dataset[i] for i in range(min(2, len(dataset)))])
    om = model(batch["image"], batch)
    om.logged_losses()
    with torch.no_grad():
        om.panoptic_pred()
    return recorded_graph(om)


def main(argv=None):
    def extra(parser):
        parser.add_argument("--out", required=True, help="output folder")
        parser.add_argument("--recorded", action="store_true", help="record the graph on one synthetic batch")
    args, cfg = parse_config("Draw the OM dataflow graph.", argv, extra)
    graph = _recorded(cfg) if args.recorded else static_graph(build_output_math_class(cfg))
    for note in write_graph_outputs(graph, args.out):
        print(note)


if __name__ == "__main__":
    sys.exit(run(main))
