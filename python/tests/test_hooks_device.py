"""Probe features kept on the device that computed them (``collect(keep_on_device=True)``), and
the callbacks' choice of it. CPU-only torch cannot make CUDA tensors, so the device here is
``meta``: a model on it runs its hooks and fills buffers allocated there, and any copy to the host
fails ("Cannot copy out of meta tensor"), so a collection that finishes never copied a map to the
host. How the library takes CUDA layers is checked with stand-ins that export themselves as
CUDA through DLPack, and end to end on the CUDA emulator in test_cuda.py."""

import gc
import weakref

import pytest
import torch
from torch import nn

import factortopy as ft
from factortopy import _collected, hooks
from factortopy.callbacks import _driver
from factortopy.callbacks._dist import Group
from factortopy.callbacks._driver import MonitorDriver
from factortopy.errors import DeviceError, FactortopyMemoryError
from factortopy.hooks import collect, to_features

META = torch.device("meta")


class TokenNet(nn.Module):
    """ViT-like tokens (a CLS token and a 4×4 grid) from a CNN stem: layers with a global token."""

    def __init__(self, dim=6):
        super().__init__()
        self.embed = nn.Conv2d(3, dim, 4, stride=4)
        self.cls = nn.Parameter(torch.randn(1, 1, dim))
        self.block = nn.Linear(dim, dim)

    def forward(self, x):
        t = self.embed(x).flatten(2).transpose(1, 2)
        return self.block(torch.cat([self.cls.expand(x.shape[0], -1, -1), t], dim=1))


def test_kept_on_device_the_buffers_are_where_the_activations_are():
    torch.manual_seed(0)
    model = TokenNet().to(META)
    x = torch.empty(10, 3, 16, 16, device=META)
    got = collect(model, x, ["embed", "block"], batch_size=4, keep_on_device=True, dtype=torch.bfloat16)
    assert [(n, l.device, tuple(l.shape), l.dtype) for n, l, _ in got] == [
        ("embed", META, (10, 6, 4, 4), torch.bfloat16),
        ("block", META, (10, 6, 4, 4), torch.bfloat16),
    ]
    assert got[0][2] is None and got[1][2].device == META and tuple(got[1][2].shape) == (10, 6)
    # Batches from an iterable (the number of images unknown): joined on the device too.
    batches = [torch.empty(3, 3, 16, 16, device=META) for _ in range(3)]
    got = collect(model, batches, ["block"], keep_on_device=True)[0]
    assert (got[1].device, got[2].device, got[1].shape[0], got[1].dtype) == (META, META, 9, torch.float32)
    # By default every map is copied to the host, which a meta tensor cannot be.
    with pytest.raises(NotImplementedError, match="meta"):
        collect(model, x, ["block"], batch_size=4)


def test_by_default_and_on_the_cpu_the_maps_are_host_tensors_with_the_same_values():
    torch.manual_seed(0)
    model = TokenNet()
    x = torch.randn(7, 3, 16, 16)
    for kw in ({}, {"grid": 2, "dtype": torch.bfloat16}):
        host = collect(model, x, ["embed", "block"], batch_size=3, **kw)
        kept = collect(model, x, ["embed", "block"], batch_size=3, keep_on_device=True, **kw)
        for (_, hl, hg), (_, kl, kg) in zip(host, kept):
            assert hl.device.type == "cpu" and kl.device.type == "cpu"
            torch.testing.assert_close(kl, hl, rtol=0, atol=0)
            if hg is not None:
                torch.testing.assert_close(kg, hg, rtol=0, atol=0)


def test_maps_resized_on_the_host_go_back_to_the_activations_device(monkeypatch):
    # The library's resizing runs on the host and returns host tensors (here a stand-in for it,
    # since a meta map has no values to copy): what is stored is on the activations' device.
    def host_grid(local, glob, grid, resample="auto"):
        n, c = local.shape[:2]
        return torch.zeros(n, c, grid, grid), torch.zeros(n, c) if glob is None else glob

    monkeypatch.setattr(hooks, "to_grid", host_grid)
    model = TokenNet().to(META)
    x = torch.empty(5, 3, 16, 16, device=META)
    for images in (x, [x[:2], x[2:]]):
        (_, local, glob), = collect(model, images, ["embed"], batch_size=2, grid=2, keep_on_device=True)
        assert (local.device, tuple(local.shape), glob.device, tuple(glob.shape)) == (META, (5, 6, 2, 2), META, (5, 6))


