"""Model family: every registered model trains at two sizes; attention gates; window split."""
from __future__ import annotations

import json

import pytest
import torch

from PETriageLib.cli import main as cli_main
from PETriageLib.models import build_model, describe_models, list_models, model_options
from PETriageLib.models.attention import CBAM, FUSA
from PETriageLib.models.drn import DRN_SPECS, build_drn

BASELINES = {"resnet50", "msresnet50", "efficientnet_b5"}
CONTRACT_NAMES = {"cbamdrn_d22", "drn_d22", "drn_d38", "drn_d54", "drn_c26", "cbamdrn_d54", "fusadrn_d22",
                  "resnet50", "efficientnet_b5", "msresnet50"}


pytestmark = pytest.mark.usefixtures("one_torch_thread_per_test")


def tiny(name: str, windows=("vascular", "lung")) -> torch.nn.Module:
    config = {"width": 0.125} if "width" in model_options(name) else {}
    return build_model(name, windows=windows, **config)


def test_registry_has_contract_names() -> None:
    assert CONTRACT_NAMES <= set(list_models())


@pytest.mark.parametrize("name", list_models())
def test_forward_backward_two_sizes(name: str) -> None:
    torch.manual_seed(0)
    model = tiny(name).train()
    sizes = (64, 72) if name in BASELINES else (64, 96)
    for size in sizes:
        model.zero_grad()
        x = torch.randn(2, 2, size, size)
        out = model(x)
        assert out.shape == (2, 1) and out.dtype == torch.float32
        assert torch.isfinite(out).all()
        out.sum().backward()
        grads = [p.grad for p in model.parameters() if p.requires_grad]
        assert all(g is not None and torch.isfinite(g).all() for g in grads)
        assert any(g.abs().sum() > 0 for g in grads)
    assert model.name == name and model.windows == ("vascular", "lung")


@pytest.mark.parametrize("name", ["cbamdrn_d22", "fusadrn_d22", "resnet50"])
def test_config_rebuilds_same_architecture(name: str) -> None:
    model = tiny(name, windows=("vascular", "lung", "mediastinal"))
    again = build_model(model.name, windows=model.windows, **model.config)
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    assert shapes == {k: v.shape for k, v in again.state_dict().items()}
    json.dumps(model.config)  # the config goes into checkpoint metadata


