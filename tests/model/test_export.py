"""The static-shape decoding equals the pure functions; the exported network + decoding (TorchScript, ONNX through
onnxruntime) gives the eager panoptic maps on the validation images."""
import pytest
import torch

from segmentation.data import build_test_loader
from segmentation.data.datasets import SYNTHETIC_METADATA as META
from segmentation.engine import Trainer, predict
from segmentation.model.export import PanopticExportModel, export_model
from segmentation.model.post_processing import get_panoptic_segmentation
from segmentation.model.post_processing.static import static_panoptic
from tests.model.test_post_processing import THINGS, _realistic_outputs

TABLE = torch.tensor([c in THINGS for c in range(7)])


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("top_k,kernel", [(200, 7), (3, 7), (200, 3), (1, 5)])
def test_static_decoding_equals_get_panoptic_segmentation(seed, top_k, kernel):
    logits, hmp, off = _realistic_outputs(seed)
    kw = dict(label_divisor=1000, stuff_area=64, void_label=255000, threshold=0.1, nms_kernel=kernel)
    pan, ctr = get_panoptic_segmentation(logits, hmp, off, THINGS, top_k=top_k, **kw)
    assert torch.equal(static_panoptic(logits[0], hmp[0, 0], off[0], TABLE, max_centers=top_k, **kw), pan[0])


def test_static_decoding_without_centres():
    logits = torch.zeros(7, 4, 4)
    logits[4] = 1.0
    pan = static_panoptic(logits, torch.zeros(4, 4), torch.zeros(2, 4, 4), TABLE, 1000, 0, 255000, 0.1, 3, 10)
    assert pan.eq(255000).all()


def _trained_like(synthetic_cfg, tmp_path):
    """(trainer, config path): an untrained synthetic model whose decoded maps hold instances (a thing class
    favoured), saved as the config's weights; many centres (threshold 0) and the strict top-k rule in use."""
    synthetic_cfg.OUTPUT_DIR = str(tmp_path)
    synthetic_cfg.POST_PROCESSING.CENTER_THRESHOLD = 0.0  # an untrained heatmap: many centres
    synthetic_cfg.POST_PROCESSING.TOP_K_INSTANCE = 8  # fewer peaks than that would not test the strict rule
    synthetic_cfg.POST_PROCESSING.STUFF_AREA = 16
    trainer = Trainer(synthetic_cfg)
    _favour_a_thing_class(trainer.model, build_test_loader(synthetic_cfg))
    torch.save({"model": trainer.model.state_dict()}, tmp_path / "final_state.pth")
    return trainer, _write_cfg(synthetic_cfg, tmp_path)


_OPTS = ["POST_PROCESSING.CENTER_THRESHOLD", "0.0", "POST_PROCESSING.TOP_K_INSTANCE", "8",
         "POST_PROCESSING.STUFF_AREA", "16"]


def _decode(logits, heat, offsets, pp):
    """get_panoptic_segmentation of network outputs with the synthetic metadata and POST_PROCESSING ``pp``."""
    return get_panoptic_segmentation(logits, heat, offsets, META.thing_ids, META.label_divisor, pp.STUFF_AREA,
                                     META.void_label, pp.CENTER_THRESHOLD, pp.NMS_KERNEL, pp.TOP_K_INSTANCE)[0]


def _by_export_name(outputs):
    """The network outputs of ``predict`` under the names of the export's outputs."""
    return {"semantic_logits": outputs["semantic"], "center": outputs["center"], "offset": outputs["offset"]}


def _eager_panoptic(net, image, pp):
    o = predict(net, image)
    return _decode(o["semantic"], o["center"], o["offset"], pp), o


def test_torchscript_export_reproduces_the_eager_panoptic_maps(synthetic_cfg, tmp_path):
    """TorchScript runs torch's kernels: the exported maps equal the eager decoding's bit for bit."""
    import export
    trainer, cfg_path = _trained_like(synthetic_cfg, tmp_path)
    out = str(tmp_path / "model.pt")
    h, w = synthetic_cfg.DATASET.SYNTHETIC.IMAGE_SIZE
    assert export.main(["--cfg", cfg_path, "--format", "torchscript", "--size", str(h), str(w), "--output", out,
                        *_OPTS]) == 0
    net, instances = trainer.model.eval(), 0
    for batch in build_test_loader(synthetic_cfg):
        eager, o = _eager_panoptic(net, batch["image"], synthetic_cfg.POST_PROCESSING)
        panoptic, semantic = export.run_exported(out, "torchscript", batch["image"])
        assert torch.equal(torch.from_numpy(panoptic), eager)
        assert torch.equal(torch.from_numpy(semantic), o["semantic"].argmax(1))
        instances += int(((eager % META.label_divisor) > 0).sum() > 0)
    assert instances > 0  # the maps compared hold instances