def test_a_device_buffer_that_does_not_fit_is_one_line_naming_the_layer(monkeypatch):
    empty = torch.empty

    def no_room_on_meta(*args, device=None, **kwargs):
        # Only the layer's buffer for all 5 images (the model's own outputs are batches of 2).
        if device is not None and torch.device(device).type == "meta" and args and tuple(args[0]) == (5, 6, 4, 4):
            raise torch.OutOfMemoryError("out of memory")
        return empty(*args, device=device, **kwargs)

    monkeypatch.setattr(torch, "empty", no_room_on_meta)
    model = TokenNet().to(META)
    x = empty(5, 3, 16, 16, device=META)
    with pytest.raises(FactortopyMemoryError, match=r"^layer 'embed': its \[5, 6, 4, 4\] torch.float32 buffer \(1920 bytes\)") as e:
        collect(model, x, ["embed"], batch_size=2, keep_on_device=True)
    assert "\n" not in str(e.value) and "meta" in str(e.value)


class CudaStandIn:
    """A host tensor that exports itself through DLPack as memory of CUDA device ``index``, as a
    CUDA tensor kept by ``collect`` does (never read here: ``add_layer`` is replaced)."""

    def __init__(self, t, index=0):
        self.t, self.index = t, index

    def __dlpack__(self, **kwargs):
        return self.t.__dlpack__(**kwargs)

    def __dlpack_device__(self):
        return (2, self.index)


def test_to_features_hands_cuda_layers_over_as_they_are_and_releases_each(monkeypatch):
    collected = [
        (f"l{i}", CudaStandIn(torch.zeros(3, 2, 2, 2)), CudaStandIn(torch.zeros(3, 2)) if i else None) for i in range(3)
    ]
    refs = [weakref.ref(local) for _, local, _ in collected]
    added, emptied = [], []

    def add_layer(self, local, global_=None):
        gc.collect()
        added.append(([local is r() for r in refs], [r() is not None for r in refs]))
        return self

    monkeypatch.setattr(ft.Features, "add_layer", add_layer)
    monkeypatch.setattr(ft.Features, "set_metadata", lambda self, **kw: self)
    monkeypatch.setattr(_collected, "device_available", lambda d: d == "cuda:0")
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: emptied.append(len(added)))
    feats = to_features(collected, "net")
    assert hooks.to_features is _collected.to_features  # what test_cuda.py runs without torch
    assert collected == [] and isinstance(feats, ft.Features)
    # The library gets the collected objects themselves (no host copy on the way) ...
    assert [same for same, _ in added] == [[True, False, False], [False, True, False], [False, False, True]]
    # ... and each layer is released once the library has its copy (only the layers not yet
    # added are alive at each call), its cached CUDA memory handed back to the driver.
    assert [alive for _, alive in added] == [[True, True, True], [False, True, True], [False, False, True]]
    assert emptied == [1, 2, 3] and all(r() is None for r in refs)


def test_to_features_refuses_a_layer_on_a_device_the_library_cannot_use(monkeypatch):
    calls = []
    monkeypatch.setattr(ft.Features, "add_layer", lambda self, *a: calls.append(a) or self)
    monkeypatch.setattr(_collected, "device_available", lambda d: d == "cuda:0")
    good = ("a", CudaStandIn(torch.zeros(2, 1, 2, 2)), None)
    for bad, where in (
        (("b", torch.zeros(2, 1, 2, 2), CudaStandIn(torch.zeros(2, 1), index=1)), "cuda:1"),
        (("b", torch.empty(2, 1, 2, 2, device=META), None), "meta:0"),
    ):
        with pytest.raises(DeviceError, match=rf"^layer 'b' is on {where}, which this library cannot use .*keep_on_device=False$") as e:
            to_features([good, bad], "net")
        assert "\n" not in str(e.value)
    # Checked before any layer is copied.
    assert calls == []


def test_to_features_reads_host_layers_of_every_precision_and_stride():
    torch.manual_seed(0)
    base = torch.randn(4, 3, 5, 5)
    layers = [
        ("f32", base, base.mean(dim=(2, 3))),
        ("f16", base.half(), None),
        ("bf16_channels_last", base.bfloat16().to(memory_format=torch.channels_last), None),
        ("strided", torch.randn(4, 3, 10, 5)[:, :, ::2], None),
    ]
    want = [l.float().numpy() for _, l, _ in layers]
    feats = to_features(list(layers), "net")
    for i, w in enumerate(want):
        local, _ = feats.layer(i)
        assert (local == w).all(), layers[i][0]


# The callbacks' choice ----------------------------------------------------------------------------


