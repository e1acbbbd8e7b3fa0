"""Ranking a grid of networks × subjects from Python: in this process, in a process pool, and on
a real dask.distributed LocalCluster with two worker processes. Every route gives the same
ranking; a failed pair names its network and subject while the others finish; a rerun with the
same ``out`` fits only what is missing."""

import concurrent.futures as cf
import json
import multiprocessing
import os

import pytest

import factortopy as ft

SETTINGS = dict(grid=3, d=8, max_epochs=3)


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    d = tmp_path_factory.mktemp("grid")
    ft.synth.write(d / "s1", n_images=160, n_voxels=120, n_layers=3, width=8, grid=3, noise_ceiling=0.9, seed=4)
    original = ft.Features.load(d / "s1" / "features.safetensors")
    ft.synth.plant(original, directory=d / "s2", n_voxels=100, grid=3, noise_ceiling=0.8, seed=5)
    layers = [original.layer(i) for i in range(original.n_layers)]
    nets = []
    for name, order in (("original", [0, 1, 2]), ("reversed", [2, 1, 0]), ("first-only", [0, 0, 0])):
        f = ft.Features([layers[i] for i in order], model=name)
        path = d / f"{name}.safetensors"
        f.save(path)
        nets.append(str(path))
    brains = [str(d / "s1" / "brain.safetensors"), str(d / "s2" / "brain.safetensors")]
    return d, nets, brains


def _rank(nets, brains, **kw):
    return ft.rank(nets, brains, ft.FitOptions.preset("fast", **SETTINGS), **kw)


def test_every_route_gives_the_same_ranking(grid, tmp_path):
    d, nets, brains = grid
    serial = _rank(nets, brains)
    names = [r["name"] for r in serial["rows"]]
    assert names[0] == "original" and names[-1] == "reversed", names
    assert len(serial["subjects"]) == 2
    for row in serial["rows"]:
        assert len(row["subjects"]) == 2 and row["across"]["slope"]["n"] == 2

    # `spawn`: a forked child inherits the library's thread pool without its threads, so a
    # process pool must start fresh interpreters (dask's LocalCluster does so by default).
    with cf.ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        pooled = _rank(nets, brains, executor=pool, out=tmp_path / "out")
    assert pooled == serial
    assert len(os.listdir(tmp_path / "out" / "pairs")) == 6

    distributed = pytest.importorskip("distributed")
    # FACTORTOPY_LIB (when set) reaches the workers through the environment they inherit.
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        with distributed.Client(cluster) as client:
            seen = []
            on_dask = _rank(nets, brains, executor=client.get_executor(), progress=lambda *a: seen.append(a))
    assert on_dask == serial
    assert [s[0] for s in seen] == [1, 2, 3, 4, 5, 6]

    # A rerun with the same `out` fits nothing: every pair is loaded back.
    class Refuses(cf.Executor):
        def submit(self, fn, *args, **kwargs):
            raise AssertionError("a finished pair was submitted again")

    assert _rank(nets, brains, executor=Refuses(), out=tmp_path / "out") == serial


def test_a_failed_pair_is_named_and_the_others_finish(grid, tmp_path):
    d, nets, brains = grid
    broken = tmp_path / "broken.safetensors"
    # A file whose header checks out but whose values are not finite.
    raw = bytearray(open(nets[0], "rb").read())
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + n])
    for name in ("layers.0.local", "layers.0.global"):
        if name in header:
            start = 8 + n + header[name]["data_offsets"][0]
            raw[start : start + 4] = bytes.fromhex("0000c07f")
    broken.write_bytes(bytes(raw))
    with cf.ThreadPoolExecutor(2) as pool:
        with pytest.raises(ft.RankGridError) as e:
            _rank([nets[0], str(broken)], brains, executor=pool, out=tmp_path / "out", method="ridge")
    failed = {(os.path.basename(net), subject) for net, subject, _ in e.value.failures}
    assert failed == {("broken.safetensors", "synthetic"), ("broken.safetensors", "synthetic #2")}
    assert "2 of 4 pairs failed" in str(e.value)
    assert len(os.listdir(tmp_path / "out" / "pairs")) == 2


def test_a_forked_worker_refuses_instead_of_hanging(grid):
    d, nets, brains = grid
    ft.library_version()  # the library is loaded in this process
    with cf.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork")) as pool:
        with pytest.raises(ft.RankGridError, match="spawn"):
            _rank(nets[:1], brains[:1], executor=pool, method="ridge")


def test_with_layers_and_one_subject(grid):
    d, nets, brains = grid
    one = _rank(nets, brains[0], method="ridge", with_layers=True)
    row = one["rows"][0]
    assert "subjects" not in one and row["name"] == "original"
    layers = row["layers"]
    assert len(layers["layer_names"]) == 3 and len(layers["r2"]) == len(layers["roi_names"])
    with pytest.raises(TypeError):
        ft.rank([ft.Features.load(nets[0])], ft.Brain.load(brains[0]), executor=cf.ThreadPoolExecutor(1))