def test_onnx_export_decodes_its_own_outputs_exactly(synthetic_cfg, tmp_path):
    """onnxruntime computes the network with its own rounding (which depends on thread counts, as torch's does), so
    a near-tie of the untrained heatmap may decode differently from torch's: the exported decoding must equal
    get_panoptic_segmentation of onnxruntime's own network outputs exactly, and these must be close to torch's."""
    import export
    pytest.importorskip("onnxruntime")
    trainer, cfg_path = _trained_like(synthetic_cfg, tmp_path)
    h, w = synthetic_cfg.DATASET.SYNTHETIC.IMAGE_SIZE
    assert export.main(["--cfg", cfg_path, "--format", "onnx", "--size", str(h), str(w), "--output",
                        str(tmp_path / "model.onnx"), *_OPTS]) == 0
    net, pp = trainer.model.eval(), synthetic_cfg.POST_PROCESSING
    model = PanopticExportModel(net, META, pp, outputs="all").eval()
    out = export_model(model, torch.zeros(1, 3, h, w), str(tmp_path / "all.onnx"), "onnx")
    instances = 0
    for batch in build_test_loader(synthetic_cfg):
        panoptic, semantic, logits, heat, offsets = map(torch.from_numpy, export.run_exported(out, "onnx",
                                                                                               batch["image"]))
        ours = _decode(logits, heat, offsets, pp)
        assert torch.equal(panoptic, ours)
        assert torch.equal(semantic, logits.argmax(1))
        o = predict(net, batch["image"])
        runtime = {"semantic_logits": logits, "center": heat, "offset": offsets}
        eager = _by_export_name(o)
        assert export._network_gap(runtime, eager) <= export.RUNTIME_TOLERANCE
        instances += int(((ours % META.label_divisor) > 0).sum() > 0)
    assert instances > 0


@pytest.mark.parametrize("tipped", [False, True])
def test_export_check_tells_rounding_from_a_wrong_decoding(synthetic_cfg, tmp_path, monkeypatch, tipped):
    """check_exported: an ONNX map that differs from the eager one passes when the exported decoding is exact on
    onnxruntime's own outputs (a near-tie tipped by rounding), and fails when it is not."""
    import export
    pytest.importorskip("onnxruntime")
    trainer, _ = _trained_like(synthetic_cfg, tmp_path)
    h, w = synthetic_cfg.DATASET.SYNTHETIC.IMAGE_SIZE
    model = PanopticExportModel(trainer.model.eval(), META, synthetic_cfg.POST_PROCESSING).eval()
    image = torch.randn(1, 3, h, w, generator=torch.Generator().manual_seed(0))
    path = export_model(model, image, str(tmp_path / "model.onnx"), "onnx")
    assert export.check_exported(model, path, "onnx", image)[0] is True
    real, calls = export.run_exported, []

    def run_with_a_changed_map(*args):
        out = real(*args)
        calls.append(args[0])
        if len(calls) == 1 or not tipped:  # the first run differs; the raw-output copy too unless only rounding
            out[0][0, 0, 0] += 1
        return out
    monkeypatch.setattr(export, "run_exported", run_with_a_changed_map)
    ok, message = export.check_exported(model, path, "onnx", image)
    assert len(calls) == 2 and ok is tipped and "DIFFERS" in message and "1 of" in message
    assert ("decoding of onnxruntime's own network outputs is exact" in message) is tipped
    assert model.outputs == "panoptic"  # the copy with every output was a temporary change


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_network_only_export_returns_the_network_outputs(synthetic_cfg, tmp_path, fmt):
    """--outputs network: the network alone (for TensorRT or a decoding of one's own): TorchScript equal to the
    eager network bit for bit (so decoding it gives the eager maps), onnxruntime within RUNTIME_TOLERANCE."""
    import export
    if fmt == "onnx":
        pytest.importorskip("onnxruntime")
    trainer, cfg_path = _trained_like(synthetic_cfg, tmp_path)
    h, w = synthetic_cfg.DATASET.SYNTHETIC.IMAGE_SIZE
    out = str(tmp_path / f"network.{fmt}")
    assert export.main(["--cfg", cfg_path, "--format", fmt, "--size", str(h), str(w), "--output", out, "--outputs",
                        "network", *_OPTS]) == 0
    net, pp = trainer.model.eval(), synthetic_cfg.POST_PROCESSING
    for batch in build_test_loader(synthetic_cfg):
        logits, heat, offsets = map(torch.from_numpy, export.run_exported(out, fmt, batch["image"]))
        eager, o = _eager_panoptic(net, batch["image"], pp)
        got = {"semantic_logits": logits, "center": heat, "offset": offsets}
        want = _by_export_name(o)
        if fmt == "torchscript":
            assert all(torch.equal(got[n], want[n]) for n in got)
            assert torch.equal(_decode(logits, heat, offsets, pp), eager)
        else:
            assert export._network_gap(got, want) <= export.RUNTIME_TOLERANCE


def test_unknown_export_outputs_list_the_valid_ones(synthetic_cfg):
    with pytest.raises(ValueError, match="valid: panoptic, network, all"):
        PanopticExportModel(torch.nn.Identity(), META, synthetic_cfg.POST_PROCESSING, outputs="logits")


def _favour_a_thing_class(net, loader):
    """Raise the untrained semantic head's bias of a thing class until it wins on about half of the pixels, so that
    the decoded maps hold instances."""
    net.eval()
    thing = META.thing_ids[0]
    gaps = []
    with torch.no_grad():
        for batch in loader:
            logits = predict(net, batch["image"])["semantic"][0]
            others = torch.cat([logits[:thing], logits[thing + 1:]]).max(0).values
            gaps.append((others - logits[thing]).reshape(-1))
        net.decoder.semantic_head.classifier.semantic.bias[thing] += torch.cat(gaps).median()


def _write_cfg(cfg, tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(cfg.dump())
    return str(path)


@pytest.mark.parametrize("mixins", [("focal-centers",), ("oracle-semantics",), ("huber-offsets", "focal-centers")])
def test_export_refuses_mixins_that_change_the_decoding(mixins):
    import export

    from segmentation.config import get_default_config
    cfg = get_default_config()
    cfg.OM.NAME, cfg.OM.MIXINS = "panoptic-deeplab", mixins
    with pytest.raises(ValueError, match=f"'{mixins[-1]}' changes .*_pred"):
        export.refuse_decoding_mixins(cfg)
    cfg.OM.MIXINS = ("huber-offsets", "size-adaptive-sigma")  # training-side only: exportable
    export.refuse_decoding_mixins(cfg)
