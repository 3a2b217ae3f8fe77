"""The static-shape decoding equals the pure functions; the exported network + decoding (TorchScript, ONNX through
onnxruntime) gives the eager panoptic maps on the validation images."""
import pytest
import torch

from segmentation.data import build_test_loader
from segmentation.data.datasets import SYNTHETIC_METADATA as META
from segmentation.engine import Trainer, predict
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


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_exported_model_reproduces_the_eager_panoptic_maps(synthetic_cfg, tmp_path, fmt):
    import export
    pytest.importorskip("onnxruntime")
    synthetic_cfg.OUTPUT_DIR = str(tmp_path)
    synthetic_cfg.POST_PROCESSING.CENTER_THRESHOLD = 0.0  # an untrained heatmap: many centres
    synthetic_cfg.POST_PROCESSING.TOP_K_INSTANCE = 8  # fewer peaks than that would not test the strict rule
    synthetic_cfg.POST_PROCESSING.STUFF_AREA = 16
    trainer = Trainer(synthetic_cfg)
    _favour_a_thing_class(trainer.model, build_test_loader(synthetic_cfg))
    torch.save({"model": trainer.model.state_dict()}, tmp_path / "final_state.pth")
    out = str(tmp_path / f"model.{fmt}")
    h, w = synthetic_cfg.DATASET.SYNTHETIC.IMAGE_SIZE
    opts = ["POST_PROCESSING.CENTER_THRESHOLD", "0.0", "POST_PROCESSING.TOP_K_INSTANCE", "8",
            "POST_PROCESSING.STUFF_AREA", "16"]
    assert export.main(["--cfg", _write_cfg(synthetic_cfg, tmp_path), "--format", fmt, "--size", str(h), str(w),
                        "--output", out, *opts]) == 0
    net = trainer.model.eval()
    pp = synthetic_cfg.POST_PROCESSING
    instances = 0
    for batch in build_test_loader(synthetic_cfg):
        image = batch["image"]
        o = predict(net, image)
        eager, _ = get_panoptic_segmentation(o["semantic"], o["center"], o["offset"], META.thing_ids,
                                             META.label_divisor, pp.STUFF_AREA, META.void_label,
                                             pp.CENTER_THRESHOLD, pp.NMS_KERNEL, pp.TOP_K_INSTANCE)
        panoptic, semantic = export.run_exported(out, fmt, image)
        assert (torch.from_numpy(panoptic) == eager).all()
        assert (torch.from_numpy(semantic) == o["semantic"].argmax(1)).all()
        instances += int(((eager % META.label_divisor) > 0).sum() > 0)
    assert instances > 0  # the maps compared hold instances


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
