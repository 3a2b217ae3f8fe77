"""MODEL.CHANNELS_LAST and MODEL.COMPILE: the same outputs and training as the eager NCHW network; the network
traces without a graph break (fullgraph); state dicts keep their names."""
import pytest
import torch

from segmentation.model import build_model, compile_network


def _outputs(cfg, seed=0):
    torch.manual_seed(seed)
    model = compile_network(cfg, build_model(cfg)).eval()
    x = torch.randn(2, 3, 64, 96, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return model, model.net(x) if hasattr(model, "net") else model(x)


def test_channels_last_gives_the_same_outputs(synthetic_cfg):
    _, plain = _outputs(synthetic_cfg)
    synthetic_cfg.MODEL.CHANNELS_LAST = True
    model, nhwc = _outputs(synthetic_cfg)
    conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    for key in plain:
        assert nhwc[key].is_contiguous()  # the OM and the decoding view them as NCHW
        torch.testing.assert_close(nhwc[key], plain[key], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("om", [False, True])
def test_compiled_forward_traces_in_one_graph_and_equals_eager(synthetic_cfg, om):
    if om:
        synthetic_cfg.OM.NAME = "panoptic-deeplab"
    _, eager = _outputs(synthetic_cfg)
    synthetic_cfg.MODEL.COMPILE, synthetic_cfg.MODEL.COMPILE_BACKEND = True, "eager"  # tracing, not compiling
    torch._dynamo.reset()
    model, compiled = _outputs(synthetic_cfg)
    net = getattr(model, "net", model)
    assert net.forward is not net._eager_forward and set(model.state_dict()) == set(build_model(synthetic_cfg)
                                                                                   .state_dict())
    for key in eager:
        assert torch.equal(compiled[key], eager[key])


def test_a_compiled_training_step(synthetic_cfg, tmp_path):
    from segmentation.engine import Trainer
    synthetic_cfg.MODEL.COMPILE, synthetic_cfg.MODEL.COMPILE_BACKEND = True, "aot_eager"  # forward and backward
    synthetic_cfg.OUTPUT_DIR, synthetic_cfg.TRAIN.MAX_ITER = str(tmp_path), 2
    synthetic_cfg.DEBUG.TENSORBOARD = False
    torch._dynamo.reset()
    trainer = Trainer(synthetic_cfg)
    trainer.train()
    assert trainer.net.forward is not trainer.net._eager_forward
    assert (tmp_path / "final_state.pth").exists()
    assert all(torch.isfinite(torch.tensor(v)) for _, h in trainer.history for v in h.values())
