"""Files from outside never run code: CIFAR pickles, cost matrices, checkpoints, torchvision weights."""
import ast
import io
import os
import pickle
import pickletools
import struct

import numpy as np
import pytest
import torch

from mdistiller.dataset.restricted_pickle import RestrictedUnpickler, UnsafePickleError, load_restricted
from tests.helpers.datagen import make_cifar100_folder, make_cifar10_folder
from tests.helpers.runutil import REPO

OFFICIAL_GLOBALS = ["numpy.core.multiarray._reconstruct", "numpy.dtype", "numpy.ndarray"]


class _Py2Pickler(pickle._Pickler):
    """Writes byte and text strings as Python 2 ``str`` (SHORT_BINSTRING/BINSTRING), like cPickle did."""

    dispatch = dict(pickle._Pickler.dispatch)

    def _save_py2_str(self, obj):
        raw = obj.encode("latin1") if isinstance(obj, str) else obj
        if len(raw) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(raw)]) + raw)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(raw)) + raw)
        self.memoize(obj)

    dispatch[str] = _save_py2_str
    dispatch[bytes] = _save_py2_str


def official_style_pickle(obj):
    """``obj`` pickled the way the official CIFAR files are: Python 2 protocol 2 with numpy 1.x names."""
    buf = io.BytesIO()
    _Py2Pickler(buf, protocol=2).dump(obj)
    return buf.getvalue().replace(b"numpy._core.multiarray", b"numpy.core.multiarray")


def text_globals(data):
    """The GLOBAL opcodes of a protocol <= 3 pickle (``module.name``), read without loading it."""
    return sorted({arg.replace(" ", ".") for op, arg, _ in pickletools.genops(data) if op.name == "GLOBAL"})


class _Recorder(RestrictedUnpickler):
    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.names = set()

    def find_class(self, module, name):
        self.names.add("{}.{}".format(module, name))
        return super().find_class(module, name)


def cifar_batch(n=4, seed=0):
    rng = np.random.RandomState(seed)
    return {"batch_label": "training batch 1 of 5", "labels": [int(v) for v in rng.randint(0, 10, n)],
            "data": rng.randint(0, 256, size=(n, 3072)).astype(np.uint8),
            "filenames": ["img_%d.png" % i for i in range(n)]}


# ------------------------------------------------------------------ what the real files need
def test_an_official_style_cifar_file_references_exactly_three_numpy_globals(tmp_path):
    batch = cifar_batch()
    data = official_style_pickle(batch)
    assert data[:2] == b"\x80\x02"
    assert text_globals(data) == OFFICIAL_GLOBALS
    path = tmp_path / "data_batch_1"
    path.write_bytes(data)
    loaded = load_restricted(str(path), encoding="bytes")
    assert loaded[b"labels"] == batch["labels"] and loaded[b"batch_label"] == b"training batch 1 of 5"
    assert loaded[b"data"].dtype == np.uint8 and np.array_equal(loaded[b"data"], batch["data"])


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_cifar_data_rewritten_by_python3_loads(protocol):
    batch = cifar_batch()
    unpickler = _Recorder(io.BytesIO(pickle.dumps(batch, protocol=protocol)))
    loaded = unpickler.load()
    assert np.array_equal(loaded["data"], batch["data"]) and loaded["labels"] == batch["labels"]
    assert unpickler.names <= {"numpy._core.multiarray._reconstruct", "numpy.core.multiarray._reconstruct",
                               "numpy._core.numeric._frombuffer", "numpy.core.numeric._frombuffer",
                               "numpy.ndarray", "numpy.dtype", "_codecs.encode"}


def test_dataset_reads_generated_cifar_folders_through_the_restricted_unpickler(tmp_path):
    from mdistiller.dataset.cifar import CIFAR10, CIFAR100

    written = make_cifar100_folder(tmp_path, n_train=10, n_test=5)
    train = CIFAR100(str(tmp_path), train=True)
    assert np.array_equal(train.data.transpose(0, 3, 1, 2).reshape(10, -1), written["train"][0])
    assert train.classes[:2] == ["class_0", "class_1"]
    make_cifar10_folder(tmp_path, n_train=10, n_test=5)
    assert len(CIFAR10(str(tmp_path), train=False)) == 5


# ------------------------------------------------------------------ crafted files
class _RunsCommand:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, ("touch {}".format(self.marker),))


class _Evals:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (eval, ("open({!r}, 'w').close()".format(str(self.marker)),))


@pytest.mark.parametrize("payload", [_RunsCommand, _Evals])
def test_crafted_cifar_file_is_refused_and_nothing_runs(tmp_path, payload):
    from mdistiller.dataset.cifar import CIFAR100

    make_cifar100_folder(tmp_path, n_train=10, n_test=5)
    marker = tmp_path / "pwned"
    train = tmp_path / "cifar-100-python" / "train"
    batch = pickle.loads(train.read_bytes())
    batch[b"batch_label"] = payload(marker)
    train.write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(UnsafePickleError) as err:
        CIFAR100(str(tmp_path), train=True)
    message = str(err.value)
    assert str(train) in message and "nothing in it was run" in message
    assert ("system" in message) or ("eval" in message)
    assert not marker.exists()