class Placed:
    """A stand-in model whose parameters say they are on the given devices."""

    def __init__(self, *devices):
        self.devices = [torch.device(d) for d in devices]

    def parameters(self):
        for d in self.devices:
            yield type("P", (), {"device": d})()


def driver(**kw):
    return MonitorDriver(None, None, ["x"], **kw)


def test_the_driver_keeps_features_on_the_device_only_where_the_monitor_runs_on_it(monkeypatch):
    monkeypatch.setattr(_driver, "device_available", lambda d: d in ("cuda:0", "cuda:1"))
    d = driver()
    assert not d.keep_on_device(Placed("cuda:0"))  # not started: no device yet
    d._set_run_device("cpu")
    assert not d.keep_on_device(Placed("cpu")) and not d.keep_on_device(Placed("cuda:0"))
    for dev in ("cuda", "cuda:0", torch.device("cuda", 0)):
        d._set_run_device(dev)
        assert d.keep_on_device(Placed("cuda:0", "cuda:0")), dev
    assert not d.keep_on_device(Placed("cuda:0", "cuda:1"))  # spread over two devices
    assert not d.keep_on_device(Placed("cpu"))  # e.g. parameters offloaded to the host
    assert not d.keep_on_device(Placed())  # no parameters: nothing says where activations are
    d._set_run_device("cuda:1")
    assert d.keep_on_device(Placed("cuda:1")) and not d.keep_on_device(Placed("cuda:0"))
    monkeypatch.setattr(_driver, "device_available", lambda d: False)  # e.g. a build without CUDA
    d._set_run_device("cuda:1")
    assert not d.keep_on_device(Placed("cuda:1"))


def test_the_driver_passes_its_choice_to_collect_unless_the_caller_set_it(monkeypatch):
    monkeypatch.setattr(_driver, "device_available", lambda d: True)
    seen = []
    monkeypatch.setattr(_driver, "collect", lambda model, images, layers, **kw: seen.append(kw["keep_on_device"]) or [])
    monkeypatch.setattr(_driver, "to_features", lambda collected, name: "features")
    monkeypatch.setattr(MonitorDriver, "_grid", lambda self: 8)
    monkeypatch.setattr(MonitorDriver, "_resample", lambda self: "auto")
    for run_on, model, want in (("cuda:0", Placed("cuda:0"), True), ("cpu", Placed("cpu"), False), ("cuda:0", Placed("cpu"), False)):
        d = driver()
        d._set_run_device(run_on)
        assert d.features(model) == "features"
        assert seen.pop() is want, (run_on, want)
    d = driver(collect_kwargs={"keep_on_device": False})
    d._set_run_device("cuda:0")
    d.features(Placed("cuda:0"))
    assert seen.pop() is False


def test_start_takes_the_device_from_the_device_option(monkeypatch):
    class Stop(Exception):
        pass

    def features(self, model, group=None):
        raise Stop

    monkeypatch.setattr(MonitorDriver, "features", features)
    for given, want in (("cuda", "cuda:0"), (torch.device("cuda", 2), "cuda:2"), ("cpu", "cpu"), ("gpu0", "gpu0")):
        d = driver(device=given)
        with pytest.raises(Stop):
            d.start(Placed("cuda:0"))
        assert d._run_device == want
    d = driver()  # default: the model's device (the CPU here)
    with pytest.raises(Stop):
        d.start(nn.Linear(2, 2))
    assert d._run_device == "cpu"


def test_gathered_rows_stay_on_the_device_of_rank_0s_tensor(monkeypatch):
    def gather(raw, parts, dst=0):
        for i, p in enumerate(parts):
            p.copy_(raw if raw.device.type == "meta" else raw + i)

    monkeypatch.setattr(torch.distributed, "gather", gather)
    g = Group.__new__(Group)
    g.active, g.rank, g.world = True, 0, 2
    # Host tensors gathered on the host (gloo): on the host, rank after rank.
    g.device = torch.device("cpu")
    t = torch.arange(6, dtype=torch.bfloat16).reshape(3, 2)
    out = g.gather_rows(t)
    assert out.device.type == "cpu" and out.dtype == torch.bfloat16 and tuple(out.shape) == (6, 2)
    assert torch.equal(out[:3], t)
    # Tensors on a device, gathered there (as NCCL does with CUDA tensors): not moved to the host.
    g.device = META
    out = g.gather_rows(torch.empty(3, 2, dtype=torch.bfloat16, device=META))
    assert out.device == META and out.dtype == torch.bfloat16 and tuple(out.shape) == (6, 2)