@pytest.mark.parametrize("variant", sorted(DRN_SPECS))
def test_drn_output_stride_8_any_size(variant: str) -> None:
    net = build_drn(variant, width=0.25).eval()
    with torch.no_grad():
        for h, w in ((64, 64), (96, 72)):
            feats = net(torch.randn(1, 1, h, w))
            assert feats.shape == (1, net.out_channels, h // 8, w // 8)


def test_width_multiplier_scales_parameters() -> None:
    counts = [sum(p.numel() for p in build_model("cbamdrn_d22", width=w).parameters()) for w in (0.25, 0.5, 1.0)]
    assert counts[0] < counts[1] < counts[2]
    assert 3.5 < counts[2] / counts[1] < 4.5  # conv weights grow with width squared


def test_attention_only_where_named() -> None:
    def kinds(model):
        return {type(m) for m in model.modules()} & {CBAM, FUSA}
    assert kinds(tiny("cbamdrn_d22")) == {CBAM}
    assert kinds(tiny("fusadrn_d22")) == {FUSA}
    assert kinds(tiny("drn_d22")) == set()
    n_blocks = sum(len(getattr(tiny("cbamdrn_d22").branches[0], f"layer{i}")) for i in range(3, 7))
    assert sum(isinstance(m, CBAM) for m in tiny("cbamdrn_d22").modules()) == 2 * n_blocks


def test_cbam_gates_in_range_and_change_features() -> None:
    torch.manual_seed(1)
    cbam = CBAM(32).eval()
    x = torch.randn(2, 32, 12, 12)
    cg = cbam.channel_gate(x)
    sg = cbam.spatial_gate(x * cg)
    assert cg.shape == (2, 32, 1, 1) and sg.shape == (2, 1, 12, 12)
    for g in (cg, sg):
        assert (g > 0).all() and (g < 1).all() and g.std() > 0
    out = cbam(x)
    assert out.shape == x.shape
    assert torch.allclose(out, x * cg * sg)
    assert not torch.allclose(out, x)


def test_fusa_gate_full_scale_in_range_and_changes_features() -> None:
    torch.manual_seed(2)
    fusa = FUSA(16).eval()
    x = torch.randn(2, 16, 10, 10)
    gate = fusa.gate(x)
    assert gate.shape == x.shape  # one gate per feature, not per channel or pixel
    assert (gate > 0).all() and (gate < 1).all()
    assert gate.std(dim=(2, 3)).min() > 0 and gate.std(dim=1).min() > 0  # varies over space and channels
    out = fusa(x)
    assert torch.allclose(out, x * gate) and not torch.allclose(out, x)


@pytest.mark.parametrize("windows", [("vascular", "lung"), ("vascular", "lung", "mediastinal")])
def test_window_channels_go_to_their_own_branch(windows) -> None:
    torch.manual_seed(3)
    model = tiny("cbamdrn_d22", windows).eval()
    assert len(model.branches) == len(windows)
    x = torch.randn(1, len(windows), 64, 64)
    with torch.no_grad():
        base = model.branch_features(x)
        for changed in range(len(windows)):
            y = x.clone()
            y[:, changed] = torch.randn(64, 64)
            feats = model.branch_features(y)
            for i, (a, b) in enumerate(zip(base, feats)):
                assert torch.equal(a, b) != (i == changed), f"window {i} after changing channel {changed}"
            assert not torch.equal(model(x), model(y))


def test_branch_layers_are_last_blocks_of_each_branch() -> None:
    model = tiny("cbamdrn_d22", ("vascular", "lung")).eval()
    layers = model.branch_layers()
    assert list(layers) == ["vascular", "lung"]
    seen = {}
    hooks = [layer.register_forward_hook(lambda m, i, o, w=w: seen.__setitem__(w, o)) for w, layer in layers.items()]
    with torch.no_grad():
        x = torch.randn(1, 2, 96, 96)
        model(x)
        lung_only = model.branches[1](x[:, 1:2])
    for h in hooks:
        h.remove()
    assert seen["lung"].shape == (1, model.branches[1].out_channels, 12, 12)
    assert torch.equal(seen["lung"], lung_only)
    assert set(tiny("resnet50").branch_layers()) == {"all"}


def test_single_window_model() -> None:
    model = tiny("drn_d22", ("lung",))
    assert model(torch.randn(3, 1, 64, 64)).shape == (3, 1)


def test_bad_inputs_and_names_are_refused() -> None:
    model = tiny("cbamdrn_d22")
    with pytest.raises(ValueError, match="expects"):
        model(torch.randn(1, 3, 64, 64))
    with pytest.raises(ValueError, match="smaller than 64"):
        model(torch.randn(1, 2, 32, 32))
    with pytest.raises(ValueError, match="unknown model"):
        build_model("drn_d999")
    with pytest.raises(ValueError, match="does not take"):
        build_model("resnet50", width=0.5)
    with pytest.raises(ValueError, match="width"):
        build_model("drn_d22", width=0)
    with pytest.raises(ValueError, match="unknown model"):
        describe_models(64, names=["nope"])


def test_describe_models_counts_params_and_flops() -> None:
    names = ["cbamdrn_d22", "drn_d22", "resnet50"]
    rows = {r.name: r for r in describe_models(96, ("vascular", "lung"), width=0.5, names=names)}
    assert list(rows) == names
    fast = rows["cbamdrn_d22"]
    assert fast.params == sum(p.numel() for p in build_model("cbamdrn_d22", width=0.5).parameters())
    assert fast.config["width"] == 0.5 and rows["resnet50"].config == {"dropout": 0.0}
    assert all(r.gflops > 0 for r in rows.values())
    bigger = {r.name: r for r in describe_models(192, ("vascular", "lung"), width=0.5, names=["drn_d22"])}
    ratio = bigger["drn_d22"].gflops / rows["drn_d22"].gflops
    assert 3.9 < ratio < 4.1  # fully convolutional: FLOPs scale with pixel count


def test_cli_models_json(capsys) -> None:
    assert cli_main(["models", "drn_c26", "resnet50", "--size", "64", "--json", "--windows", "lung"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == ["drn_c26", "resnet50"]
    assert all(r["input_size"] == 64 and r["params"] > 0 for r in rows)


def test_cli_models_table(capsys) -> None:
    assert cli_main(["models", "cbamdrn_d22", "efficientnet_b5", "--size", "64", "--width", "0.5"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4
    assert lines[2].startswith("cbamdrn_d22") and "width=0.5" in lines[2]
    assert lines[3].startswith("efficientnet_b5") and "width" not in lines[3]


def test_avgmax_pool_adds_the_branch_maximum() -> None:
    torch.manual_seed(0)
    avg = build_model("cbamdrn_d22", ("pe", "lung"), width=0.125).eval()
    both = build_model("cbamdrn_d22", ("pe", "lung"), width=0.125, pool="avgmax").eval()
    assert both.config["pool"] == "avgmax" and avg.config["pool"] == "avg"
    assert both.fc.in_features == 2 * avg.fc.in_features
    both.load_state_dict({k: v for k, v in avg.state_dict().items() if not k.startswith("fc.")}, strict=False)
    x = torch.randn(2, 2, 64, 64)
    with torch.no_grad():
        fmap = both.branches[1](x[:, 1:2])
        pooled = both.branch_features(x)[1]
        plain = avg.branch_features(x)[1]
    width = fmap.shape[1]
    assert pooled.shape == (2, 2 * width)
    torch.testing.assert_close(pooled[:, :width], plain)  # the paper's average, unchanged
    torch.testing.assert_close(pooled[:, width:], fmap.amax(dim=(2, 3)))
    with pytest.raises(ValueError, match="pool must be one of"):
        build_model("cbamdrn_d22", ("pe", "lung"), width=0.125, pool="median")