def test_object_arrays_are_refused(tmp_path):
    path = tmp_path / "test_batch"
    path.write_bytes(pickle.dumps({b"data": np.array([1, "a"], dtype=object)}, protocol=2))
    with pytest.raises(UnsafePickleError, match="object arrays"):
        load_restricted(str(path))


def test_codecs_encode_only_as_pickle_writes_bytes(tmp_path):
    path = tmp_path / "meta"
    # _codecs.encode('x', 'rot13'): an allowed global used with another codec
    path.write_bytes(b"\x80\x02c_codecs\nencode\nq\x00X\x01\x00\x00\x00xX\x05\x00\x00\x00rot13\x86R.")
    with pytest.raises(UnsafePickleError, match="latin1"):
        load_restricted(str(path))


def test_damaged_file_error_names_the_file(tmp_path):
    path = tmp_path / "train"
    path.write_bytes(pickle.dumps(cifar_batch(), protocol=2)[:100])
    with pytest.raises(pickle.UnpicklingError, match="Could not read .*train"):
        load_restricted(str(path))


def test_crafted_cost_matrix_is_refused_and_nothing_runs(tmp_path):
    from mdistiller.losses.class_cost import load_cost_matrix

    marker = tmp_path / "pwned"
    path = tmp_path / "linear_cka.pth"
    torch.save({"cost": _RunsCommand(marker)}, str(path))
    with pytest.raises(ValueError, match="Refusing to load .*linear_cka.pth"):
        load_cost_matrix(str(path))
    assert not marker.exists()
    torch.save(torch.rand(5, 5), str(path))
    assert load_cost_matrix(str(path)).shape == (5, 5)


def test_crafted_checkpoint_is_refused_and_nothing_runs(tmp_path):
    from mdistiller.engine.checkpoint import CheckpointError, load_checkpoint

    marker = tmp_path / "pwned"
    path = tmp_path / "ckpt_epoch_240.pth"
    torch.save({"model": {}, "extra": _RunsCommand(marker)}, str(path))
    with pytest.raises(CheckpointError, match="Refusing to load"):
        load_checkpoint(str(path))
    assert not marker.exists()


# ------------------------------------------------------------------ torchvision weights: hash-checked downloads
def _serve_weights(tmp_path, monkeypatch, state_dict, prefix=None):
    """Put ``state_dict`` at file://.../resnet18-<prefix>.pth (prefix: its SHA-256's first 8 hex digits)."""
    import hashlib

    from mdistiller.models.imagenet import resnet

    buf = io.BytesIO()
    torch.save(state_dict, buf)
    data = buf.getvalue()
    prefix = prefix or hashlib.sha256(data).hexdigest()[:8]
    release = tmp_path / "release"
    release.mkdir()
    (release / "resnet18-{}.pth".format(prefix)).write_bytes(data)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setitem(resnet.model_urls, "resnet18", (release / "resnet18-{}.pth".format(prefix)).as_uri())
    monkeypatch.setitem(resnet.legacy_model_urls, "resnet18", (release / "resnet18-none.pth").as_uri())


def test_torchvision_weights_download_is_checked_against_the_hash_in_the_file_name(tmp_path, monkeypatch):
    from mdistiller.models.imagenet import resnet

    torch.manual_seed(0)
    weights = resnet.resnet18().state_dict()
    _serve_weights(tmp_path, monkeypatch, weights)
    model = resnet.resnet18(pretrained=True)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in weights.items())


def test_torchvision_weights_with_a_wrong_hash_are_not_loaded_nor_cached(tmp_path, monkeypatch):
    from mdistiller.models.imagenet import resnet

    _serve_weights(tmp_path, monkeypatch, resnet.resnet18().state_dict(), prefix="00000000")
    with pytest.raises(RuntimeError, match="invalid hash value"):
        resnet.resnet18(pretrained=True)
    cache = tmp_path / "torch_home" / "hub" / "checkpoints"
    assert not cache.exists() or os.listdir(cache) == []


# ------------------------------------------------------------------ every load in the package is restricted
def _calls(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield node, ast.unparse(node.func)


def test_every_load_in_the_package_is_restricted():
    """torch.load only with weights_only=True, hub weights with check_hash=True, no plain pickle/np.load."""
    problems = []
    for folder in ("mdistiller", "tools"):
        for dirpath, _, files in os.walk(os.path.join(REPO, folder)):
            for name in files:
                if not name.endswith(".py"):
                    continue
                path = os.path.join(dirpath, name)
                with open(path, encoding="utf-8") as f:
                    tree = ast.parse(f.read())
                rel = os.path.relpath(path, REPO)
                for node, func in _calls(tree):
                    kw = {k.arg: ast.unparse(k.value) for k in node.keywords}
                    if func == "torch.load" and kw.get("weights_only") != "True":
                        problems.append("{}:{} torch.load without weights_only=True".format(rel, node.lineno))
                    if func.endswith("load_state_dict_from_url") and not (
                            kw.get("weights_only") == "True" and kw.get("check_hash") == "True"):
                        problems.append("{}:{} hub weights without check_hash/weights_only".format(rel, node.lineno))
                    if func in ("pickle.load", "pickle.loads", "pickle.Unpickler", "np.load", "numpy.load",
                                "joblib.load", "dill.load"):
                        problems.append("{}:{} {}".format(rel, node.lineno, func))
    assert problems == []
